"""The box office's order routes over HTTP (Flask test client; gunicorn where concurrency
matters), on real Redis: the state × action table, who may call what, bad input leaving nothing
behind, Idempotency-Key replay and reuse, the sales window, best available, SEAT_TAKEN."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import requests

from models import seats
from models.catalog import Catalog
from models.seats import keys
from plumbing import settings
from tests.conftest import TEST_CATALOG
from tests.support.outbox import stream_lengths
from tests.support.tokens import bearer, operator
from web import payment_signature, purchase

# they read the outbox: the session relay (started by earlier tests) must not drain it
pytestmark = pytest.mark.usefixtures("no_session_relay")

ORDERS = "/purchase/api/v1/orders"
A, B, OPS = bearer("buyer-a"), bearer("buyer-b"), operator("ops")
SEATS = [{"zoneId": 1, "row": "A", "column": "1"}, {"zoneId": 2, "row": "B", "column": "3"}]
GOOD = {"venueId": "Venue1", "eventId": "Event1", "seats": SEATS}
ORDER_FIELDS = {
    "orderId",
    "status",
    "venueId",
    "eventId",
    "buyer",
    "seats",
    "total",
    "currency",
    "createdOn",
    "expiresAt",
    "version",
}


WEBHOOK_SECRET = "test-payment-webhook-secret"


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch):
    """The payment provider's secret of these tests (the suite's settings have none)."""
    use_settings(monkeypatch, payment_webhook_secret=WEBHOOK_SECRET)


@pytest.fixture
def api(app, clean_tickets, loaded_seats):
    """A test client without a token (each call says who it is)."""
    return app.test_client()


def hold(api, body=None, headers=A, **extra):
    return api.post(ORDERS, json=GOOD if body is None else body, headers={**headers, **extra})


def held(api, body=None, headers=A) -> dict:
    response = hold(api, body, headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def signed(api, order_id: str, path: str, body: dict, secret: str | None = None, t=None):
    """POST `body` to the order's `path` signed as the payment provider."""
    raw = json.dumps(body).encode()
    secret = secret or WEBHOOK_SECRET
    header = payment_signature.sign(raw, secret, int(time.time() if t is None else t))
    return api.post(
        f"{ORDERS}/{order_id}/{path}",
        data=raw,
        content_type="application/json",
        headers={payment_signature.HEADER: header},
    )


def confirm(api, order: dict, payment: str | None = None, **changes):
    body = {
        "orderId": order["orderId"],
        "paymentId": payment or f"pay-{order['orderId']}",
        "amount": order["total"],
        "currency": order["currency"],
        **changes,
    }
    return signed(api, order["orderId"], "confirm", body)


def cancel(api, order_id: str, headers=A):
    return api.post(f"{ORDERS}/{order_id}/cancel", headers=headers)


def refund(api, order_id: str, headers=OPS):
    return api.post(f"{ORDERS}/{order_id}/refund", headers=headers)


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.get_json(force=True)
    assert body["code"] == code
    return body


def leftovers(r) -> dict:
    """What a refused request must not leave: orders, held or sold bits, outbox entries, buyer
    counts, idempotency or order-event records."""
    return {
        "orders": sorted(r.scan_iter("seats:*:order:*")),
        "lookups": sorted(r.scan_iter("seats:*:order-event:*")),
        "held": sum(r.bitcount(k) for k in r.scan_iter("seats:*:held")),
        "sold": sum(r.bitcount(k) for k in r.scan_iter("seats:*:sold")),
        "outbox": stream_lengths(r),
        "buyers": {k: r.hgetall(k) for k in r.scan_iter("seats:*:buyers") if r.hlen(k)},
    }


NOTHING = {"orders": [], "lookups": [], "held": 0, "sold": 0, "outbox": 0, "buyers": {}}


def use_settings(monkeypatch, **changes) -> None:
    """The process settings with `changes` (every module reads them through settings.get)."""
    changed = dataclasses.replace(settings.get(), **changes)
    monkeypatch.setattr(settings, "get", lambda: changed)


def publish_window(r, event_id: str, start: str | None, end: str | None) -> None:
    """The test catalog with a sales window on one event, as the purchase API reads it."""
    document = json.loads(json.dumps(TEST_CATALOG))
    for event in document["events"]:
        if event["eventId"] == event_id:
            event.update({k: v for k, v in (("salesStart", start), ("salesEnd", end)) if v})
    seats.publish_catalog(r, Catalog.from_dict(document))
    purchase.forget_catalog()


# --- holding ---------------------------------------------------------------------------------


def test_a_hold_is_201_with_location_and_the_contract_order(api, loaded_seats):
    response = hold(api)
    assert response.status_code == 201
    order = response.get_json()
    assert set(order) == ORDER_FIELDS
    assert response.headers["Location"] == f"{ORDERS}/{order['orderId']}"
    assert order["status"] == "HELD" and order["buyer"] == "buyer-a" and order["version"] == 1
    assert order["total"] == "200.00" and order["currency"] == "USD"
    assert [(s["zoneId"], s["row"], s["column"]) for s in order["seats"]] == [
        (1, "A", "1"),
        (2, "B", "3"),
    ]
    created = datetime.fromisoformat(order["createdOn"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(order["expiresAt"].replace("Z", "+00:00"))
    assert (expires - created).total_seconds() == pytest.approx(settings.get().hold_seconds)
    assert keys.order_bucket(order["orderId"]) == keys.bucket("Event1")
    # the seat map shows both seats held, availability counts them as gone
    row_a = api.get("/purchase/api/v1/events/Event1/zones/1/seats").get_json()["seats"][0]
    assert row_a.startswith("h0")
    zones = api.get("/purchase/api/v1/events/Event1/availability").get_json()["zones"]
    assert zones[0]["remaining"] == zones[0]["capacity"] - 1


def test_best_available_holds_an_adjacent_block_in_the_front_row(api):
    body = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 3, "quantity": 4}
    order = held(api, body)
    places = [(s["zoneId"], s["row"], int(s["column"])) for s in order["seats"]]
    assert {p[:2] for p in places} == {(3, "A")}
    columns = sorted(p[2] for p in places)
    assert columns == list(range(columns[0], columns[0] + 4))
    assert columns == [19, 20, 21, 22]  # closest to the centre of 40 seats


def test_not_enough_adjacent_seats_is_409(api):
    # TinyVenue zone 3 is 3 × 3: four together fit in no row
    body = {"venueId": "TinyVenue", "eventId": "TinyEvent", "zoneId": 3, "quantity": 4}
    assert_problem(hold(api, body), 409, "NOT_ENOUGH_ADJACENT_SEATS")


def test_seat_taken_names_the_taken_seats_and_holds_none(api, loaded_seats):
    held(api, {**GOOD, "seats": [SEATS[1]]}, headers=B)
    before = leftovers(loaded_seats)
    body = assert_problem(hold(api), 409, "SEAT_TAKEN")
    assert body["seats"] == [{"zoneId": 2, "row": "B", "column": "3"}]
    assert leftovers(loaded_seats) == before  # A1 of zone 1 was not held either


def test_a_seat_sold_by_the_one_seat_sale_is_taken_for_an_order_and_back(api):
    ticket = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "1"}
    assert api.post("/purchase/api/v1/tickets", json=ticket, headers=B).status_code == 201
    assert_problem(hold(api), 409, "SEAT_TAKEN")
    held(api, {**GOOD, "seats": [{"zoneId": 1, "row": "A", "column": "2"}]})
    ticket["column"] = "2"
    assert_problem(api.post("/purchase/api/v1/tickets", json=ticket, headers=B), 409, "SEAT_TAKEN")


def test_more_seats_than_the_maximum_is_422_order_too_large(api, loaded_seats):
    nine = [{"zoneId": 1, "row": "A", "column": str(c)} for c in range(1, 10)]
    assert_problem(hold(api, {**GOOD, "seats": nine}), 422, "ORDER_TOO_LARGE")
    best = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "quantity": 9}
    assert_problem(hold(api, best), 422, "ORDER_TOO_LARGE")
    assert leftovers(loaded_seats) == NOTHING
    held(api, {**GOOD, "seats": nine[:8]})  # the maximum itself is fine


def test_max_seats_per_order_is_a_setting(api, monkeypatch):
    use_settings(monkeypatch, max_seats_per_order=1)
    assert_problem(hold(api), 422, "ORDER_TOO_LARGE")
    held(api, {**GOOD, "seats": SEATS[:1]})


def test_the_buyer_limit_counts_held_seats(api, monkeypatch):
    use_settings(monkeypatch, max_seats_per_buyer=3)
    held(api)
    two_more = [{**SEATS[0], "column": "8"}, {**SEATS[0], "column": "9"}]
    assert_problem(hold(api, {**GOOD, "seats": two_more}), 409, "BUYER_LIMIT_REACHED")
    held(api, {**GOOD, "seats": two_more[:1]})


def test_holding_is_rate_limited_per_buyer_with_retry_after(api, loaded_seats, monkeypatch):
    use_settings(monkeypatch, rate_limit_burst=2, rate_limit_window_seconds=10.0)
    held(api, {**GOOD, "seats": [SEATS[0]]})
    assert_problem(hold(api, {**GOOD, "seats": [SEATS[0]]}), 409, "SEAT_TAKEN")  # counts too
    before = leftovers(loaded_seats)
    limited = hold(api, {**GOOD, "seats": [SEATS[1]]})
    assert_problem(limited, 429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert leftovers(loaded_seats) == before  # the limited attempt decided nothing
    held(api, {**GOOD, "seats": [SEATS[1]]}, headers=B)  # another buyer is not limited


def test_redis_unreachable_is_503_and_nothing_changes(api, monkeypatch):
    from tests.support.processes import free_port

    order = held(api)
    dead = seats.client(f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(seats, "client", lambda url=None: dead)  # the catalog copy stays cached
    for response in (
        hold(api, {**GOOD, "seats": [{**SEATS[0], "column": "9"}]}),
        api.get(f"{ORDERS}/{order['orderId']}", headers=A),
        cancel(api, order["orderId"]),
        confirm(api, order),
        refund(api, order["orderId"]),
    ):
        body = assert_problem(response, 503, "SERVICE_UNAVAILABLE")
        assert int(response.headers["Retry-After"]) >= 1, body
    monkeypatch.undo()
    use_settings(monkeypatch, payment_webhook_secret=WEBHOOK_SECRET)
    assert api.get(f"{ORDERS}/{order['orderId']}", headers=A).get_json() == order


def test_a_call_that_may_have_run_is_outcome_unknown(api, monkeypatch):
    import redis

    from models.seats.orders import OrderScripts

    def timed_out(*args, **kwargs):
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(OrderScripts, "hold", timed_out)
    response = hold(api, **{"Idempotency-Key": "k-unknown"})
    assert_problem(response, 503, "OUTCOME_UNKNOWN")
    assert int(response.headers["Retry-After"]) >= 1


def test_an_answer_lost_after_the_hold_ran_is_outcome_unknown_and_the_key_tells(
    api, loaded_seats, monkeypatch, session_settings
):
    """The uncertain failure: Redis runs the hold, its answer never arrives. The buyer hears
    503 OUTCOME_UNKNOWN; the seats stay held with the order's one event; the same
    Idempotency-Key then answers the 201 of that order, and holds nothing more. A cancel while
    answers are lost fails at its first call (the order's lookup, a read: 503
    SERVICE_UNAVAILABLE, nothing changed), and the cancel again is the one transition."""
    from urllib.parse import urlsplit

    from tests.support.outbox import order_snapshots
    from tests.support.proxy import TcpProxy

    r = loaded_seats
    url = urlsplit(session_settings.redis_url)
    proxy = TcpProxy(url.hostname, url.port)
    proxied = seats.connect(f"redis://127.0.0.1:{proxy.port}{url.path}", cluster=False, timeout=0.5)
    monkeypatch.setattr(seats, "client", lambda url=None: proxied)
    try:
        held(api, {**GOOD, "seats": [{"zoneId": 3, "row": "A", "column": "1"}]})  # warm
        proxy.drop_answers()
        key = {"Idempotency-Key": "lost-hold-1"}
        lost = hold(api, **key)
        assert_problem(lost, 503, "OUTCOME_UNKNOWN")
        [made] = [
            o
            for o in order_snapshots(r)
            if o["seats"][0]["row"] == SEATS[0]["row"]
            and o["seats"][0]["zoneId"] == SEATS[0]["zoneId"]
        ]
        assert made["status"] == "HELD"
        proxy.heal()
        replay = hold(api, **key)
        assert replay.status_code == 201
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.get_json()["orderId"] == made["orderId"]
        assert [o["version"] for o in order_snapshots(r) if o["orderId"] == made["orderId"]] == [1]

        proxy.drop_answers()
        assert_problem(cancel(api, made["orderId"]), 503, "SERVICE_UNAVAILABLE")
        proxy.heal()
        again = cancel(api, made["orderId"])
        assert again.status_code == 200 and again.get_json()["status"] == "CANCELLED"
        versions = [o["version"] for o in order_snapshots(r) if o["orderId"] == made["orderId"]]
        assert versions == [1, 2]  # one cancel, one event
    finally:
        proxy.close()


# --- bad input leaves nothing ----------------------------------------------------------------


BAD_BODIES = [
    ({}, 400, "VALIDATION_FAILED"),
    ({"venueId": "Venue1", "eventId": "Event1"}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "seats": []}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "seats": [SEATS[0], SEATS[0]]}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "seats": [SEATS[0], {**SEATS[0], "row": "a"}]}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "zoneId": 1, "quantity": 2}, 400, "VALIDATION_FAILED"),
    ({"venueId": "Venue1", "eventId": "Event1", "zoneId": 1}, 400, "VALIDATION_FAILED"),
    (
        {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "quantity": 0},
        400,
        "VALIDATION_FAILED",
    ),
    (
        {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "quantity": "2"},
        400,
        "VALIDATION_FAILED",
    ),
    ({**GOOD, "extra": 1}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "seats": [{**SEATS[0], "extra": 1}]}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "seats": [{**SEATS[0], "column": 1}]}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "seats": [{**SEATS[0], "column": "01"}]}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "seats": [{**SEATS[0], "row": "1"}]}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "seats": [{**SEATS[0], "zoneId": True}]}, 400, "VALIDATION_FAILED"),
    ({**GOOD, "venueId": "Nowhere"}, 404, "UNKNOWN_VENUE"),
    ({**GOOD, "eventId": "Nothing"}, 404, "UNKNOWN_EVENT"),
    ({**GOOD, "venueId": "Venue2"}, 422, "EVENT_NOT_AT_VENUE"),
    ({**GOOD, "seats": [SEATS[0], {**SEATS[1], "zoneId": 99}]}, 404, "UNKNOWN_ZONE"),
    ({**GOOD, "seats": [SEATS[0], {**SEATS[1], "row": "AE"}]}, 422, "SEAT_OUT_OF_RANGE"),
    ({**GOOD, "seats": [SEATS[0], {**SEATS[1], "column": "41"}]}, 422, "SEAT_OUT_OF_RANGE"),
    ({"venueId": "Venue1", "eventId": "Event1", "zoneId": 99, "quantity": 2}, 404, "UNKNOWN_ZONE"),
]


@pytest.mark.parametrize(("body", "status", "code"), BAD_BODIES)
def test_bad_input_is_a_problem_and_leaves_nothing(api, loaded_seats, body, status, code):
    assert_problem(hold(api, body), status, code)
    assert_problem(hold(api, body, **{"Idempotency-Key": "k-bad"}), status, code)
    assert leftovers(loaded_seats) == NOTHING


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        (b"not json", "application/json", 400, "MALFORMED_JSON"),
        (b"[]", "application/json", 400, "MALFORMED_JSON"),
        (json.dumps(GOOD).encode(), "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            b'{"venueId": "Venue1", "venueId": "Venue1"}',
            "application/json",
            400,
            "VALIDATION_FAILED",
        ),
        (b"{" + b'"a": "' + b"x" * 17000 + b'"}', "application/json", 413, "PAYLOAD_TOO_LARGE"),
    ],
)
def test_unreadable_bodies_leave_nothing(api, loaded_seats, data, content_type, status, code):
    response = api.post(ORDERS, data=data, content_type=content_type, headers=A)
    assert_problem(response, status, code)
    assert leftovers(loaded_seats) == NOTHING


@pytest.mark.parametrize("key", ["", " ", "a b", "é", "x" * 256])
def test_a_bad_idempotency_key_is_400(api, loaded_seats, key):
    assert_problem(hold(api, **{"Idempotency-Key": key}), 400, "VALIDATION_FAILED")
    assert leftovers(loaded_seats) == NOTHING


def test_anonymous_is_401_and_leaves_nothing(api, loaded_seats):
    response = api.post(ORDERS, json=GOOD)
    assert_problem(response, 401, "UNAUTHENTICATED")
    assert leftovers(loaded_seats) == NOTHING


# --- idempotency -----------------------------------------------------------------------------


def test_the_same_key_and_body_replays_the_order(api, loaded_seats):
    first = hold(api, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    after_first = leftovers(loaded_seats)
    again = hold(api, **{"Idempotency-Key": "k-1"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert leftovers(loaded_seats) == after_first  # no second hold, no second event
    # row spelled in lower case: the same request
    lower = {**GOOD, "seats": [{**SEATS[0], "row": "a"}, SEATS[1]]}
    assert hold(api, lower, **{"Idempotency-Key": "k-1"}).status_code == 201


def test_the_same_key_with_another_body_is_422(api, loaded_seats):
    held_order = hold(api, **{"Idempotency-Key": "k-2"}).get_json()
    other = {**GOOD, "seats": [SEATS[0]]}
    before = leftovers(loaded_seats)
    assert_problem(hold(api, other, **{"Idempotency-Key": "k-2"}), 422, "IDEMPOTENCY_KEY_REUSED")
    assert leftovers(loaded_seats) == before
    best = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "quantity": 2}
    assert_problem(hold(api, best, **{"Idempotency-Key": "k-2"}), 422, "IDEMPOTENCY_KEY_REUSED")
    assert held_order["status"] == "HELD"


def test_a_key_is_scoped_to_the_buyer(api):
    a = hold(api, **{"Idempotency-Key": "shared"}).get_json()
    other = {**GOOD, "seats": [{**SEATS[0], "column": "5"}]}
    b = hold(api, other, headers=B, **{"Idempotency-Key": "shared"})
    assert b.status_code == 201 and "Idempotent-Replayed" not in b.headers
    assert b.get_json()["orderId"] != a["orderId"]


def test_a_replay_answers_the_order_as_it_stands(api):
    order = hold(api, **{"Idempotency-Key": "k-3"}).get_json()
    assert cancel(api, order["orderId"]).status_code == 200
    again = hold(api, **{"Idempotency-Key": "k-3"})
    assert again.status_code == 201 and again.get_json()["status"] == "CANCELLED"


def test_without_a_key_each_post_is_a_new_order(api):
    body = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "quantity": 1}
    assert held(api, body)["orderId"] != held(api, body)["orderId"]


# --- sales window ----------------------------------------------------------------------------


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


@pytest.mark.parametrize(
    ("start", "end", "code"),
    [
        (timedelta(hours=1), None, "SALE_NOT_OPEN"),
        (None, timedelta(hours=-1), "SALE_CLOSED"),
        (timedelta(days=-2), timedelta(seconds=-1), "SALE_CLOSED"),
    ],
)
def test_outside_the_window_both_posts_are_409(api, loaded_seats, start, end, code):
    publish_window(loaded_seats, "Event1", start and _iso(start), end and _iso(end))
    assert_problem(hold(api), 409, code)
    best = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "quantity": 2}
    assert_problem(hold(api, best, **{"Idempotency-Key": "k-w"}), 409, code)
    ticket = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "1"}
    assert_problem(api.post("/purchase/api/v1/tickets", json=ticket, headers=A), 409, code)
    assert leftovers(loaded_seats) == NOTHING
    # another event is on sale all the same
    held(api, {**GOOD, "eventId": "Event2"})


def test_inside_the_window_sales_go_on(api, loaded_seats):
    publish_window(loaded_seats, "Event1", _iso(timedelta(hours=-1)), _iso(timedelta(hours=1)))
    held(api)
    ticket = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "7"}
    assert api.post("/purchase/api/v1/tickets", json=ticket, headers=A).status_code == 201


def test_the_window_is_kept_by_the_catalog_mysql_and_the_query_api(api, clean_tickets):
    import models
    from models.catalog import from_database, upsert

    document = json.loads(json.dumps(TEST_CATALOG))
    document["events"][0].update(
        {"salesStart": "2027-01-01T10:00:00+02:00", "salesEnd": "2027-06-01T00:00:00Z"}
    )
    catalog = Catalog.from_dict(document)
    event = catalog.events["Event1"]
    assert event.sales_start == datetime(2027, 1, 1, 8, tzinfo=UTC)
    assert Catalog.from_dict(catalog.to_dict()) == catalog
    assert "salesStart" not in catalog.to_dict()["events"][1]  # absent: always open
    try:
        with models.writer().begin() as conn:
            upsert(conn, catalog)
        with models.writer().connect() as conn:
            assert from_database(conn).events["Event1"] == event
        shown = api.get("/query/api/v1/events/Event1").get_json()
        assert (shown["salesStart"], shown["salesEnd"]) == (
            "2027-01-01T08:00:00Z",
            "2027-06-01T00:00:00Z",
        )
        assert "salesStart" not in api.get("/query/api/v1/events/Event2").get_json()
    finally:
        with models.writer().begin() as conn:
            upsert(conn, Catalog.from_dict(TEST_CATALOG))
            conn.execute(
                models.tables.Event.__table__.update().values(sales_start=None, sales_end=None)
            )


@pytest.mark.parametrize(
    "window",
    [
        {"salesStart": "2027-01-01T00:00:00Z", "salesEnd": "2027-01-01T00:00:00Z"},
        {"salesStart": "2027-01-02T00:00:00Z", "salesEnd": "2027-01-01T00:00:00Z"},
        {"salesStart": "2027-01-01T00:00:00"},  # no time zone
        {"salesEnd": "soon"},
    ],
)
def test_a_bad_window_is_refused_by_the_catalog(window):
    from marshmallow import ValidationError

    document = json.loads(json.dumps(TEST_CATALOG))
    document["events"][0].update(window)
    with pytest.raises(ValidationError):
        Catalog.from_dict(document)


# --- reading ---------------------------------------------------------------------------------


def test_get_is_the_owners_and_operators_only(api):
    order = held(api)
    url = f"{ORDERS}/{order['orderId']}"
    assert api.get(url, headers=A).get_json() == order
    assert api.get(url, headers=OPS).get_json() == order
    assert_problem(api.get(url, headers=B), 404, "ORDER_NOT_FOUND")
    assert_problem(api.get(url), 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "order_id",
    [
        "nope",
        str(uuid.uuid4()),
        str(uuid.uuid4()).upper(),
        keys.new_order_id("Event1"),
        "x" * 300,
    ],
)
def test_malformed_or_unknown_order_ids_are_404(api, order_id):
    assert_problem(api.get(f"{ORDERS}/{order_id}", headers=OPS), 404, "ORDER_NOT_FOUND")
    assert_problem(cancel(api, order_id, OPS), 404, "ORDER_NOT_FOUND")
    assert_problem(refund(api, order_id), 404, "ORDER_NOT_FOUND")
    assert_problem(
        confirm(api, {"orderId": order_id, "total": "1.00", "currency": "USD"}),
        404,
        "ORDER_NOT_FOUND",
    )


def test_get_expires_a_due_hold(api, monkeypatch):
    use_settings(monkeypatch, hold_seconds=0.001)
    order = held(api)
    time.sleep(0.02)
    got = api.get(f"{ORDERS}/{order['orderId']}", headers=A).get_json()
    assert got["status"] == "EXPIRED" and got["version"] == 2


# --- the state × action table ----------------------------------------------------------------


def make(api, state: str, monkeypatch) -> dict:
    """An order of buyer A in `state` (EXPIRED: a 1 ms hold left to lapse)."""
    hold_seconds = settings.get().hold_seconds
    if state == "EXPIRED":
        use_settings(monkeypatch, hold_seconds=0.001)
    order = held(api)
    if state == "EXPIRED":
        use_settings(monkeypatch, hold_seconds=hold_seconds)
        time.sleep(0.02)
    if state in ("PAID", "REFUNDED"):
        assert confirm(api, order).status_code == 200
    if state == "REFUNDED":
        assert refund(api, order["orderId"]).status_code == 200
    if state == "CANCELLED":
        assert cancel(api, order["orderId"]).status_code == 200
    return order


TABLE = [
    ("confirm", "HELD", 200, "PAID"),
    ("confirm", "PAID", 200, "PAID"),
    ("confirm", "EXPIRED", 200, "PAID"),
    ("confirm", "CANCELLED", 409, "ORDER_NOT_PAYABLE"),
    ("confirm", "REFUNDED", 409, "ORDER_NOT_PAYABLE"),
    ("cancel", "HELD", 200, "CANCELLED"),
    ("cancel", "PAID", 409, "ORDER_PAID"),
    ("cancel", "EXPIRED", 409, "ORDER_CLOSED"),
    ("cancel", "CANCELLED", 200, "CANCELLED"),
    ("cancel", "REFUNDED", 409, "ORDER_CLOSED"),
    ("refund", "HELD", 409, "ORDER_NOT_PAID"),
    ("refund", "PAID", 200, "REFUNDED"),
    ("refund", "EXPIRED", 409, "ORDER_NOT_PAID"),
    ("refund", "CANCELLED", 409, "ORDER_NOT_PAID"),
    ("refund", "REFUNDED", 200, "REFUNDED"),
]


@pytest.mark.parametrize(("action", "state", "status", "outcome"), TABLE)
def test_state_by_action(api, loaded_seats, monkeypatch, action, state, status, outcome):
    order = make(api, state, monkeypatch)
    order_id = order["orderId"]
    if action == "confirm":
        response = confirm(api, order)
    elif action == "cancel":
        response = cancel(api, order_id)
    else:
        response = refund(api, order_id)
    if status == 200:
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["status"] == outcome
        assert set(response.get_json()) == ORDER_FIELDS
    else:
        assert_problem(response, status, outcome)
    now = api.get(f"{ORDERS}/{order_id}", headers=A).get_json()["status"]
    assert now == (outcome if status == 200 else state)
    # seats are free at once after a cancel or refund, taken while held or paid
    map_row = seats.orders_for(loaded_seats).zone_map(
        "Event1", Catalog.from_dict(TEST_CATALOG).venues["Venue1"].zones[1]
    )[0]
    assert map_row[0] == {"HELD": "h", "PAID": "1"}.get(now, "0")


def test_confirm_with_another_payment_of_a_paid_order_is_409(api, monkeypatch):
    order = make(api, "PAID", monkeypatch)
    assert_problem(confirm(api, order, payment="pay-other"), 409, "ORDER_NOT_PAYABLE")


def test_a_late_payment_whose_seats_are_gone_is_hold_expired(api, monkeypatch):
    order = make(api, "EXPIRED", monkeypatch)
    held(api, {**GOOD, "seats": [SEATS[0]]}, headers=B)  # the seat went to B meanwhile
    assert_problem(confirm(api, order), 409, "HOLD_EXPIRED")


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"amount": "199.99"}, 422, "AMOUNT_MISMATCH"),
        ({"currency": "EUR"}, 422, "AMOUNT_MISMATCH"),
        ({"amount": 200}, 400, "VALIDATION_FAILED"),
        ({"amount": "2e2"}, 400, "VALIDATION_FAILED"),
        ({"currency": "usd"}, 400, "VALIDATION_FAILED"),
        ({"paymentId": ""}, 400, "VALIDATION_FAILED"),
        ({"extra": 1}, 400, "VALIDATION_FAILED"),
    ],
)
def test_confirm_refusals_leave_the_hold(api, changes, status, code):
    order = held(api)
    assert_problem(confirm(api, order, **changes), status, code)
    assert api.get(f"{ORDERS}/{order['orderId']}", headers=A).get_json() == order


def test_an_amount_compares_by_value(api):
    order = held(api)
    response = confirm(api, order, amount="200.0")
    assert response.status_code == 200 and response.get_json()["status"] == "PAID"


# --- who may call what -----------------------------------------------------------------------


def test_confirm_needs_the_signature_not_a_token(api):
    order = held(api)
    body = {"orderId": order["orderId"], "paymentId": "p", "amount": "200.00", "currency": "USD"}
    url = f"{ORDERS}/{order['orderId']}/confirm"
    for headers in ({}, A, OPS):
        assert_problem(api.post(url, json=body, headers=headers), 401, "BAD_SIGNATURE")
    raw = json.dumps(body).encode()
    now = int(time.time())
    bad_headers = [
        payment_signature.sign(raw, "another-secret-of-enough-length", now),
        payment_signature.sign(raw, WEBHOOK_SECRET, now - 301),
        payment_signature.sign(raw + b" ", WEBHOOK_SECRET, now),
        "t=1,v1=zz",
        "garbage",
    ]
    for header in bad_headers:
        response = api.post(
            url,
            data=raw,
            content_type="application/json",
            headers={payment_signature.HEADER: header},
        )
        assert_problem(response, 401, "BAD_SIGNATURE")
    # a signed body for another order cannot be replayed onto this one
    other = held(api, {**GOOD, "seats": [{**SEATS[0], "column": "9"}]})
    replayed = {**body, "orderId": other["orderId"]}
    raw = json.dumps(replayed).encode()
    header = payment_signature.sign(raw, WEBHOOK_SECRET, now)
    response = api.post(
        url, data=raw, content_type="application/json", headers={payment_signature.HEADER: header}
    )
    assert_problem(response, 401, "BAD_SIGNATURE")
    assert api.get(f"{ORDERS}/{order['orderId']}", headers=A).get_json()["status"] == "HELD"


def test_cancel_is_the_owners_or_an_operators(api):
    order = held(api)
    assert_problem(cancel(api, order["orderId"], {}), 401, "UNAUTHENTICATED")
    assert_problem(cancel(api, order["orderId"], B), 404, "ORDER_NOT_FOUND")
    assert api.get(f"{ORDERS}/{order['orderId']}", headers=A).get_json()["status"] == "HELD"
    assert cancel(api, order["orderId"], OPS).get_json()["status"] == "CANCELLED"
    mine = held(api)
    assert cancel(api, mine["orderId"], A).get_json()["status"] == "CANCELLED"


def test_refund_is_an_operators_or_the_providers(api, monkeypatch):
    order = make(api, "PAID", monkeypatch)
    order_id = order["orderId"]
    assert_problem(refund(api, order_id, {}), 401, "UNAUTHENTICATED")
    assert_problem(refund(api, order_id, A), 403, "FORBIDDEN")
    assert_problem(refund(api, order_id, B), 404, "ORDER_NOT_FOUND")
    status = api.get(f"{ORDERS}/{order_id}", headers=A).get_json()["status"]
    assert status == "PAID"
    # signed by the provider: only the payment that paid it
    wrong = {"orderId": order_id, "paymentId": "pay-other"}
    assert_problem(signed(api, order_id, "refund", wrong), 409, "ORDER_NOT_PAID")
    bad = signed(api, order_id, "refund", {**wrong, "paymentId": f"pay-{order_id}"}, "x" * 40)
    assert_problem(bad, 401, "BAD_SIGNATURE")
    right = {"orderId": order_id, "paymentId": f"pay-{order_id}"}
    response = signed(api, order_id, "refund", right)
    assert response.status_code == 200 and response.get_json()["status"] == "REFUNDED"


def test_an_operators_refund_body_must_name_the_order(api, monkeypatch):
    order = make(api, "PAID", monkeypatch)
    url = f"{ORDERS}/{order['orderId']}/refund"
    wrong = {"orderId": "another", "paymentId": "p"}
    assert_problem(api.post(url, json=wrong, headers=OPS), 400, "VALIDATION_FAILED")
    right = {"orderId": order["orderId"], "paymentId": "any"}
    assert api.post(url, json=right, headers=OPS).get_json()["status"] == "REFUNDED"


def test_cancel_needs_no_body_nor_content_type(api):
    order = held(api)
    response = api.post(f"{ORDERS}/{order['orderId']}/cancel", headers=A)
    assert response.status_code == 200


# --- races -----------------------------------------------------------------------------------


def test_two_concurrent_orders_sharing_a_seat_over_gunicorn_one_wins(loaded_seats, clean_tickets):
    from tests.support.processes import gunicorn

    rounds = 10
    with gunicorn({}) as base:
        outcomes: list[tuple[int, ...]] = []
        for i in range(rounds):
            shared = {"zoneId": 5, "row": "A", "column": str(i + 1)}
            bodies = [
                {**GOOD, "seats": [shared, {"zoneId": 6, "row": "A", "column": str(i + 1)}]},
                {**GOOD, "seats": [{"zoneId": 7, "row": "A", "column": str(i + 1)}, shared]},
            ]
            results: list[int] = [0, 0]
            barrier = threading.Barrier(2)

            def post(k: int, bodies=bodies, results=results, barrier=barrier) -> None:
                barrier.wait()
                response = requests.post(
                    base + ORDERS, json=bodies[k], headers=bearer(f"racer-{k}"), timeout=30
                )
                results[k] = response.status_code

            threads = [threading.Thread(target=post, args=(k,)) for k in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            outcomes.append(tuple(sorted(results)))
    assert outcomes == [(201, 409)] * rounds
    # the loser held nothing: exactly one order's two seats per round
    assert leftovers(loaded_seats)["held"] == 2 * rounds


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture
def relay_stopped_after():
    """Stop the session relay after the test: later tests that sell while it runs would find
    their sales persisted behind their back (and rebuilt into the next test's seat state)."""
    yield
    from tests import conftest

    while conftest._session_relay:
        conftest._session_relay.pop()[1].close()


@pytest.mark.worker
def test_hold_confirm_refund_reach_the_query_api_through_the_relay_and_worker(
    api, pipeline_worker, relay_stopped_after, pipeline_relay
):
    """Hold 3 seats over HTTP, confirm signed: the real relay and worker make the order PAID in
    MySQL with its tickets; a refund makes them REFUNDED; the seats can be ordered again."""
    from tests.support.processes import wait_until

    three = [{"zoneId": 4, "row": "C", "column": str(c)} for c in (5, 6, 7)]
    order = held(api, {**GOOD, "seats": three})
    order_id = order["orderId"]
    ticket_ids = [s["ticketId"] for s in order["seats"]]
    paid = confirm(api, order)
    assert paid.status_code == 200 and paid.get_json()["status"] == "PAID"

    def projected(headers=A) -> dict | None:
        response = api.get(f"/query/api/v1/orders/{order_id}", headers=headers)
        return response.get_json() if response.status_code == 200 else None

    wait_until(
        lambda: (projected() or {}).get("status") == "PAID", 90, "the PAID order in the query API"
    )
    seen = projected()
    assert seen["version"] == 2 and seen["total"] == "285.00"
    assert sorted(s["ticketId"] for s in seen["seats"]) == sorted(ticket_ids)
    for ticket_id in ticket_ids:
        ticket = api.get(f"/query/api/v1/tickets/{ticket_id}", headers=A)
        assert ticket.status_code == 200
        assert ticket.get_json()["status"] == "PAID"
    assert api.get(f"/query/api/v1/tickets/{ticket_ids[0]}", headers=B).status_code == 404

    assert refund(api, order_id).get_json()["status"] == "REFUNDED"
    wait_until(lambda: (projected() or {}).get("status") == "REFUNDED", 90, "the REFUNDED order")
    statuses = {
        api.get(f"/query/api/v1/tickets/{t}", headers=OPS).get_json()["status"] for t in ticket_ids
    }
    assert statuses == {"REFUNDED"}

    again = held(api, {**GOOD, "seats": three}, headers=B)  # the seats are free again
    assert confirm(api, again).status_code == 200
    wait_until(
        lambda: (projected_of(api, again["orderId"]) or {}).get("status") == "PAID",
        90,
        "the second buyer's PAID order",
    )


def projected_of(api, order_id: str) -> dict | None:
    response = api.get(f"/query/api/v1/orders/{order_id}", headers=OPS)
    return response.get_json() if response.status_code == 200 else None

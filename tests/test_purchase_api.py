"""The purchase API against real Redis and moto: every code of the contract's error table,
and that bad input leaves nothing behind (no seat sold, no message published)."""

from __future__ import annotations

import json
import uuid

import pytest

from models.seats import keys

URL = "/purchase/api/v1/tickets"
GOOD = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "1"}


def buy(client, **changes):
    return client.post(URL, json={**GOOD, **changes})


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.get_json(force=True)
    assert body["code"] == code
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


def sold_bits(redis_client) -> int:
    """Seats marked sold anywhere in Redis."""
    return sum(redis_client.bitcount(key) for key in redis_client.scan_iter("seats:*:sold"))


def test_seed_example_is_sold_with_201_location_and_catalog_price(client, session_settings):
    response = buy(client)
    assert response.status_code == 201
    body = response.get_json()
    assert str(uuid.UUID(body["ticketId"])) == body["ticketId"]
    assert response.headers["Location"] == f"/query/api/v1/tickets/{body['ticketId']}"
    assert {k: body[k] for k in GOOD} == GOOD
    assert body["price"] == "100.00"
    assert body["status"] == "PAID"
    assert body["createdOn"].endswith("Z")


def test_lowercase_row_is_the_same_seat(client):
    assert buy(client, row="b").get_json()["row"] == "B"
    assert_problem(buy(client, row="B"), 409, "SEAT_TAKEN")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b"null",
        b"42",
        b"{",
        b"\xff\xfe",
        b"[" * 5000 + b"]" * 5000,
        # JSON travels as UTF-8 (RFC 8259): json.loads would detect and read UTF-16 or UTF-32
        json.dumps(GOOD).encode("utf-16"),
        json.dumps(GOOD).encode("utf-32-le"),
        b"\xef\xbb\xbf" + json.dumps(GOOD).encode(),  # a UTF-8 byte order mark
        # Python's json extensions are not JSON
        json.dumps({**GOOD, "zoneId": float("nan")}).encode(),
        json.dumps({**GOOD, "zoneId": float("inf")}).encode(),
    ],
)
def test_malformed_json(client, body, redis_client):
    assert_problem(
        client.post(URL, data=body, content_type="application/json"), 400, "MALFORMED_JSON"
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"venueId": ""}, "venueId"),
        ({"eventId": ""}, "eventId"),
        ({"eventId": 7}, "eventId"),
        ({"zoneId": 0}, "zoneId"),
        ({"zoneId": -3}, "zoneId"),
        ({"zoneId": "1"}, "zoneId"),
        ({"zoneId": 1.5}, "zoneId"),
        ({"zoneId": True}, "zoneId"),
        ({"zoneId": None}, "zoneId"),
        ({"row": ""}, "row"),
        ({"row": "1"}, "row"),
        ({"row": "A1"}, "row"),
        ({"row": "Ä"}, "row"),
        ({"row": "A\n"}, "row"),
        ({"column": ""}, "column"),
        ({"column": 1}, "column"),
        ({"column": "0"}, "column"),
        ({"column": "-1"}, "column"),
        ({"column": "01"}, "column"),
        ({"column": "1.0"}, "column"),
        ({"column": "x"}, "column"),
        ({"venueId": "V" * 65}, "venueId"),
        ({"extra": "field"}, "extra"),
        # ids are [A-Za-z0-9._-]{1,64}, refused before any lookup
        ({"venueId": "Venue 1"}, "venueId"),
        ({"venueId": "Venue1 "}, "venueId"),
        ({"eventId": "Évent1"}, "eventId"),
        ({"eventId": "Event1\n"}, "eventId"),
        ({"eventId": "Event1}"}, "eventId"),  # would end the Redis hash tag early
        ({"eventId": "a/b"}, "eventId"),
        ({"eventId": "Event\u0131"}, "eventId"),  # dotless i: upper() makes it an I
    ],
)
def test_validation_failed_names_the_field(client, changes, field):
    body = assert_problem(buy(client, **changes), 400, "VALIDATION_FAILED")
    assert field in body["errors"]


def test_missing_fields_are_all_listed(client):
    body = assert_problem(client.post(URL, json={}), 400, "VALIDATION_FAILED")
    assert set(body["errors"]) == {"venueId", "eventId", "zoneId", "row", "column"}


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"venueId": "Nowhere"}, 404, "UNKNOWN_VENUE"),
        ({"eventId": "Event99"}, 404, "UNKNOWN_EVENT"),
        ({"zoneId": 51}, 404, "UNKNOWN_ZONE"),
        ({"zoneId": 10**30}, 404, "UNKNOWN_ZONE"),
        ({"eventId": "Event3"}, 422, "EVENT_NOT_AT_VENUE"),
        ({"row": "AE"}, 422, "SEAT_OUT_OF_RANGE"),  # Venue1 has rows A … AD (30)
        ({"column": "41"}, 422, "SEAT_OUT_OF_RANGE"),
        ({"row": "ZZZZZZZZZZZZZZZZ"}, 422, "SEAT_OUT_OF_RANGE"),
        ({"column": "999999999"}, 422, "SEAT_OUT_OF_RANGE"),
    ],
)
def test_catalog_errors_leave_no_trace(client, changes, status, code, redis_client):
    assert_problem(buy(client, **changes), status, code)
    assert sold_bits(redis_client) == 0
    assert outbox_entries(redis_client) == []


def outbox_entries(redis_client) -> list[dict]:
    """Every entry in the outbox streams, oldest first per stream: each must be a sale's order
    of one seat (kind=order), given as its seat with the order's status, version and id."""
    found = []
    for stream in keys.outbox_streams():
        for _, fields in redis_client.xrange(stream):
            assert fields["kind"] == "order", fields
            order = json.loads(fields["order"])
            [seat] = order["seats"]
            found.append(
                {**seat, **{k: order[k] for k in ("orderId", "status", "version", "createdOn")}}
            )
    return found


def test_last_row_and_column_are_in_range(client):
    assert buy(client, row="AD", column="40").status_code == 201


def test_seat_taken(client):
    assert buy(client).status_code == 201
    body = assert_problem(buy(client), 409, "SEAT_TAKEN")
    assert "A1" in body["detail"]


def test_row_full_zone_full_event_sold_out(client):
    tiny = {"venueId": "TinyVenue", "eventId": "TinyEvent"}
    # zone 1: 2 of 3 seats per row
    assert buy(client, **tiny, zoneId=1, row="A", column="1").status_code == 201
    assert buy(client, **tiny, zoneId=1, row="A", column="2").status_code == 201
    assert_problem(buy(client, **tiny, zoneId=1, row="A", column="3"), 409, "ROW_FULL")
    # zone 2: 3 of 4 seats
    for row, column in (("A", "1"), ("A", "2"), ("B", "1")):
        assert buy(client, **tiny, zoneId=2, row=row, column=column).status_code == 201
    assert_problem(buy(client, **tiny, zoneId=2, row="B", column="2"), 409, "ZONE_FULL")
    # a sold seat answers SEAT_TAKEN even when its zone is full
    assert_problem(buy(client, **tiny, zoneId=2, row="A", column="1"), 409, "SEAT_TAKEN")
    # TinyCapped: 2 seats across the whole event
    capped = {"venueId": "TinyVenue", "eventId": "TinyCapped"}
    assert buy(client, **capped, zoneId=3, row="A", column="1").status_code == 201
    assert buy(client, **capped, zoneId=1, row="B", column="1").status_code == 201
    assert_problem(buy(client, **capped, zoneId=3, row="C", column="3"), 409, "EVENT_SOLD_OUT")


def test_not_found_and_method_not_allowed_are_problems(client):
    assert_problem(client.get("/nowhere"), 404, "NOT_FOUND")
    response = client.delete(URL)
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["Allow"]


def test_two_megabyte_body_is_a_4xx(client, redis_client):
    response = client.post(
        URL, data=b'{"venueId": "' + b"x" * 2 * 1024 * 1024 + b'"}', content_type="application/json"
    )
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
    assert sold_bits(redis_client) == 0


def test_redis_unreachable_is_503_with_retry_after(client, monkeypatch):
    from models import seats
    from web import purchase

    dead = seats.client(f"redis://127.0.0.1:{free_port_number()}/0")
    monkeypatch.setattr(seats, "client", lambda url=None: dead)
    purchase.forget_catalog()
    response = buy(client)
    assert_problem(response, 503, "SERVICE_UNAVAILABLE")
    assert int(response.headers["Retry-After"]) >= 1
    health = client.get("/purchase/health/deep")
    assert health.status_code == 503
    assert health.get_json()["checks"]["redis"] == "DOWN"
    assert health.get_json()["reasons"][0].startswith("redis: ")
    # the load balancer's probe calls nothing: the task stays in service
    assert client.get("/purchase/health").get_json() == {"status": "UP"}


def free_port_number() -> int:
    from tests.support.processes import free_port

    return free_port()


def test_seat_state_not_loaded_is_503(client, redis_client):
    from web import purchase

    redis_client.flushdb()
    purchase.forget_catalog()
    assert_problem(buy(client), 503, "SERVICE_UNAVAILABLE")


def test_a_sale_is_one_redis_call_with_its_event_and_rejections_append_nothing(
    client, redis_client, monkeypatch
):
    """The accepted purchase is ONE write to Redis's socket carrying one EVALSHA (the script,
    which stores the sale as a PAID order of one seat and appends its event to the outbox); a
    refusal appends nothing; the request touches no broker."""
    import redis as redis_py

    buy(client, row="C", column="6")  # catalog cached, script loaded, connection warm
    sent: list[bytes] = []
    original = redis_py.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(b"".join(command) if isinstance(command, list) else command)
        return original(self, command, check_health)

    monkeypatch.setattr(redis_py.connection.AbstractConnection, "send_packed_command", counting)
    before = redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]
    entries_before = len(outbox_entries(redis_client))
    sent.clear()
    response = buy(client, row="C", column="7")
    writes = list(sent)
    after = redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert response.status_code == 201
    assert len(writes) == 1 and b"EVALSHA" in writes[0]
    assert after - before == 1
    assert_problem(buy(client, row="C", column="7"), 409, "SEAT_TAKEN")
    assert_problem(buy(client, zoneId=99), 404, "UNKNOWN_ZONE")
    entries = outbox_entries(redis_client)[entries_before:]
    assert [(t["row"], t["column"], t["status"], t["version"]) for t in entries] == [
        ("C", "7", "PAID", 1)
    ]
    ticket = response.get_json()
    assert (entries[0]["ticketId"], entries[0]["price"]) == (ticket["ticketId"], ticket["price"])
    assert entries[0]["createdOn"] == ticket["createdOn"]


def test_an_answer_lost_after_the_script_ran_is_outcome_unknown_and_the_key_tells(
    client, redis_client, monkeypatch, session_settings
):
    """The uncertain failure: Redis runs the script, its answer never arrives. The buyer hears
    503 OUTCOME_UNKNOWN (not "not sold"); the seat stays sold with its outbox entry; the same
    Idempotency-Key then replays the 201 with the same ticket."""
    from urllib.parse import urlsplit

    from models import seats
    from tests.support.proxy import TcpProxy

    url = urlsplit(session_settings.redis_url)
    proxy = TcpProxy(url.hostname, url.port)
    proxied = seats.connect(f"redis://127.0.0.1:{proxy.port}{url.path}", cluster=False, timeout=0.5)
    monkeypatch.setattr(seats, "client", lambda url=None: proxied)
    try:
        assert buy(client, row="E", column="1").status_code == 201  # warm through the proxy
        proxy.drop_answers()
        headers = {"Idempotency-Key": "lost-answer-1"}
        lost = client.post(URL, json={**GOOD, "row": "E", "column": "2"}, headers=headers)
        assert_problem(lost, 503, "OUTCOME_UNKNOWN")
        assert int(lost.headers["Retry-After"]) >= 1
        [entry] = [
            t for t in outbox_entries(redis_client) if t["row"] == "E" and t["column"] == "2"
        ]
        proxy.heal()
        replay = client.post(URL, json={**GOOD, "row": "E", "column": "2"}, headers=headers)
        assert replay.status_code == 201
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.get_json()["ticketId"] == entry["ticketId"]
        assert len([t for t in outbox_entries(redis_client) if t["row"] == "E"]) == 2
    finally:
        proxy.close()


def test_redis_that_never_answers_is_a_quick_503_not_a_hung_worker(client, monkeypatch):
    """A Redis that accepts connections and then says nothing (a stalled node): the short
    socket timeout turns it into a 503 OUTCOME_UNKNOWN (the script was sent), and health says
    DOWN."""
    import socket
    import threading

    from models import seats

    assert buy(client, row="D", column="4").status_code == 201  # catalog cached, Redis fine
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_ignore() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept_and_ignore, daemon=True).start()
    stalled = seats.client(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
    monkeypatch.setattr(seats, "client", lambda url=None: stalled)
    try:
        response = buy(client, row="D", column="5")  # sent, never answered: it may have run
        assert_problem(response, 503, "OUTCOME_UNKNOWN")
        assert response.headers["Retry-After"]
        health = client.get("/purchase/health/deep")
        assert (health.status_code, health.get_json()["checks"]["redis"]) == (503, "DOWN")
        assert client.get("/purchase/health").status_code == 200
    finally:
        stop.set()
        for conn in held:
            conn.close()
        silent.close()

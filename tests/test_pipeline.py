"""End to end, as `make run` serves it: gunicorn (purchase, query, events on one base URL), the
relay and a Celery worker on their own SNS topic and SQS queue in moto, real Redis and MariaDB."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from aws_resources import create_messaging

from models import seats
from tests.support.outbox import drop_leftovers
from tests.support.processes import Relay, Worker, gunicorn, wait_until
from tests.support.tokens import bearer, operator_session

API = operator_session()  # every request with an operator's token

SEED = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "1"}


@pytest.fixture(scope="module")
def stack(database) -> Iterator[tuple[str, Worker, Relay]]:
    """gunicorn + relay + worker on a topic and queue of their own; yields the base URL, the
    worker and the relay."""
    env = {**create_messaging(f"e{uuid.uuid4().hex[:8]}").env(), "WORKER_HEARTBEAT_SECONDS": "1"}
    drop_leftovers(seats.client())
    with gunicorn(env) as base, Worker.start(env) as worker, Relay.start(env) as relay:
        yield base, worker, relay


@pytest.fixture
def base(no_session_relay, stack, clean_tickets, loaded_seats) -> str:
    return stack[0]


def readable(base: str, ticket_id: str) -> bool:
    return API.get(f"{base}/query/api/v1/tickets/{ticket_id}", timeout=5).status_code == 200


def test_seed_example_end_to_end(base):
    before_count = API.get(f"{base}/query/api/v1/tickets/count/Event1").json()["count"]
    before_revenue = API.get(f"{base}/query/api/v1/tickets/revenue/Venue1/Event1").json()
    started = time.monotonic()
    response = API.post(f"{base}/purchase/api/v1/tickets", json=SEED, timeout=10)
    assert response.status_code == 201, response.text
    ticket = response.json()
    wait_until(lambda: readable(base, ticket["ticketId"]), 10, "the ticket in the query API")
    lag = time.monotonic() - started
    print(f"purchase → readable: {lag * 1000:.0f} ms")
    assert API.get(f"{base}{response.headers['Location']}").json() == ticket
    assert API.get(f"{base}/query/api/v1/tickets/count/Event1").json()["count"] == (
        before_count + 1
    )
    revenue = API.get(f"{base}/query/api/v1/tickets/revenue/Venue1/Event1").json()
    assert revenue["ticketCount"] == before_revenue["ticketCount"] + 1
    assert float(revenue["revenue"]) == float(before_revenue["revenue"]) + 100.0
    listed = API.get(f"{base}/query/api/v1/tickets").json()
    assert ticket in listed


def test_a_seed_sale_is_a_paid_order_the_buyer_lists_and_an_operator_refunds(base):
    """The one-seat sale reaches MySQL as an order of one seat, PAID: its ticket row names the
    order, the buyer lists it in /me/orders, count and revenue count it once; an operator's
    refund (the box office's script) makes the order and its ticket REFUNDED, takes it out of
    the totals, and the seat sells again."""
    buyer = requests.Session()
    buyer.headers.update(bearer(f"seed-buyer-{uuid.uuid4().hex[:8]}"))
    seat = {**SEED, "zoneId": 9, "row": "C", "column": "4"}

    def totals() -> tuple[int, float]:
        count = API.get(f"{base}/query/api/v1/tickets/count/Event1").json()["count"]
        revenue = API.get(f"{base}/query/api/v1/tickets/revenue/Venue1/Event1").json()
        assert revenue["ticketCount"] == count
        return count, float(revenue["revenue"])

    count, revenue = totals()
    response = buyer.post(f"{base}/purchase/api/v1/tickets", json=seat, timeout=10)
    assert response.status_code == 201, response.text
    ticket = response.json()
    assert set(ticket) == {*SEED, "ticketId", "price", "status", "createdOn"}
    wait_until(lambda: readable(base, ticket["ticketId"]), 20, "the ticket in the query API")
    assert API.get(f"{base}{response.headers['Location']}").json() == ticket
    [order] = buyer.get(f"{base}/query/api/v1/me/orders").json()
    assert (order["status"], order["version"], order["total"]) == ("PAID", 1, ticket["price"])
    assert order["createdOn"] == ticket["createdOn"]
    assert order["seats"] == [
        {k: ticket[k] for k in ("ticketId", "zoneId", "row", "column", "price")}
    ]
    assert API.get(f"{base}/query/api/v1/orders/{order['orderId']}").json() == order
    price = float(ticket["price"])
    assert totals() == (count + 1, revenue + price)  # once, not once per event kind

    refunded = seats.orders_for(seats.client()).refund("Event1", order["orderId"], payment_id=None)
    assert (refunded.outcome, refunded.order.status) == ("OK", "REFUNDED")

    def refunded_in_mysql() -> bool:
        url = f"{base}/query/api/v1/tickets/{ticket['ticketId']}"
        return API.get(url).json()["status"] == "REFUNDED"

    wait_until(refunded_in_mysql, 20, "the refund in the query API")
    [order] = buyer.get(f"{base}/query/api/v1/me/orders").json()
    assert (order["status"], order["version"]) == ("REFUNDED", 2)
    assert totals() == (count, revenue)
    again = buyer.post(f"{base}/purchase/api/v1/tickets", json=seat, timeout=10)
    assert again.status_code == 201, again.text


def test_health_endpoints(base):
    for service in ("purchase", "query", "events"):
        assert API.get(f"{base}/{service}/health").json() == {"status": "UP"}
    assert API.get(f"{base}/purchase/health/deep").json() == {
        "status": "UP",
        "checks": {"redis": "UP"},
    }
    assert API.get(f"{base}/query/health/deep").status_code == 200
    events = wait_until(
        lambda: API.get(f"{base}/events/health/deep").json().get("workers"),
        10,
        "a worker heartbeat",
    )
    assert events >= 1


def test_400_buyers_on_20_seats(base):
    """Exactly one winner per seat; every loser hears SEAT_TAKEN; exactly 20 rows in the end."""
    seats = [{**SEED, "zoneId": 7, "row": "B", "column": str(c)} for c in range(1, 21)]
    attempts = [seats[n % 20] for n in range(400)]
    session = operator_session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))

    def attempt(body: dict) -> tuple[int, str, str]:
        r = session.post(f"{base}/purchase/api/v1/tickets", json=body, timeout=30)
        data = r.json()
        return r.status_code, data.get("code", ""), body["column"]

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(attempt, attempts))
    statuses = Counter((status, code) for status, code, _ in results)
    assert statuses == {(201, ""): 20, (409, "SEAT_TAKEN"): 380}
    winners = Counter(column for status, _, column in results if status == 201)
    assert set(winners.values()) == {1} and len(winners) == 20

    def persisted() -> list:
        page = API.get(f"{base}/query/api/v1/tickets?eventId=Event1&zoneId=7").json()
        return page if len(page) >= 20 else []

    page = wait_until(persisted, 60, "20 rows")
    time.sleep(2)  # a straggling duplicate would show up now
    page = API.get(f"{base}/query/api/v1/tickets?eventId=Event1&zoneId=7").json()
    assert sorted(int(t["column"]) for t in page) == list(range(1, 21))


def test_request_id_joins_request_ticket_task_and_row(base, stack):
    """One grep: the caller's X-Request-ID is echoed, logged by the worker with the ticket (in
    the line of the sale's order, whose task id is the order's id and version)."""
    import json as jsonlib

    worker = stack[1]
    request_id = f"req-{uuid.uuid4().hex}"
    response = API.post(
        f"{base}/purchase/api/v1/tickets",
        json={**SEED, "column": "9"},
        headers={"X-Request-ID": request_id},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.headers["X-Request-ID"] == request_id
    ticket_id = response.json()["ticketId"]
    line = wait_until(
        lambda: next(
            (ln for ln in worker.log().splitlines() if request_id in ln and ticket_id in ln), None
        ),
        20,
        "the worker's log line",
    )
    entry = jsonlib.loads(line)
    assert (entry["requestId"], entry["ticketIds"], entry["taskId"], entry["outcome"]) == (
        request_id,
        [ticket_id],
        f"{entry['orderId']}:1",
        "INSERTED",
    )
    generated = API.get(f"{base}/query/health").headers["X-Request-ID"]
    assert len(generated) == 32
    bad = API.get(f"{base}/query/health", headers={"X-Request-ID": "x" * 500})
    assert bad.headers["X-Request-ID"] != "x" * 500


def test_metrics_add_up_across_gunicorn_workers_and_the_worker(base, stack):
    """Prometheus text from the 2 gunicorn processes together, and from the Celery worker."""
    worker = stack[1]

    def value(text: str, sample: str) -> float:
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    before = API.get(f"{base}/purchase/metrics").text
    session = operator_session()
    for column in range(21, 31):
        body = {**SEED, "zoneId": 8, "column": str(column)}
        assert session.post(f"{base}/purchase/api/v1/tickets", json=body).status_code == 201
        assert session.post(f"{base}/purchase/api/v1/tickets", json=body).status_code == 409
    after = API.get(f"{base}/purchase/metrics").text
    sold = 'ticketing_purchases_total{code="SOLD"}'
    taken = 'ticketing_purchases_total{code="SEAT_TAKEN"}'
    assert value(after, sold) - value(before, sold) == 10
    assert value(after, taken) - value(before, taken) == 10
    worker_text = wait_until(
        lambda: (
            lambda t: (
                t if value(t, 'ticketing_orders_applied_total{outcome="INSERTED"}') >= 10 else None
            )
        )(API.get(f"http://127.0.0.1:{worker.metrics_port}/metrics").text),
        30,
        "the worker's metrics",
    )
    assert value(worker_text, "ticketing_projection_lag_seconds_count") >= 10
    assert "ticketing_persist_seconds_bucket" in worker_text


def test_concurrent_purchases_are_relayed_in_shared_batches_and_all_persist(base, stack):
    """64 buyers of distinct seats at once: every one is a 201, the relay sends their events in
    shared PublishBatch calls (fewer calls than messages), and the worker persists each exactly
    once — the relay's messages are what it expects."""
    relay = stack[2]

    def value(samples: dict[str, float], name: str) -> float:
        return samples.get(name, 0.0)

    seats = [{**SEED, "zoneId": 6, "row": r, "column": str(c)} for r in "CD" for c in range(1, 33)]
    before = relay.metrics()
    session = operator_session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))
    with ThreadPoolExecutor(32) as pool:
        responses = list(
            pool.map(
                lambda body: session.post(f"{base}/purchase/api/v1/tickets", json=body, timeout=30),
                seats,
            )
        )
    assert [r.status_code for r in responses] == [201] * 64

    def relayed() -> dict[str, float] | None:
        now = relay.metrics()
        sent = value(now, "ticketing_relay_batch_size_sum") - value(
            before, "ticketing_relay_batch_size_sum"
        )
        return now if sent >= 64 else None

    after = wait_until(relayed, 30, "the relay to send 64 messages")
    calls = value(after, "ticketing_relay_batch_size_count") - value(
        before, "ticketing_relay_batch_size_count"
    )
    assert calls < 64, "no two purchases shared a PublishBatch"
    print(f"64 messages in {calls:.0f} PublishBatch calls")
    ids = {r.json()["ticketId"] for r in responses}

    def persisted() -> set[str]:
        page = API.get(f"{base}/query/api/v1/tickets?eventId=Event1&zoneId=6&limit=100")
        got = {t["ticketId"] for t in page.json()}
        return got if len(got) >= 64 else set()

    assert wait_until(persisted, 60, "64 rows") == ids

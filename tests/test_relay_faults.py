"""The relay under faults, against gunicorn, real Redis, moto behind a proxy, the real worker
and MariaDB: a relay killed between SNS's acceptance and its delete, SNS unreachable for a
minute, an answer lost on the way back. Sales are real purchases through the API (the purchase
script writes the outbox). The promise each time: every 201 ends as exactly one row."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.outbox import persisted, stream_lengths, wait_persisted
from tests.support.processes import Relay, gunicorn, wait_until
from tests.support.proxy import HttpProxy
from tests.support.tokens import operator_session

API = operator_session()  # every request with an operator's token


@pytest.fixture(scope="module")
def shop(database) -> Iterator[str]:
    """The APIs in gunicorn on the test Redis; their sales go to the outbox."""
    with gunicorn({}) as base:
        yield base


@pytest.fixture
def sales(shop, clean_tickets, loaded_seats, pipeline_worker, own_outbox) -> str:
    """A fresh seat state, no tickets, the session worker, and no relay but the test's."""
    return shop


def buy(base: str, event_id: str, seats: list[tuple[str, int]]) -> list[str]:
    """Buy the seats of zone 1 (one request each); the ticket ids of the 201s."""
    venue = {"Event1": "Venue1", "Event2": "Venue1"}[event_id]
    sold = []
    for row, column in seats:
        body = {"venueId": venue, "eventId": event_id, "zoneId": 1, "row": row}
        answer = API.post(
            f"{base}/purchase/api/v1/tickets", json={**body, "column": str(column)}, timeout=30
        )
        assert answer.status_code == 201, answer.text
        sold.append(answer.json()["ticketId"])
    return sold


def through(proxy: HttpProxy, **extra: str) -> dict[str, str]:
    """A relay whose SNS calls go through `proxy`."""
    return {"AWS_ENDPOINT_URL_SNS": proxy.url, **extra}


def duplicates(worker) -> int:
    """Second deliveries of sales: each sale's event is its PAID order at version 1, and a
    version already applied is STALE, a no-op."""
    return worker.count("PAID: STALE")


def rows(ticket_ids: list[str]) -> list[dict]:
    return [{"ticketId": t} for t in ticket_ids]


def test_relay_killed_after_publish_before_delete_is_republished_by_the_next(
    sales, redis_client, pipeline_worker, sns_proxy
):
    """SNS took the batch, the relay died before its XACK/XDEL: the entries stay, the next
    relay claims them once idle and publishes them again; the worker sees them STALE (their
    orders are applied) and each ticket has one row."""
    sns_proxy.set_mode("hold_answer")
    # a wide batching window: the five sales travel in one PublishBatch
    env = through(sns_proxy, RELAY_CLAIM_IDLE_MS="1000", RELAY_BATCH_WINDOW_MS="3000")
    dying = Relay.spawn(env)
    try:
        dying.wait_ready()
        sold = buy(sales, "Event1", [("A", c) for c in range(1, 6)])
        wait_until(lambda: sns_proxy.batches() == [5], 30, "the batch at SNS")
        dying.kill()
    finally:
        dying.kill()
    sns_proxy.set_mode("forward")
    sns_proxy.release()
    before = duplicates(pipeline_worker)
    wait_persisted(rows(sold))  # SNS had them: the worker wrote them
    assert stream_lengths(redis_client) == 5  # … but the relay never deleted them
    with Relay.start(through(sns_proxy, RELAY_CLAIM_IDLE_MS="1000")) as next_relay:
        wait_until(lambda: stream_lengths(redis_client) == 0, 60, "the outbox emptied")
        assert next_relay.count("claimed 5 outbox entries") == 1
    wait_until(lambda: duplicates(pipeline_worker) - before == 5, 60, "5 STALE")
    assert sns_proxy.batches() == [5, 5]
    assert persisted(sold) == 5


def test_sns_unreachable_for_a_minute_then_the_outbox_drains_exactly_once(
    app, sales, redis_client, pipeline_worker, sns_proxy
):
    """While SNS cannot be reached, sales go on and the outbox grows (nothing is deleted,
    nothing lost), the health page shows its depth and age; once SNS is back it drains, one
    row per 201."""
    sns_proxy.set_mode("down")
    before = duplicates(pipeline_worker)
    sold: list[str] = []
    with Relay.start(through(sns_proxy)) as relay:
        outage_ends = time.monotonic() + 60
        for row in "ABCDE":  # a few sales every second or so during the outage
            for event in ("Event1", "Event2"):
                sold += buy(sales, event, [(row, c) for c in range(1, 4)])
            time.sleep(1)
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        assert stream_lengths(redis_client) == len(sold)
        assert persisted(sold) == 0
        health = app.test_client().get("/events/health/deep").get_json()
        assert health["outboxDepth"] == len(sold)
        assert health["outboxOldestAgeSeconds"] >= 55
        assert relay.metrics()["ticketing_outbox_depth"] == len(sold)
        assert relay.count("failed (") >= 10
        sns_proxy.set_mode("forward")
        wait_persisted(rows(sold), 120)
        wait_until(lambda: stream_lengths(redis_client) == 0, 60, "the outbox emptied")
    assert sum(sns_proxy.batches()) == len(sold)  # each entry reached SNS once
    assert duplicates(pipeline_worker) == before


def test_an_uncertain_publish_is_republished_harmlessly(
    sales, redis_client, pipeline_worker, sns_proxy
):
    """SNS published the batch but its answer was lost: the relay cannot know, sends it again,
    and the second delivery is STALE (a no-op); one row per 201."""
    sns_proxy.set_mode("drop_one_answer")
    before = duplicates(pipeline_worker)
    with Relay.start(through(sns_proxy, RELAY_BATCH_WINDOW_MS="3000")) as relay:
        sold = buy(sales, "Event2", [("B", c) for c in range(1, 4)])
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
        assert relay.count("PublishBatch of 3 failed") == 1  # it heard nothing the first time
    wait_persisted(rows(sold))
    wait_until(lambda: duplicates(pipeline_worker) - before == 3, 60, "3 STALE")
    assert sns_proxy.batches() == [3, 3]
    assert persisted(sold) == 3

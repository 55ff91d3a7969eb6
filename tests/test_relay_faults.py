"""The relay under faults, against real Redis, moto behind a proxy, the real worker and MariaDB:
a relay killed between SNS's acceptance and its delete, SNS unreachable for a minute, an answer
lost on the way back. The promise each time: every entry ends as exactly one row."""

from __future__ import annotations

import time

from models.seats import keys
from tests.support.outbox import (
    EVENTS,
    add_ticket,
    add_tickets,
    persisted,
    stream_lengths,
    tickets_for,
    wait_persisted,
)
from tests.support.processes import Relay, wait_until
from tests.support.proxy import HttpProxy


def through(proxy: HttpProxy, **extra: str) -> dict[str, str]:
    """A relay whose SNS calls go through `proxy`."""
    return {"AWS_ENDPOINT_URL_SNS": proxy.url, **extra}


def duplicates(worker) -> int:
    return worker.count("persisted: DUPLICATE")


def test_relay_killed_after_publish_before_delete_is_republished_by_the_next(
    redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    """SNS took the batch, the relay died before its XACK/XDEL: the entries stay, the next
    relay claims them once idle and publishes them again; the worker sees DUPLICATE and each
    ticket has one row."""
    tickets = tickets_for(5, "Event5")
    sns_proxy.set_mode("hold_answer")
    dying = Relay.spawn(through(sns_proxy, RELAY_CLAIM_IDLE_MS="1000"))
    try:
        dying.wait_ready()
        add_tickets(redis_client, tickets, keys.bucket("Event5"))
        wait_until(lambda: sns_proxy.batches() == [5], 30, "the batch at SNS")
        dying.kill()
    finally:
        dying.kill()
    sns_proxy.set_mode("forward")
    sns_proxy.release()
    before = duplicates(pipeline_worker)
    wait_persisted(tickets)  # SNS had them: the worker wrote them
    assert stream_lengths(redis_client) == 5  # … but the relay never deleted them
    with Relay.start(through(sns_proxy, RELAY_CLAIM_IDLE_MS="1000")) as next_relay:
        wait_until(lambda: stream_lengths(redis_client) == 0, 60, "the outbox emptied")
        assert next_relay.count("claimed 5 outbox entries") == 1
    wait_until(lambda: duplicates(pipeline_worker) - before == 5, 60, "5 DUPLICATE")
    assert sns_proxy.batches() == [5, 5]
    assert persisted([t["ticketId"] for t in tickets]) == 5


def test_sns_unreachable_for_a_minute_then_the_outbox_drains_exactly_once(
    app, redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    """While SNS cannot be reached the outbox grows (nothing is deleted, nothing lost), the
    health page shows its depth and age; once SNS is back it drains, one row per entry."""
    tickets = [t for event in EVENTS for t in tickets_for(6, event)]
    sns_proxy.set_mode("down")
    before = duplicates(pipeline_worker)
    with Relay.start(through(sns_proxy)) as relay:
        outage_ends = time.monotonic() + 60
        for number, ticket in enumerate(tickets):  # sales go on during the outage
            add_ticket(redis_client, ticket)
            if number % 6 == 5:
                time.sleep(1)
        time.sleep(max(0.0, outage_ends - time.monotonic()))
        assert stream_lengths(redis_client) == len(tickets)
        assert persisted([t["ticketId"] for t in tickets]) == 0
        health = app.test_client().get("/events/health/deep").get_json()
        assert health["outboxDepth"] == len(tickets)
        assert health["outboxOldestAgeSeconds"] >= 55
        assert relay.metrics()["ticketing_outbox_depth"] == len(tickets)
        assert relay.count("failed (") >= 10
        sns_proxy.set_mode("forward")
        wait_persisted(tickets, 120)
        wait_until(lambda: stream_lengths(redis_client) == 0, 60, "the outbox emptied")
    assert sum(sns_proxy.batches()) == len(tickets)  # each entry reached SNS once
    assert duplicates(pipeline_worker) == before


def test_an_uncertain_publish_is_republished_harmlessly(
    redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    """SNS published the batch but its answer was lost: the relay cannot know, sends it again,
    and the second delivery is a DUPLICATE; one row per ticket."""
    tickets = tickets_for(3, "Event6")
    sns_proxy.set_mode("drop_answer")
    before = duplicates(pipeline_worker)
    with Relay.start(through(sns_proxy)) as relay:
        add_tickets(redis_client, tickets, keys.bucket("Event6"))
        wait_until(lambda: sns_proxy.batches() == [3], 30, "the batch at SNS")
        wait_until(lambda: relay.count("PublishBatch of 3 failed") == 1, 30, "the lost answer")
        sns_proxy.set_mode("forward")
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
    wait_persisted(tickets)
    wait_until(lambda: duplicates(pipeline_worker) - before == 3, 60, "3 DUPLICATE")
    assert sns_proxy.batches() == [3, 3]
    assert persisted([t["ticketId"] for t in tickets]) == 3

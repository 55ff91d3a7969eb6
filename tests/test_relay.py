"""The relay against real Redis, moto's SNS, the real worker and MariaDB: outbox entries become
the stock Celery messages, in full PublishBatch calls, deleted only once SNS took them; refused
entries are parked, a dead relay's entries claimed, and several relays share the work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from models.seats import keys
from plumbing import settings
from tests.support.aws import receive_all, tap_queue
from tests.support.outbox import (
    EVENTS,
    add_ticket,
    add_tickets,
    entry_fields,
    parked,
    persisted,
    stream_lengths,
    tickets_for,
    wait_persisted,
)
from tests.support.processes import Relay, wait_until
from tests.support.proxy import HttpProxy
from tests.test_redis_cluster import LocalCluster


def relay_env(proxy: HttpProxy, **extra: str) -> dict[str, str]:
    """A relay whose SNS calls go through `proxy` (its other AWS calls, if any, go to moto)."""
    return {"AWS_ENDPOINT_URL_SNS": proxy.url, **extra}


def test_outbox_entries_reach_mysql_through_the_real_worker(
    redis_client, clean_tickets, pipeline_worker, pipeline_relay
):
    tickets = [t for event in EVENTS for t in tickets_for(3, event)]
    for t in tickets:
        add_ticket(redis_client, t, request_id="rid-1")
    wait_persisted(tickets)
    wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
    assert parked(redis_client) == []


def collect(queue_url: str, count: int) -> list[str]:
    """At least `count` bodies from the queue, then whatever else arrives within a second."""
    bodies: list[str] = []

    def enough() -> bool:
        bodies.extend(receive_all(queue_url))
        return len(bodies) >= count

    wait_until(enough, 10, f"{count} messages on the tap queue")
    time.sleep(1)  # a message too many would show up now
    return bodies + receive_all(queue_url)


def stock_publish(ticket: dict, request_id: str) -> None:
    """The same task sent by a stock Celery app through kombu's own SQS transport and SNS fanout
    (one sns:Publish), the way a producer without the relay would send it."""
    from celery import Celery
    from kombu import Exchange

    import celeryconfig
    from celeryconfig import QueueNames, TaskNames

    app = Celery(f"stock-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update({**celeryconfig.publisher_overrides(), "broker_url": "sqs://"})
    topic = Exchange(settings.get().topic_name, type="fanout")
    kwargs = {"ticket": ticket}
    app.send_task(
        TaskNames.PERSIST_TICKET,
        kwargs=kwargs,
        kwargsrepr=repr(kwargs),
        exchange=topic,
        routing_key=QueueNames.TICKETS,
        declare=[topic],
        task_id=ticket["ticketId"],
        headers={"request_id": request_id},
    )


def test_relay_message_is_exactly_the_stock_kombu_message(
    redis_client, pipeline_relay, session_settings
):
    """The same ticket relayed from the outbox and published by a stock Celery app through
    kombu's own Publish arrives as the same SQS body, but for kombu's random delivery tag, the
    sending app's reply-to id and the sending process's name."""
    tap = tap_queue(session_settings.topic_arn)
    same = tickets_for(1)[0]
    add_ticket(redis_client, same, request_id="rid-stock")
    stock_publish(same, "rid-stock")
    relayed, stock = (json.loads(b) for b in collect(tap, 2))
    for envelope in (relayed, stock):
        envelope["properties"].pop("delivery_tag")
        envelope["properties"].pop("reply_to")
        assert envelope["headers"].pop("origin").startswith("gen")
    assert relayed == stock
    assert relayed["headers"]["id"] == same["ticketId"]
    assert relayed["headers"]["request_id"] == "rid-stock"


def test_entries_go_out_in_full_batches(
    redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    """25 entries waiting → PublishBatch calls of 10, 10 and 5; the relay's metrics say so."""
    tickets = tickets_for(25)
    env = relay_env(sns_proxy, RELAY_BATCH_WINDOW_MS="200", METRICS_EMF_SECONDS="0.5")
    with Relay.start(env) as relay:
        add_tickets(redis_client, tickets, keys.bucket("Event1"))
        wait_persisted(tickets)
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
        assert sorted(sns_proxy.batches(), reverse=True) == [10, 10, 5]  # concurrent calls
        samples = relay.metrics()
        assert samples["ticketing_relay_batch_size_count"] == 3
        assert samples["ticketing_relay_batch_size_sum"] == 25
        assert samples["ticketing_relay_publish_seconds_count"] == 3
        wait_until(lambda: "ticketing_relay_batch_size_count" in relay.log(), 10, "EMF line")
    emf = [json.loads(line) for line in relay.log().splitlines() if '"_aws"' in line]
    assert sum(line.get("ticketing_relay_batch_size_count", 0) for line in emf) == 3
    assert {line["Service"] for line in emf} == {"relay"}


def test_an_entry_is_deleted_only_after_sns_took_it(
    redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    tickets = tickets_for(4)
    sns_proxy.set_mode("down")
    with Relay.start(relay_env(sns_proxy)) as relay:
        add_tickets(redis_client, tickets, keys.bucket("Event1"))
        wait_until(lambda: relay.count("PublishBatch of 4 failed") >= 2, 30, "failed calls")
        stream = keys.outbox_stream(keys.bucket("Event1"))
        assert redis_client.xlen(stream) == 4
        assert redis_client.xpending(stream, keys.RELAY_GROUP)["pending"] == 4
        sns_proxy.set_mode("forward")
        wait_persisted(tickets)
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
        assert redis_client.xpending(stream, keys.RELAY_GROUP)["pending"] == 0


def test_a_refused_entry_is_retried_then_parked_alone(
    redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    """SNS refuses a message over 256 KiB; the entry is tried again, then parked in its
    bucket's parked stream with the reason, while the entries written with it arrive."""
    good = tickets_for(4)
    too_big = tickets_for(1, venueId="V" * 300_000)[0]
    too_big["column"] = "40"
    env = relay_env(sns_proxy, RELAY_MAX_ATTEMPTS="5")
    with Relay.start(env) as relay:
        entry_ids = add_tickets(
            redis_client, [*good[:2], too_big, *good[2:]], keys.bucket("Event1")
        )
        wait_persisted(good)
        wait_until(lambda: parked(redis_client), 30, "a parked entry")
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
        [(_parked_id, fields)] = parked(redis_client)
        assert fields["sourceId"] == entry_ids[2]
        assert json.loads(fields["ticket"])["ticketId"] == too_big["ticketId"]
        assert {k: fields[k] for k in ("kind", "ticket", "rid")} == entry_fields(too_big)
        assert "InvalidParameter" in fields["reason"]
        assert fields["attempts"] == "2"  # a sender fault: tried once more, then parked
        # the oversized message went to SNS twice, in a call of its own each time
        assert sorted(sns_proxy.batches(), reverse=True) == [4, 1, 1]  # concurrent calls
        assert relay.metrics()['ticketing_relay_parked_total{reason="InvalidParameter"}'] == 1
        assert relay.count("parked as") == 1
    assert persisted([too_big["ticketId"]]) == 0


def test_an_entry_that_cannot_become_a_message_is_parked_at_once(
    redis_client, clean_tickets, pipeline_worker, pipeline_relay
):
    """An unknown kind or an unreadable ticket never reaches SNS: parked on first sight, with
    the reason, while a good entry beside it arrives."""
    good = tickets_for(1, "Event7")
    stream = keys.outbox_stream(keys.bucket("Event7"))
    redis_client.xadd(stream, {"kind": "refund", "ticket": "{}", "rid": ""})
    redis_client.xadd(stream, {"kind": "ticket", "ticket": "{not json", "rid": "r-9"})
    add_ticket(redis_client, good[0])
    wait_persisted(good)
    wait_until(lambda: len(parked(redis_client)) == 2, 30, "two parked entries")
    reasons = sorted(fields["reason"] for _, fields in parked(redis_client))
    assert reasons[0].startswith("unknown kind 'refund'"), reasons
    assert reasons[1].startswith("unreadable ticket"), reasons
    assert {fields["attempts"] for _, fields in parked(redis_client)} == {"0"}
    wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")


def test_a_dead_relays_pending_entries_are_claimed(
    redis_client, clean_tickets, pipeline_worker, own_outbox
):
    """Entries a relay read and never acknowledged (it died) are claimed by another once idle
    for RELAY_CLAIM_IDLE_MS."""
    from models.seats import outbox

    tickets = tickets_for(6, "Event3")
    outbox.ensure_groups(redis_client)
    stream = keys.outbox_stream(keys.bucket("Event3"))
    add_tickets(redis_client, tickets, keys.bucket("Event3"))
    taken = redis_client.xreadgroup(keys.RELAY_GROUP, "dead-relay", {stream: ">"}, count=10)
    assert len(taken[0][1]) == 6
    with Relay.start({"RELAY_CLAIM_IDLE_MS": "1000"}) as relay:
        wait_persisted(tickets)
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
        assert relay.count("claimed 6 outbox entries") == 1
    assert redis_client.xpending(stream, keys.RELAY_GROUP)["pending"] == 0


def test_two_relays_share_the_work_without_loss_or_double_sends(
    redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    """Two relays on the same outbox: every entry reaches MySQL, each relay sends some, and
    SNS gets each entry once. The entries arrive a few at a time, as sales do (one relay's
    read takes up to a batch per sender of every stream)."""
    tickets = [t for event in EVENTS for t in tickets_for(40, event)]
    with Relay.start(relay_env(sns_proxy)) as first, Relay.start(relay_env(sns_proxy)) as second:
        for n, t in enumerate(tickets):
            add_ticket(redis_client, t)
            if n % 5 == 4:
                time.sleep(0.02)
        wait_persisted(tickets, 120)
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
        sent = [r.metrics()["ticketing_relay_batch_size_sum"] for r in (first, second)]
    assert all(sent), sent
    assert sum(sns_proxy.batches()) == len(tickets)


def idle_ms(r) -> list[int]:
    """How long each pending outbox entry has been idle with its relay, in milliseconds."""
    return [
        row["time_since_delivered"]
        for stream in keys.outbox_streams()
        for row in r.xpending_range(stream, keys.RELAY_GROUP, "-", "+", 100)
    ]


def test_a_live_relays_entries_are_not_claimed_while_sns_is_down(
    redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    """SNS unreachable for several RELAY_CLAIM_IDLE_MS: each relay keeps renewing the entries
    it holds (their idle time never nears the threshold), so the other never claims them, and
    once SNS is back each entry is sent once."""
    tickets = [t for event in EVENTS for t in tickets_for(4, event)]
    sns_proxy.set_mode("down")
    env = relay_env(sns_proxy, RELAY_CLAIM_IDLE_MS="2000")
    with Relay.start(env) as first, Relay.start(env) as second:
        for t in tickets:
            add_ticket(redis_client, t)
        # the entries' holders try for over five times RELAY_CLAIM_IDLE_MS (backoff 0.1 s
        # doubling, at most 5 s), while each relay looks for stale entries every third of it;
        # all along, no held entry gets near the claim threshold
        idle = []

        def outage_long_enough() -> bool:
            idle.extend(idle_ms(redis_client))
            return sum(r.count("failed (") for r in (first, second)) >= 7

        wait_until(outage_long_enough, 60, "failed calls")
        assert 0 < max(idle) < 2000, max(idle)
        sns_proxy.set_mode("forward")
        wait_persisted(tickets, 120)
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
        assert first.count("claimed") == second.count("claimed") == 0, first.log() + second.log()
    assert sum(sns_proxy.batches()) == len(tickets)


def test_heartbeats_and_outbox_in_deep_health(app, redis_client, pipeline_relay, own_outbox):
    """With the relays stopped, entries wait: /events/health/deep shows their number and the
    age of the oldest; a running relay shows up among the relays."""
    from plumbing.heartbeats import alive_relays, monitor_redis

    add_tickets(redis_client, tickets_for(3, "Event5"), keys.bucket("Event5"))
    add_tickets(redis_client, tickets_for(2, "Event6"), keys.bucket("Event6"))
    body = app.test_client().get("/events/health/deep").get_json()
    assert body["outboxDepth"] == 5
    assert body["outboxOldestAgeSeconds"] >= 0
    assert body["relays"] == len(alive_relays(monitor_redis(), settings.get().relay_alive_seconds))
    with Relay.start({"RELAY_HEARTBEAT_SECONDS": "0.2"}) as relay:
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
        name = f"{relay_hostname()}-{relay.proc.pid}"
        body = app.test_client().get("/events/health/deep").get_json()
        assert name in body["relayHeartbeats"]
        assert body["outboxDepth"] == 0
        assert body["outboxOldestAgeSeconds"] is None
    body = app.test_client().get("/events/health/deep").get_json()
    assert name not in body["relayHeartbeats"]  # a relay stopped cleanly is no longer listed


def relay_hostname() -> str:
    import socket

    return socket.gethostname()


def test_sigterm_finishes_the_batch_in_flight_then_exits_0(
    redis_client, clean_tickets, pipeline_worker, own_outbox, sns_proxy
):
    tickets = tickets_for(3, "Event7")
    sns_proxy.set_mode("hold_answer")
    relay = Relay.spawn(relay_env(sns_proxy))
    try:
        relay.wait_ready()
        add_tickets(redis_client, tickets, keys.bucket("Event7"))
        wait_until(lambda: sns_proxy.batches() == [3], 30, "the batch at SNS")
        os.killpg(relay.proc.pid, signal.SIGTERM)
        wait_until(lambda: "stopping after the batch in flight" in relay.log(), 10, "SIGTERM")
        assert relay.proc.poll() is None  # still waiting for SNS's answer
        sns_proxy.release()
        assert relay.proc.wait(30) == 0
    finally:
        relay.kill()
    assert stream_lengths(redis_client) == 0  # SNS took them, so they were deleted
    wait_persisted(tickets)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[LocalCluster]:
    """A local 3-master Redis Cluster, as tests/test_redis_cluster.py starts it."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli not installed")
    with LocalCluster.running() as local:
        yield local


def test_relay_on_redis_cluster(redis_cluster, clean_tickets, pipeline_worker):
    """On a cluster every read, delete and park names one slot: entries of buckets on several
    masters arrive, an oversized one is parked in its bucket's parked stream, and no master
    ever answered CROSSSLOT."""
    from models import seats

    r = seats.connect(redis_cluster.url, cluster=True)
    tickets = [t for event in EVENTS for t in tickets_for(5, event)]
    too_big = tickets_for(1, "Event3", venueId="V" * 300_000, column="35")[0]
    homes = {redis_cluster.owner(keys.outbox_stream(keys.bucket(e))) for e in EVENTS}
    assert len(homes) >= 2  # the streams used live on more than one master
    env = {
        "REDIS_URL": redis_cluster.url,
        "REDIS_CLUSTER": "true",
        "MONITOR_BROKER_URL": settings.get().monitor_url(),
    }
    with Relay.start(env):
        for t in [*tickets, too_big]:
            add_ticket(r, t)
        wait_persisted(tickets)
        wait_until(lambda: parked(r), 60, "the oversized entry parked")
        wait_until(lambda: stream_lengths(r) == 0, 30, "the outbox emptied")
    [(_, fields)] = parked(r)
    assert json.loads(fields["ticket"])["ticketId"] == too_big["ticketId"]
    refusals = [stats for stats in redis_cluster.errorstats().values() if stats]
    assert not any("errorstat_CROSSSLOT" in stats for stats in refusals), refusals

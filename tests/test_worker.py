"""The projection task in a real Celery worker on moto SQS: success, duplicate delivery,
retry of transient database errors (the database cut off by a proxy), and the DLQ."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
import pytest
from aws_resources import create_messaging
from sqlalchemy import func, select

import models
from models.tables import Ticket
from plumbing import settings
from tests.support.aws import direct_sender, queue_counts, receive_all, tap_queue
from tests.support.factories import ticket_message
from tests.support.processes import Worker, procfile_command, wait_until
from tests.support.proxy import TcpProxy

MAX_RECEIVE = 3


@pytest.fixture(scope="module")
def messaging():
    """A topic and queue of this module's own: 2 s visibility, DLQ after 3 receives."""
    return create_messaging(
        f"w{uuid.uuid4().hex[:8]}", visibility_timeout=2, max_receive_count=MAX_RECEIVE
    )


@pytest.fixture(scope="module")
def db_proxy() -> Iterator[TcpProxy]:
    """The worker reaches MariaDB through this proxy, so a test can make it unreachable."""
    url = urlsplit(settings.get().database_url.replace("mysql+pymysql", "mysql"))
    proxy = TcpProxy(url.hostname, url.port or 3306)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def worker(messaging, db_proxy, database) -> Iterator[Worker]:
    url = settings.get().database_url
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]
    env = {
        **messaging.env(),
        "DATABASE_URL": url.replace(host, f"127.0.0.1:{db_proxy.port}"),
        "TASK_RETRY_BACKOFF_CAP": "1",
        "TASK_MAX_RETRIES": "30",
        "WORKER_HEARTBEAT_SECONDS": "1",
    }
    with Worker.start(env) as w:
        yield w


@pytest.fixture(scope="module")
def sender(messaging):
    return direct_sender(messaging.queue_url, messaging.topic_arn.rsplit(":", 1)[-1])


def send(sender, ticket: dict) -> None:
    sender.send_task(
        "tasks.tickets.persist_ticket", kwargs={"ticket": ticket}, task_id=ticket["ticketId"]
    )


def rows(ticket_id: str | None = None) -> int:
    query = select(func.count()).select_from(Ticket)
    if ticket_id:
        query = query.where(Ticket.ticket_id == ticket_id)
    with models.reader().connect() as conn:
        return conn.scalar(query)


def test_a_ticket_is_persisted(worker, sender, clean_tickets):
    ticket = ticket_message(row="B", column="2")
    send(sender, ticket)
    wait_until(lambda: rows(ticket["ticketId"]) == 1, 20, "the row")
    wait_until(lambda: f"ticket {ticket['ticketId']} persisted: INSERTED" in worker.log(), 5)


def test_duplicate_deliveries_give_one_row_and_succeed(worker, sender, clean_tickets):
    ticket = ticket_message(row="C", column="3")
    for _ in range(4):
        send(sender, ticket)
    wait_until(
        lambda: worker.count(f"ticket {ticket['ticketId']} persisted") == 4,
        30,
        "four successful runs",
    )
    assert worker.count(f"ticket {ticket['ticketId']} persisted: INSERTED") == 1
    assert worker.count(f"ticket {ticket['ticketId']} persisted: DUPLICATE") == 3
    assert rows() == 1


def test_database_outage_is_retried_until_it_lands(
    worker, sender, db_proxy, messaging, clean_tickets
):
    tap = tap_queue(messaging.topic_arn)  # sees anything that goes through the topic
    ticket = ticket_message(row="D", column="4")
    db_proxy.block()
    try:
        send(sender, ticket)
        wait_until(
            lambda: worker.count(f"ticket {ticket['ticketId']}: transient") >= 2, 30, "two retries"
        )
        assert rows(ticket["ticketId"]) == 0
    finally:
        db_proxy.unblock()
    wait_until(lambda: rows(ticket["ticketId"]) == 1, 30, "the row after the outage")
    time.sleep(1)
    assert rows() == 1
    # retries went straight back to the worker's queue, never through the SNS topic
    assert receive_all(tap) == []


def dead_letters(url: str) -> list[dict]:
    """The DLQ's messages, left visible (read with a zero visibility timeout)."""
    sqs = boto3.client("sqs")
    found = {}
    for _ in range(3):
        for m in sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", []):
            found[m["MessageId"]] = m
    return list(found.values())


def test_poison_message_reaches_the_dlq_after_max_receives(
    worker, sender, messaging, clean_tickets
):
    poison = ticket_message(eventId="NoSuchEvent", row="E", column="5")
    good = ticket_message(row="F", column="6")
    send(sender, poison)
    send(sender, good)
    wait_until(lambda: rows(good["ticketId"]) == 1, 20, "the good ticket past the poison one")
    messages = wait_until(
        lambda: dead_letters(messaging.dead_letter_queue_url), 40, "the poison message in the DLQ"
    )
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"])["headers"]["id"] == poison["ticketId"]
    attempts = worker.count(f"persist_ticket[{poison['ticketId']}] raised expected")
    assert attempts == MAX_RECEIVE
    assert rows() == 1
    assert queue_counts(messaging.queue_url) == (0, 0)


def test_worker_owns_no_wiring(worker, messaging):
    """The worker never subscribed the queue or edited its policy: Terraform owns both."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=messaging.topic_arn)["Subscriptions"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=messaging.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    assert [s["Endpoint"] for s in subscriptions].count(queue_arn) == 1
    policy = json.loads(
        sqs.get_queue_attributes(QueueUrl=messaging.queue_url, AttributeNames=["Policy"])[
            "Attributes"
        ]["Policy"]
    )
    assert [s["Sid"] for s in policy["Statement"]] == ["topic-sends"]


def test_events_health_sees_the_worker(worker, app):
    client = app.test_client()
    body = wait_until(
        lambda: (
            client.get("/events/health/deep").get_json()["workers"] >= 1
            and client.get("/events/health/deep").get_json()
        ),
        10,
        "a live worker",
    )
    assert body["status"] == "UP"
    assert body["lastHeartbeatAgeSeconds"] < 10
    assert {"queueDepth", "inFlight", "deadLetterDepth"} <= body.keys()


def cli(messaging, *args: str) -> str:
    """Run `flask --app web …` against this module's queues; its output."""
    import os
    import subprocess

    from tests.support.processes import BIN, ROOT

    done = subprocess.run(
        [str(BIN / "flask"), "--app", "web", *args],
        cwd=ROOT,
        env={**os.environ, **messaging.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_undecodable_messages_are_dead_lettered_not_lost(worker, sender, messaging, clean_tickets):
    """Garbage, a body that decodes to no JSON, a body that is not base64 at all, and an unknown
    task: each reaches the DLQ after maxReceiveCount receives; the worker survives them and a
    good ticket passes."""
    drain_dlq(messaging)
    sqs = boto3.client("sqs")

    def envelope(body: str, headers: dict) -> str:
        return json.dumps(
            {
                "body": body,
                "content-type": "application/json",
                "content-encoding": "utf-8",
                "headers": headers,
                "properties": {"body_encoding": "base64", "delivery_info": {}},
            }
        )

    garbage = [
        "not json at all",
        envelope("bm90IGpzb24=", {}),  # base64 of "not json": Celery can't decode it
        envelope("abc", {}),  # not base64: kombu's decode raises (tasks/tolerant_decoding.py)
        envelope("e30=", {"task": "no.such.task", "id": "x"}),
    ]
    for body in garbage:
        sqs.send_message(QueueUrl=messaging.queue_url, MessageBody=body)
    good = ticket_message(row="G", column="7")
    send(sender, good)
    wait_until(lambda: rows(good["ticketId"]) == 1, 20, "the good ticket")
    wait_until(
        lambda: len(dead_letters(messaging.dead_letter_queue_url)) >= len(garbage),
        60,
        "every poison message in the DLQ",
    )
    letters = dead_letters(messaging.dead_letter_queue_url)
    assert sorted(m["Body"] for m in letters) == sorted(garbage)
    assert all(int(m["Attributes"]["ApproximateReceiveCount"]) >= MAX_RECEIVE for m in letters)
    assert worker.proc.poll() is None  # still running
    assert "undecodable message rejected for the DLQ" in worker.log()  # tasks/consumer.py
    assert "is not valid base64" in worker.log()  # tasks/tolerant_decoding.py
    assert queue_counts(messaging.queue_url) == (0, 0)
    drain_dlq(messaging)


def drain_dlq(messaging) -> None:
    time.sleep(1)
    receive_all(messaging.dead_letter_queue_url)


def test_fixed_message_is_redriven_into_exactly_one_row(worker, sender, messaging, clean_tickets):
    """A ticket for an event the database did not know yet: DLQ; the operator lists it, loads
    the event, redrives; exactly one insert."""
    from models.catalog import Catalog, upsert
    from tests.conftest import TEST_CATALOG

    drain_dlq(messaging)
    late = ticket_message(eventId="LateEvent", row="H", column="8")
    send(sender, late)
    wait_until(lambda: dead_letters(messaging.dead_letter_queue_url), 40, "the dead letter")
    time.sleep(6)  # let the peek's visibility lapse
    listing = cli(messaging, "dlq", "list")
    assert f"ticket {late['ticketId']} LateEvent/1/H8" in listing
    assert "1 messages" in listing

    document = json.loads(json.dumps(TEST_CATALOG))
    document["events"].append(
        {
            "eventId": "LateEvent",
            "venueId": "Venue1",
            "name": "Late",
            "type": "TEST",
            "date": "2027-03-01T20:00:00Z",
        }
    )
    with models.writer().begin() as conn:
        upsert(conn, Catalog.from_dict(document))
    time.sleep(6)
    assert "redrive (receive-and-resend): 1 messages" in cli(messaging, "dlq", "redrive")
    wait_until(lambda: rows(late["ticketId"]) == 1, 30, "the redriven ticket")
    time.sleep(3)
    assert rows() == 1
    assert dead_letters(messaging.dead_letter_queue_url) == []


def test_task_longer_than_the_visibility_timeout_still_gives_one_row(
    worker, sender, messaging, clean_tickets
):
    """The insert blocks on a row lock for 3 visibility timeouts: SQS redelivers the message to
    another thread of the pool meanwhile (its own batch); both runs finish, one row."""
    from sqlalchemy import text

    from models.tickets import TicketRecord, persist_ticket

    ticket = ticket_message(row="J", column="9")
    with models.writer().connect() as blocker:
        blocker.execute(text("SET SESSION innodb_lock_wait_timeout = 30"))
        blocker.commit()
        tx = blocker.begin()
        # the same ticket, inserted and not committed: the worker's insert waits on its lock
        persist_ticket(blocker, TicketRecord.from_json(ticket))
        send(sender, ticket)
        wait_until(
            lambda: worker.count(f"persist_ticket[{ticket['ticketId']}] received") >= 2,
            20,
            "a redelivery while the first run is blocked",
        )
        tx.rollback()
    wait_until(lambda: rows(ticket["ticketId"]) == 1, 30, "the row")
    wait_until(
        lambda: worker.count(f"ticket {ticket['ticketId']} persisted") >= 2,
        30,
        "both runs to finish",
    )
    assert rows() == 1
    assert worker.count(f"ticket {ticket['ticketId']} persisted: INSERTED") == 1


def test_remote_control_over_redis_answers_and_refuses_mutations(worker):
    """`celery inspect`-style calls reach the worker over Redis; commands that would mutate the
    pool or consumer from the control thread are refused, with an answer."""
    from celery import Celery

    control = Celery(
        "control-client", broker=settings.get().monitor_broker_url, set_as_current=False
    ).control
    destination = [worker.hostname]
    pong = wait_until(lambda: control.ping(destination=destination, timeout=3), 20, "a pong")
    assert pong == [{worker.hostname: {"ok": "pong"}}]
    stats = control.inspect(destination=destination, timeout=3).stats()
    argv = procfile_command("worker")
    concurrency = int(argv[argv.index("--concurrency") + 1])
    assert stats[worker.hostname]["pool"]["max-concurrency"] == concurrency
    grown = control.broadcast(
        "pool_grow", arguments={"n": 1}, destination=destination, reply=True, timeout=3
    )
    assert "refused" in grown[0][worker.hostname]["error"]
    stats = control.inspect(destination=destination, timeout=3).stats()
    assert stats[worker.hostname]["pool"]["max-concurrency"] == concurrency


def test_events_health_reports_a_stalled_projection(app, worker, monkeypatch):
    """Messages waiting and nothing persisted for longer than PROJECTION_STALL_SECONDS: 503.
    The backlog sits in a queue of its own, which no worker of the session consumes."""
    import dataclasses

    from plumbing.heartbeats import PROGRESS_KEY, monitor_redis

    idle = create_messaging(f"stall{uuid.uuid4().hex[:8]}")
    watched = dataclasses.replace(
        settings.get(), queue_url=idle.queue_url, dead_letter_queue_url=idle.dead_letter_queue_url
    )
    monkeypatch.setattr(settings, "get", lambda: watched)
    boto3.client("sqs").send_message(QueueUrl=idle.queue_url, MessageBody="waiting")
    client = app.test_client()
    r = monitor_redis()  # the monitoring plane's Redis, where the worker records its progress
    wait_until(lambda: client.get("/events/health/deep").get_json()["queueDepth"], 10, "a backlog")
    r.hset(PROGRESS_KEY, mapping={"at": time.time() - 10_000, "lagSeconds": 0.2})
    stalled = client.get("/events/health/deep")
    assert stalled.status_code == 503
    assert any("queue not draining" in reason for reason in stalled.get_json()["reasons"])
    r.hset(PROGRESS_KEY, mapping={"at": time.time(), "lagSeconds": 0.2})
    body = client.get("/events/health/deep").get_json()
    assert not any("queue not draining" in reason for reason in body.get("reasons", []))
    assert body["projectionLagSeconds"] == 0.2
    assert worker.hostname in body["workerHeartbeatAges"]

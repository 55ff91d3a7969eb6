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
import settings
from models.tables import Ticket
from tests.helpers import (
    TcpProxy,
    Worker,
    direct_sender,
    queue_counts,
    receive_all,
    tap_queue,
    ticket_message,
    wait_until,
)

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
    sqs = boto3.client("sqs")
    found = []
    for _ in range(3):
        found += sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=30,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
    return found


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
            client.get("/events/health").get_json()["workers"] >= 1
            and client.get("/events/health").get_json()
        ),
        10,
        "a live worker",
    )
    assert body["status"] == "UP"
    assert body["lastHeartbeatAgeSeconds"] < 10
    assert {"queueDepth", "inFlight", "deadLetterDepth"} <= body.keys()

"""The batched projection in a real worker (thread pool, group commit) on moto SQS and MariaDB:
messages waiting together share transactions and DeleteMessageBatch calls, and a poison message
among them goes to the DLQ alone while its batch-mates are committed and acknowledged once."""

from __future__ import annotations

import json
import uuid

import pytest
from aws_resources import create_messaging

from tests.support.aws import direct_sender, queue_counts
from tests.support.factories import ticket_message
from tests.support.processes import Worker, wait_until
from tests.test_worker import dead_letters, rows, send

MAX_RECEIVE = 3


@pytest.fixture(scope="module")
def messaging():
    """A topic and queue of this module's own: 2 s visibility, DLQ after 3 receives."""
    return create_messaging(
        f"b{uuid.uuid4().hex[:8]}", visibility_timeout=2, max_receive_count=MAX_RECEIVE
    )


@pytest.fixture(scope="module")
def sender(messaging):
    return direct_sender(messaging.queue_url, messaging.topic_arn.rsplit(":", 1)[-1])


def seat(n: int, **overrides) -> dict:
    row, column = divmod(n, 40)
    seat_fields = {"zoneId": 3, "row": chr(ord("A") + row), "column": str(column + 1)}
    return ticket_message(**{**seat_fields, **overrides})


def test_a_poison_message_does_not_take_its_batch_mates_to_the_dlq(
    messaging, sender, clean_tickets
):
    """9 good tickets and 1 for an unknown event wait in the queue; the worker receives them
    together and writes them in one transaction: the multi-row INSERT is refused (foreign key),
    each ticket is written alone, the 9 are committed and acked once, the poison one is
    rejected on each of its maxReceiveCount receives, then dead-lettered."""
    good = [seat(n) for n in range(9)]
    poison = seat(9, eventId="NoSuchEvent")
    for ticket in [*good[:5], poison, *good[5:]]:
        send(sender, ticket)
    # a long window, so that the 10 tasks of one receive surely meet in one batch
    env = {**messaging.env(), "PERSIST_BATCH_WINDOW_MS": "1000"}
    with Worker.start(env) as worker:
        wait_until(lambda: rows() == 9, 30, "the 9 good rows")
        letters = wait_until(
            lambda: dead_letters(messaging.dead_letter_queue_url), 40, "the poison in the DLQ"
        )
        wait_until(lambda: queue_counts(messaging.queue_url) == (0, 0), 20, "an empty queue")
        assert "batch of 10 tickets: the multi-row insert was refused" in worker.log()
        assert [json.loads(m["Body"])["headers"]["id"] for m in letters] == [poison["ticketId"]]
        assert worker.count(f"persist_ticket[{poison['ticketId']}] raised expected") == MAX_RECEIVE
        for ticket in good:  # received once, persisted once: acked the first time
            assert worker.count(f"persist_ticket[{ticket['ticketId']}] received") == 1
            assert worker.count(f"ticket {ticket['ticketId']} persisted: INSERTED") == 1
    assert rows() == 9


def test_waiting_messages_are_persisted_in_batches(messaging, sender, clean_tickets):
    """50 messages waiting: the worker's transactions carry more than one ticket each on
    average (ticketing_persist_batch_size), never more than PERSIST_BATCH_MAX."""
    tickets = [seat(100 + n) for n in range(50)]
    for ticket in tickets:
        send(sender, ticket)
    with Worker.start(messaging.env()) as worker:
        wait_until(lambda: rows() == 50, 60, "50 rows")
        samples = wait_until(
            lambda: (m := worker.metrics()).get("ticketing_ack_batch_size_sum") == 50 and m,
            20,
            "50 acks",
        )
    batches = samples["ticketing_persist_batch_size_count"]
    assert samples["ticketing_persist_batch_size_sum"] == 50
    assert batches < 50 / 2, f"{batches:.0f} transactions for 50 tickets"
    assert samples['ticketing_persist_batch_size_bucket{le="10.0"}'] == batches
    deletes = samples["ticketing_ack_batch_size_count"]  # acks: DeleteMessageBatch calls
    assert samples["ticketing_ack_batch_size_sum"] == 50
    assert deletes < 50 / 2, f"{deletes:.0f} DeleteMessageBatch calls for 50 acks"
    wait_until(lambda: queue_counts(messaging.queue_url) == (0, 0), 20, "every message deleted")
    print(f"50 tickets in {batches:.0f} transactions and {deletes:.0f} DeleteMessageBatch calls")


def test_a_delete_batch_reports_each_refused_entry():
    """The ack write: one DeleteMessageBatch; an entry SQS refuses fails alone."""
    import boto3

    from tasks.ack_batching import DeleteEntryFailed, delete_batch

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"acks-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x")
    handle = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"][0]["ReceiptHandle"]
    outcomes = delete_batch([(sqs, url, handle), (sqs, url, "not-a-receipt-handle")])
    assert outcomes[0] is None and isinstance(outcomes[1], DeleteEntryFailed)
    assert queue_counts(url) == (0, 0)

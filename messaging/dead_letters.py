"""The dead-letter queue for operators: list what is there (decoded), and redrive it.

Plain boto3 on the standard endpoint variables, like `messaging.queues`.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from messaging.queues import depths, sqs
from plumbing import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    """One message in the DLQ, decoded as far as it goes."""

    message_id: str
    receive_count: int
    sent_at: float
    task: str | None
    task_id: str | None
    ticket: dict[str, Any] | None
    raw: str

    def summary(self) -> str:
        if self.ticket:
            t = self.ticket
            what = (
                f"ticket {t.get('ticketId')} {t.get('eventId')}/{t.get('zoneId')}/"
                f"{t.get('row')}{t.get('column')}"
            )
        else:
            what = f"undecodable body {self.raw[:80]!r}"
        sent = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.sent_at))
        return (
            f"{self.message_id} sent {sent} received {self.receive_count}x task {self.task}: {what}"
        )


def decode(message: dict[str, Any]) -> DeadLetter:
    """Decode an SQS message carrying a Celery task (kombu's JSON envelope) without failing."""
    raw = message.get("Body", "")
    task = task_id = ticket = None
    try:
        envelope = json.loads(raw)
        headers = envelope.get("headers") or {}
        task, task_id = headers.get("task"), headers.get("id")
        body = envelope.get("body", "")
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        _, kwargs, _ = json.loads(body)
        ticket = kwargs.get("ticket") if isinstance(kwargs, dict) else None
    except (ValueError, TypeError, AttributeError, KeyError):
        pass
    attributes = message.get("Attributes", {})
    return DeadLetter(
        message_id=message.get("MessageId", ""),
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        sent_at=int(attributes.get("SentTimestamp", 0)) / 1000,
        task=task,
        task_id=task_id,
        ticket=ticket if isinstance(ticket, dict) else None,
        raw=raw,
    )


def peek_dead_letters(limit: int = 100) -> list[DeadLetter]:
    """Read up to `limit` DLQ messages without removing them (each is hidden for 5 s)."""
    url = settings.get().dead_letter_queue_url
    found: dict[str, DeadLetter] = {}
    empty_reads = 0
    while len(found) < limit and empty_reads < 2:
        batch = (
            sqs()
            .receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, limit - len(found)),
                VisibilityTimeout=5,
                WaitTimeSeconds=0,
                MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
            .get("Messages", [])
        )
        empty_reads = 0 if batch else empty_reads + 1
        for m in batch:
            found[m["MessageId"]] = decode(m)
    return list(found.values())


def _queue_arn(url: str) -> str:
    return sqs().get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def redrive(limit: int = 1000) -> tuple[str, int]:
    """Move DLQ messages back to the queue: SQS StartMessageMoveTask where the endpoint has it,
    else receive, re-send, then delete (a crash in between re-sends a duplicate, which the
    idempotent projection absorbs). Returns (method, messages moved or started)."""
    s = settings.get()
    try:
        depth = depths(s.dead_letter_queue_url)["visible"]
        task = sqs().start_message_move_task(
            SourceArn=_queue_arn(s.dead_letter_queue_url),
            DestinationArn=_queue_arn(s.queue_url),
        )
        log.info("redrive: StartMessageMoveTask %s", task.get("TaskHandle"))
        return "StartMessageMoveTask", depth
    except (ClientError, BotoCoreError, AttributeError) as exc:
        log.info("StartMessageMoveTask unavailable (%s); receiving and re-sending", exc)
    moved = 0
    while moved < limit:
        batch = (
            sqs()
            .receive_message(
                QueueUrl=s.dead_letter_queue_url,
                MaxNumberOfMessages=min(10, limit - moved),
                VisibilityTimeout=30,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
            )
            .get("Messages", [])
        )
        if not batch:
            break
        for m in batch:
            send: dict[str, Any] = {"QueueUrl": s.queue_url, "MessageBody": m["Body"]}
            if m.get("MessageAttributes"):
                send["MessageAttributes"] = m["MessageAttributes"]
            sqs().send_message(**send)
            sqs().delete_message(QueueUrl=s.dead_letter_queue_url, ReceiptHandle=m["ReceiptHandle"])
            moved += 1
    return "receive-and-resend", moved

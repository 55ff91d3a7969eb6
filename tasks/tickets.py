"""The projection task: persist one ticket event into MySQL, exactly once in effect.

Legacy: the one-seat sale appended a ticket event (`kind=ticket`) before it became an order of
one seat paid at once (`kind=order`, applied by `tasks.orders`); this task stays for the ticket
messages an older release left in a stream or a queue (a rolling deploy, a parked entry put
back), and writes their tickets without an order, as it always did.

One Celery task per message, so acknowledgement, retry, rejection towards the DLQ, task events
and request ids stay exactly per message. What is shared is the database write: the worker runs
a thread pool (Procfile: `--pool threads --concurrency 20`: one SQS ReceiveMessage brings up to
10 messages, and 10 more can arrive while they are written), and each task hands its ticket to
the process-wide group commit `projection`, which writes the tickets waiting together (up to
PERSIST_BATCH_MAX) in one transaction with one multi-row INSERT
(`models.tickets.persist_tickets`). Each task waits for its own ticket's outcome and acts on it
alone: a poison ticket is rejected while its batch-mates are committed and acked; a transient
error of the shared transaction makes every task of the batch retry.

celery-batches, the usual library for batching Celery tasks, is not used: every release
(0.10 and 0.11 checked) requires celery<5.7, and this worker runs Celery 5.7.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

from celery import Task

import models
from celeryconfig import TaskNames
from models.tickets import (
    SCHEMA_VERSION,
    Outcome,
    TicketRecord,
    UnknownCatalogEntry,
    is_transient,
    persist_tickets,
)
from plumbing import metrics, settings
from plumbing.heartbeats import record_progress
from tasks import celery_app
from tasks.group_commit import GroupCommit, GroupCommitTimeout

log = logging.getLogger(__name__)


class MalformedTicket(ValueError):
    """The message does not carry a ticket this worker understands: never retried."""


def retry_countdown(retries: int, cap: int) -> float:
    """Exponential backoff with full jitter, capped below the queue's visibility timeout."""
    return random.uniform(0.5, 1.0) * min(cap, 2**retries)


def parse_ticket(message: Any) -> TicketRecord:
    """The ticket of a task message; MalformedTicket if it is not one."""
    if not isinstance(message, dict):
        raise MalformedTicket(f"ticket must be an object, got {type(message).__name__}")
    version = message.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise MalformedTicket(f"unsupported schemaVersion {version!r}")
    try:
        return TicketRecord.from_json(message)
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise MalformedTicket(f"malformed ticket: {exc!r}") from exc


def lag_of(record: TicketRecord) -> float:
    """Seconds from the sale (createdOn) until now."""
    return max(0.0, (datetime.now(UTC) - record.created_on).total_seconds())


def write_batch(records: list[TicketRecord]) -> list[Outcome | Exception]:
    """The group commit's write: the batch in one transaction, one outcome per ticket."""
    started = time.perf_counter()
    with models.writer().begin() as conn:
        outcomes = persist_tickets(conn, records)
    metrics.PERSIST_SECONDS.observe(time.perf_counter() - started)
    metrics.PERSIST_BATCH_SIZE.observe(len(records))
    written = [lag_of(r) for r, o in zip(records, outcomes, strict=True) if isinstance(o, Outcome)]
    if written:
        record_progress(max(written))  # one Redis write per batch, for /events/health
    return outcomes


# Process-wide; its sender threads start with the first task (after any fork). Two senders: one
# writes a batch while the other collects the next.
projection: GroupCommit[TicketRecord, Outcome] = GroupCommit(
    write_batch,
    name="projection",
    max_batch=settings.get().persist_batch_max,
    window=settings.get().persist_batch_window,
    senders=2,
)


@celery_app.task(
    name=TaskNames.PERSIST_TICKET,
    bind=True,
    max_retries=settings.get().task_max_retries,
    throws=(MalformedTicket, UnknownCatalogEntry),
)
def persist_ticket_task(self: Task, ticket: Any) -> str:
    """Persist one ticket; retry transient database errors, let anything else reach the DLQ."""
    try:
        record = parse_ticket(ticket)
    except MalformedTicket:
        metrics.DEAD_LETTER_REJECTS.labels("MalformedTicket").inc()
        raise
    try:
        # Blocks until this ticket's batch is committed (or failed). A ticket still waiting for
        # a place in a batch after PERSIST_BATCH_TIMEOUT is withdrawn, never written, and the
        # task retries as for a transient error.
        outcome = projection.submit(record, timeout=settings.get().persist_batch_timeout)
    except Exception as exc:
        if not (is_transient(exc) or isinstance(exc, GroupCommitTimeout)):
            # rejected, not acked: SQS redelivers it, then the redrive policy dead-letters it
            metrics.DEAD_LETTER_REJECTS.labels(type(exc).__name__).inc()
            raise
        countdown = retry_countdown(self.request.retries, settings.get().task_retry_backoff_cap)
        log.warning(
            "ticket %s: transient database error, retry %d in %.1fs: %s",
            record.ticket_id,
            self.request.retries + 1,
            countdown,
            exc,
            extra={"ticketId": record.ticket_id, "outcome": "RETRY"},
        )
        metrics.RETRIES.inc()
        raise self.retry(exc=exc, countdown=countdown) from exc
    metrics.PERSISTED.labels(outcome.value).inc()
    if outcome is Outcome.INSERTED:
        metrics.PROJECTION_LAG.observe(lag_of(record))
    log.info(
        "ticket %s persisted: %s",
        record.ticket_id,
        outcome.value,
        extra={"ticketId": record.ticket_id, "outcome": outcome.value},
    )
    return outcome.value


__all__ = ["Outcome", "is_transient", "parse_ticket", "persist_ticket_task", "write_batch"]

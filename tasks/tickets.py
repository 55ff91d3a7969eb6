"""The projection task: persist one ticket event into MySQL, exactly once in effect."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

from celery import Task
from pymysql.err import InterfaceError as PyMySQLInterfaceError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

import metrics
import models
import settings
from celeryconfig import TaskNames
from models.tickets import (
    SCHEMA_VERSION,
    Outcome,
    TicketRecord,
    UnknownCatalogEntry,
    persist_ticket,
)
from tasks import celery_app
from tasks.heartbeat import record_progress

log = logging.getLogger(__name__)

# MySQL/MariaDB errors worth another try: can't connect, server gone away, lost connection,
# lock wait timeout, deadlock, and read-only (an Aurora writer that was just demoted).
TRANSIENT_MYSQL_ERRORS = {2003, 2006, 2013, 2014, 2055, 1205, 1213, 1290, 1836}


class MalformedTicket(ValueError):
    """The message does not carry a ticket this worker understands: never retried."""


def is_transient(exc: BaseException) -> bool:
    """True for database errors that a later attempt can get past."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc.orig, PyMySQLInterfaceError):
            return True
        args = getattr(exc.orig, "args", ())
        return bool(args) and args[0] in TRANSIENT_MYSQL_ERRORS
    return False


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
    started = time.perf_counter()
    try:
        with models.writer().begin() as conn:
            outcome = persist_ticket(conn, record)
    except Exception as exc:
        if not is_transient(exc):
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
    metrics.PERSIST_SECONDS.observe(time.perf_counter() - started)
    metrics.PERSISTED.labels(outcome.value).inc()
    lag = max(0.0, (datetime.now(UTC) - record.created_on).total_seconds())
    if outcome is Outcome.INSERTED:
        metrics.PROJECTION_LAG.observe(lag)
    record_progress(lag)
    log.info(
        "ticket %s persisted: %s",
        record.ticket_id,
        outcome.value,
        extra={"ticketId": record.ticket_id, "outcome": outcome.value},
    )
    return outcome.value


__all__ = ["Outcome", "parse_ticket", "persist_ticket_task"]

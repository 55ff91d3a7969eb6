"""The projection task of orders: apply one order event (the order's full state and version) to
MySQL, newest version wins (models/orders.py).

One transaction per event. A seat still live in MySQL for another order (its closing event is
on its way), a race with another event of the same new order, and the database's transient
errors are retried with capped, jittered backoff straight to the queue; a malformed event or an
unknown event/zone is rejected at once, so SQS redelivers it and its redrive policy moves it to
the DLQ. A seat conflict that outlives the retries reaches the DLQ too (Redis decided the seat
was free: such a conflict means a bug, and the DLQ alarm tells).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from celery import Task

import models
from celeryconfig import TaskNames
from models.orders import (
    Applied,
    LatePaymentRecord,
    MalformedOrder,
    OrderRace,
    OrderSnapshot,
    SeatStillLive,
    apply_order,
    record_late_payment,
)
from models.tickets import UnknownCatalogEntry, is_transient
from plumbing import metrics, settings
from plumbing.heartbeats import record_progress
from tasks import celery_app
from tasks.tickets import retry_countdown

log = logging.getLogger(__name__)


def _lag(order: OrderSnapshot) -> float:
    return max(0.0, (datetime.now(UTC) - order.created_on).total_seconds())


def write_order(order: OrderSnapshot) -> Applied:
    """The event in its own transaction."""
    started = time.perf_counter()
    with models.writer().begin() as conn:
        outcome = apply_order(conn, order)
    metrics.PERSIST_SECONDS.observe(time.perf_counter() - started)
    if outcome is not Applied.STALE:
        record_progress(_lag(order))
    return outcome


@celery_app.task(
    name=TaskNames.APPLY_ORDER,
    bind=True,
    max_retries=settings.get().task_max_retries,
    throws=(MalformedOrder, UnknownCatalogEntry),
)
def apply_order_task(self: Task, order: Any) -> str:
    """Apply one order event; retry what a later attempt can get past, reject the rest."""
    try:
        snapshot = OrderSnapshot.from_json(order)
    except MalformedOrder:
        metrics.DEAD_LETTER_REJECTS.labels("MalformedOrder").inc()
        raise
    try:
        outcome = write_order(snapshot)
    except Exception as exc:
        if not (isinstance(exc, SeatStillLive | OrderRace) or is_transient(exc)):
            metrics.DEAD_LETTER_REJECTS.labels(type(exc).__name__).inc()
            raise
        countdown = retry_countdown(self.request.retries, settings.get().task_retry_backoff_cap)
        log.warning(
            "order %s v%d: %s, retry %d in %.1fs: %s",
            snapshot.order_id,
            snapshot.version,
            type(exc).__name__,
            self.request.retries + 1,
            countdown,
            exc,
            extra={"orderId": snapshot.order_id, "outcome": "RETRY"},
        )
        metrics.RETRIES.inc()
        raise self.retry(exc=exc, countdown=countdown) from exc
    metrics.ORDERS_APPLIED.labels(outcome.value).inc()
    if outcome is Applied.INSERTED:  # the order's first event: its lag is the sale's or hold's
        metrics.PROJECTION_LAG.observe(_lag(snapshot))
    log.info(
        "order %s v%d %s: %s",
        snapshot.order_id,
        snapshot.version,
        snapshot.status,
        outcome.value,
        # its tickets' ids too: one grep joins a sale's answer, its request, task and row
        extra={
            "orderId": snapshot.order_id,
            "ticketIds": [s.ticket_id for s in snapshot.seats],
            "outcome": outcome.value,
        },
    )
    return outcome.value


@celery_app.task(
    name=TaskNames.RECORD_LATE_PAYMENT,
    bind=True,
    max_retries=settings.get().task_max_retries,
    throws=(MalformedOrder,),
)
def record_late_payment_task(self: Task, payment: Any) -> str:
    """Keep a LATE_PAYMENT_REJECTED payment for its refund; retry transient database errors."""
    try:
        record = LatePaymentRecord.from_json(payment)
    except MalformedOrder:
        metrics.DEAD_LETTER_REJECTS.labels("MalformedOrder").inc()
        raise
    try:
        with models.writer().begin() as conn:
            outcome = record_late_payment(conn, record)
    except Exception as exc:
        if not is_transient(exc):
            metrics.DEAD_LETTER_REJECTS.labels(type(exc).__name__).inc()
            raise
        countdown = retry_countdown(self.request.retries, settings.get().task_retry_backoff_cap)
        metrics.RETRIES.inc()
        raise self.retry(exc=exc, countdown=countdown) from exc
    # an operator refunds it: a WARNING line per payment, once
    if outcome is Applied.INSERTED:
        log.warning(
            "late payment %s for order %s rejected (%s %s): to refund",
            record.payment_id,
            record.order_id,
            record.amount,
            record.currency,
            extra={"orderId": record.order_id, "paymentId": record.payment_id},
        )
    return outcome.value


__all__ = ["apply_order_task", "record_late_payment_task", "write_order"]

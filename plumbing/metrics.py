"""Prometheus metrics of the web processes, the worker and the relay, in multi-process mode.

gunicorn and Celery's prefork pool both run several processes; each writes its samples to files
in PROMETHEUS_MULTIPROC_DIR and whatever serves /metrics adds them up. The directory is set
before the first import here (gunicorn.conf.py for the web, this module for the worker, whose
pool processes inherit it). Shared by web and worker, hence a top-level module.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="ticketing-metrics-"))

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

# prometheus_client chooses between in-memory and multi-process values when it is first imported.
# The `celery` command imports it before this module runs (through Flower's CLI plugin), so the
# worker would keep in-memory values that its /metrics (read from the directory) never shows.
values.ValueClass = values.get_value_class()

FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

PURCHASES = Counter("ticketing_purchases_total", "Purchase answers by outcome code", ["code"])
PURCHASE_SECONDS = Histogram("ticketing_purchase_seconds", "Purchase request latency", buckets=FAST)
ORDER_ANSWERS = Counter(
    "ticketing_order_answers_total",
    "Order route answers by action and outcome code",
    ["action", "code"],
)
PERSIST_SECONDS = Histogram(
    "ticketing_persist_seconds", "Projection transaction latency (one batch)", buckets=FAST
)
PERSIST_BATCH_SIZE = Histogram(
    "ticketing_persist_batch_size",
    "Tickets per projection transaction (group commit, one multi-row INSERT)",
    buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 50),
)
ACK_BATCH_SIZE = Histogram(
    "ticketing_ack_batch_size",
    "Messages acknowledged per SQS DeleteMessageBatch (group commit)",
    buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
)
PERSISTED = Counter("ticketing_persisted_total", "Persist outcomes", ["outcome"])
ORDERS_APPLIED = Counter(
    "ticketing_orders_applied_total", "Order events by projection outcome", ["outcome"]
)
RETRIES = Counter("ticketing_task_retries_total", "Task retries after transient errors")
DEAD_LETTER_REJECTS = Counter(
    "ticketing_dead_letter_rejects_total",
    "Messages rejected toward the DLQ (SQS moves them after maxReceiveCount receives)",
    ["reason"],
)
MONITOR_EVENTS_DROPPED = Counter(
    "ticketing_monitor_events_dropped_total",
    "Celery events the worker dropped: its monitoring Redis was silent or gone, or its buffer full",
)
PROJECTION_LAG = Histogram(
    "ticketing_projection_lag_seconds",
    "Time from sale (createdOn) to the persisted row",
    buckets=SLOW,
)


RELAY_BATCH_SIZE = Histogram(
    "ticketing_relay_batch_size",
    "Outbox entries per SNS PublishBatch sent by the relay",
    buckets=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
)
RELAY_PUBLISH_SECONDS = Histogram(
    "ticketing_relay_publish_seconds", "Latency of one relay PublishBatch call", buckets=FAST
)
RELAY_PARKED = Counter(
    "ticketing_relay_parked_total",
    "Outbox entries the relay parked: SNS kept refusing them, or they were unreadable",
    ["reason"],
)
SWEEP_CALLS = Counter(
    "ticketing_sweep_calls_total", "Sweep script calls made by the relay's sweeper of expired holds"
)
HOLDS_SWEPT = Counter(
    "ticketing_holds_swept_total",
    "Holds the relay's sweeper expired (not those a script on the event met first)",
)
SWEEP_FAILURES = Counter(
    "ticketing_sweep_failures_total",
    "Redis errors met by the relay's sweeper (a round, or one event's sweep); it keeps going",
)
# every relay sees the same streams: the freshest reading of any live relay process counts
OUTBOX_AGE = Gauge(
    "ticketing_outbox_age_seconds",
    "Age of the oldest entry in the outbox streams (0 when empty)",
    multiprocess_mode="livemax",
)
OUTBOX_DEPTH = Gauge(
    "ticketing_outbox_depth",
    "Entries in the outbox streams (not yet relayed, or relayed and not yet deleted)",
    multiprocess_mode="livemax",
)


def registry() -> CollectorRegistry:
    """A registry adding up every process's samples."""
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    return reg


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def process_exited(pid: int) -> None:
    """Forget a dead process's live gauges (gunicorn child_exit, Celery pool shutdown)."""
    multiprocess.mark_process_dead(pid)

"""The worker's message consumer: tasks over SQS, the monitoring plane over Redis.

Two changes to Celery's Consumer:

* an undecodable message goes to the DLQ instead of vanishing. Celery acks (deletes) a message
  whose body it cannot decode, "so it doesn't enter a loop". On SQS the loop is bounded by the
  queue's redrive policy, and a deleted message is a lost one: we reject it, SQS redelivers it,
  and after maxReceiveCount receives it is dead-lettered (`flask --app web dlq list`);
* `connection_for_write()` returns a Redis connection (MONITOR_BROKER_URL). Celery's event step
  is its only caller, so task and worker events (`-E`) reach Flower through Redis while every task
  message still travels through SNS/SQS; a thread of their own sends them (`tasks.events`).
  Remote control is `tasks.monitoring.RedisRemoteControl`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer
from kombu import Connection
from kombu.utils.encoding import safe_repr

from celeryconfig import monitor_transport_options
from plumbing import metrics, settings

log = logging.getLogger(__name__)


def monitor_connection(**kwargs: Any) -> Connection:
    """A kombu connection to the monitoring plane's Redis (never the task broker, never a
    Redis Cluster: kombu's Redis transport does not speak cluster mode)."""
    return Connection(
        settings.get().monitor_url(), transport_options=monitor_transport_options(), **kwargs
    )


class WorkerConsumer(Consumer):
    """Celery's Consumer: undecodable messages rejected for the DLQ; events over Redis."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        log.error(
            "undecodable message rejected for the DLQ: %r (content-type %s, headers %s)",
            exc,
            message.content_type,
            safe_repr(message.headers),
        )
        metrics.DEAD_LETTER_REJECTS.labels("undecodable").inc()
        message.reject(requeue=False)

    def connection_for_write(self, url: str | None = None, **kwargs: Any) -> Connection:
        # Not connected here: the events' sender thread connects (tasks/events.py), so the
        # consumer starts, and restarts, without waiting for the monitoring Redis.
        return monitor_connection(heartbeat=kwargs.get("heartbeat", 0))

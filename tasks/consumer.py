"""The worker's message consumer: an undecodable message goes to the DLQ instead of vanishing.

Celery acks (deletes) a message whose body it cannot decode, "so it doesn't enter a loop". On
SQS the loop is bounded by the queue's redrive policy, and a deleted message is a lost one: we
reject it instead, SQS redelivers it, and after maxReceiveCount receives it is dead-lettered,
where an operator can read it (`flask --app web dlq list`).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer
from kombu.utils.encoding import safe_repr

log = logging.getLogger(__name__)


class DeadLetteringConsumer(Consumer):
    """Celery's Consumer, rejecting undecodable messages rather than acking them."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        log.error(
            "undecodable message rejected for the DLQ: %r (content-type %s, headers %s)",
            exc,
            message.content_type,
            safe_repr(message.headers),
        )
        message.reject(requeue=False)

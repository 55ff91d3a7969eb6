"""An undecodable message body must not stop the worker.

kombu 5.7 decodes `body_encoding: base64` while building the message, before Celery sees it; a
body that is not valid base64 raises there and stops the whole worker ("Unrecoverable error").
One poison message would then crash every worker that receives it until SQS dead-letters it.
Here the raw body is passed on instead: Celery fails to decode it, and `WorkerConsumer` rejects
it for the DLQ.
"""

from __future__ import annotations

import binascii
import logging
from typing import Any

from kombu.transport.SQS import Channel as SQSChannel

log = logging.getLogger(__name__)


class TolerantDecodingChannel(SQSChannel):
    """An SQS channel that passes a body it cannot decode on, raw."""

    def decode_body(self, body: Any, encoding: str | None = None) -> Any:
        try:
            return super().decode_body(body, encoding)
        except (binascii.Error, ValueError, TypeError) as exc:
            log.error("message body is not valid %s (%s); passing it on raw", encoding, exc)
            return body

"""Structured logs for web and worker: one JSON object per line, joined by a request id.

The purchase API takes `X-Request-ID` (or makes one), returns it, and sends it to the worker in
the task message's headers; the ticket id is the task id. So one grep joins request → ticket →
task → row. Shared by the web processes and the worker, hence a top-level module.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from typing import Any

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}\Z")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def accept_request_id(header: str | None) -> str:
    """The caller's X-Request-ID if it is a sane token, else a new one."""
    if header and _VALID_ID.match(header):
        return header
    return uuid.uuid4().hex


def _task_context() -> dict[str, Any]:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return {}
    task = current_task
    if not task or task.request.id is None:
        return {}
    return {
        "taskId": task.request.id,
        "requestId": task.request.get("request_id"),
        "task": task.name,
        "retries": task.request.retries,
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, ids, and any `extra=` fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["requestId"] = rid
        for key, value in _task_context().items():
            if value is not None:
                entry.setdefault(key, value)
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(service: str) -> None:
    """Send this process's logs to stderr, as JSON lines unless LOG_FORMAT=text."""
    root = logging.getLogger()
    if getattr(root, "_ticketing_configured", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("LOG_FORMAT", "json") == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(service))
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._ticketing_configured = True  # type: ignore[attr-defined]

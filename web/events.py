"""The worker side seen from outside: `GET /events/health`.

Workers alive (from the heartbeats they write to Redis) and queue depths (SQS attributes).
503 when no worker has beaten within WORKER_ALIVE_SECONDS.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, jsonify

import settings
from tasks import queues
from tasks.heartbeat import alive_workers
from web import seats

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__, url_prefix="/events")


@bp.get("/health")
def health() -> tuple[Response, int]:
    """Workers alive, queue depth, in-flight count and DLQ depth; 503 without a live worker."""
    s = settings.get()
    body: dict[str, Any] = {
        "status": "UP",
        "workers": 0,
        "queueDepth": None,
        "inFlight": None,
        "deadLetterDepth": None,
    }
    reasons = []
    try:
        workers = alive_workers(seats.client(), s.worker_alive_seconds)
        body["workers"] = len(workers)
        body["lastHeartbeatAgeSeconds"] = min(workers.values()) if workers else None
        if not workers:
            reasons.append(f"no worker heartbeat within {s.worker_alive_seconds:g}s")
    except redis.RedisError as exc:
        reasons.append(f"heartbeats unreadable: {exc}")
    try:
        queue = queues.depths(s.queue_url)
        body["queueDepth"], body["inFlight"] = queue["visible"], queue["inFlight"]
        body["deadLetterDepth"] = queues.depths(s.dead_letter_queue_url)["visible"]
    except Exception as exc:  # botocore raises many types; all mean "SQS unreadable"
        log.warning("events health: SQS unreadable: %s", exc)
        reasons.append("queue attributes unreadable")
    if reasons:
        body["status"] = "DOWN"
        body["reasons"] = reasons
    return jsonify(body), 200 if not reasons else 503

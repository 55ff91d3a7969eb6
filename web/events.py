"""The worker side seen from outside.

`GET /events/health` says the process answers (the load balancer's probe: the events service
must stay up exactly when the workers are down, so operators can see it).
`GET /events/health/deep`: workers alive (from the heartbeats they write to the monitoring
plane's Redis) and queue depths (SQS attributes); 503 when no worker has beaten within
WORKER_ALIVE_SECONDS.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, jsonify

from messaging import queues
from plumbing import settings
from plumbing.heartbeats import alive_workers, monitor_redis, progress
from web.openapi import documented
from web.schemas import EventsHealthSchema, LivenessSchema

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__, url_prefix="/events")


@bp.get("/health")
@documented({200: LivenessSchema})
def health() -> tuple[Response, int]:
    """The process answers; no dependency is called (the load balancer's probe)."""
    return jsonify({"status": "UP"}), 200


@bp.get("/health/deep")
@documented({200: EventsHealthSchema, 503: EventsHealthSchema})
def health_deep() -> tuple[Response, int]:
    """Workers alive, queue and DLQ depths, projection progress; 503 with the reasons when no
    worker is alive, SQS is unreadable, or messages wait while nothing was persisted for
    PROJECTION_STALL_SECONDS."""
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
        workers = alive_workers(monitor_redis(), s.worker_alive_seconds)
        body["workers"] = len(workers)
        body["lastHeartbeatAgeSeconds"] = min(workers.values()) if workers else None
        body["workerHeartbeatAges"] = workers
        if not workers:
            reasons.append(f"no worker heartbeat within {s.worker_alive_seconds:g}s")
        body["lastPersistAgeSeconds"], body["projectionLagSeconds"] = progress(monitor_redis())
    except redis.RedisError as exc:
        reasons.append(f"heartbeats unreadable: {exc}")
    try:
        queue = queues.depths(s.queue_url)
        body["queueDepth"], body["inFlight"] = queue["visible"], queue["inFlight"]
        body["deadLetterDepth"] = queues.depths(s.dead_letter_queue_url)["visible"]
        idle = body.get("lastPersistAgeSeconds")
        if queue["visible"] and idle is not None and idle > s.projection_stall_seconds:
            reasons.append(
                f"queue not draining: {queue['visible']} waiting, last ticket persisted "
                f"{idle:.0f}s ago"
            )
    except Exception as exc:  # botocore raises many types; all mean "SQS unreadable"
        log.warning("events health: SQS unreadable: %s", exc)
        reasons.append("queue attributes unreadable")
    if reasons:
        body["status"] = "DOWN"
        body["reasons"] = reasons
    return jsonify(body), 200 if not reasons else 503

"""The worker side seen from outside.

`GET /events/health` says the process answers (the load balancer's probe: the events service
must stay up exactly when the workers are down, so operators can see it).
`GET /events/health/deep`: workers and relays alive (from the heartbeats they write to the
monitoring plane's Redis), queue depths (SQS attributes) and the outbox (its streams in the seat
Redis); 503 when no worker has beaten within WORKER_ALIVE_SECONDS, or the oldest outbox entry
waits longer than PROJECTION_STALL_SECONDS.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Blueprint, Response, jsonify

from messaging import queues
from models import seats
from models.seats import outbox
from plumbing import settings
from plumbing.heartbeats import alive_relays, alive_workers, monitor_redis, progress
from web.access import Access, allow
from web.openapi import documented
from web.schemas import EventsHealthSchema, LivenessSchema

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__, url_prefix="/events")


@allow(Access.PUBLIC)
@bp.get("/health")
@documented({200: LivenessSchema})
def health() -> tuple[Response, int]:
    """The process answers; no dependency is called (the load balancer's probe)."""
    return jsonify({"status": "UP"}), 200


@allow(Access.INTERNAL)
@bp.get("/health/deep")
@documented({200: EventsHealthSchema, 503: EventsHealthSchema})
def health_deep() -> tuple[Response, int]:
    """Workers and relays alive, queue, DLQ and outbox depths, projection progress.

    503 with the reasons when no worker is alive, SQS or the outbox is unreadable, messages
    wait while nothing was persisted for PROJECTION_STALL_SECONDS, or an outbox entry waits
    that long.
    """
    s = settings.get()
    body: dict[str, Any] = {
        "status": "UP",
        "workers": 0,
        "queueDepth": None,
        "inFlight": None,
        "deadLetterDepth": None,
        "relays": 0,
        "relayHeartbeats": {},
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
        relays = alive_relays(monitor_redis(), s.relay_alive_seconds)
        body["relays"], body["relayHeartbeats"] = len(relays), relays
    except redis.RedisError as exc:
        log.warning("events health: heartbeats unreadable: %s", exc)
        reasons.append("heartbeats unreadable")
    reasons += _outbox(body, s.projection_stall_seconds)
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


def _outbox(body: dict[str, Any], stall_seconds: float) -> list[str]:
    """Outbox depth, oldest entry age and parked entries into `body`; the reasons for DOWN."""
    body.update(outboxDepth=None, outboxOldestAgeSeconds=None, parkedDepth=None)
    try:
        r = seats.client()
        body["outboxDepth"], body["outboxOldestAgeSeconds"] = outbox.stats(r)
        body["parkedDepth"] = outbox.parked_depth(r)
    except redis.RedisError as exc:
        log.warning("events health: outbox unreadable: %s", exc)
        return ["outbox unreadable"]
    age = body["outboxOldestAgeSeconds"]
    if age is not None and age > stall_seconds:
        return [f"outbox not draining: oldest entry {age:.0f}s old"]
    return []

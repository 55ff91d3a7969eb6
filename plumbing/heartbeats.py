"""Worker liveness and projection progress for `/events/health`, kept in Redis.

Celery's own heartbeats are events, which SQS cannot carry; each worker writes
`hostname → unix time` into one sorted set every WORKER_HEARTBEAT_SECONDS instead
(`tasks.heartbeat`), and a note after each persisted batch. The events API reads them here,
without importing the worker's Celery app.

They live on the monitoring plane's Redis (MONITOR_BROKER_URL), beside Celery's events and
remote control, not with the seat state: the seat Redis may be a cluster, and the worker then
needs no access to it at all.
"""

from __future__ import annotations

import logging
import os
import time
from functools import cache
from typing import Any

import redis

from plumbing import settings

HEARTBEAT_KEY = "ticketing:workers:heartbeat"
PROGRESS_KEY = "ticketing:projection:progress"
FORGET_AFTER_SECONDS = 86_400

log = logging.getLogger(__name__)


def new_monitor_redis() -> redis.Redis:
    """A new client of the monitoring plane's Redis (MONITOR_BROKER_URL)."""
    timeout = settings.get().redis_socket_timeout
    return redis.Redis.from_url(
        settings.get().monitor_url(), socket_timeout=timeout, socket_connect_timeout=timeout
    )


@cache
def _cached_redis(pid: int) -> redis.Redis:
    return new_monitor_redis()


def monitor_redis() -> redis.Redis:
    """This process's client of the monitoring plane's Redis, where the heartbeats are."""
    return _cached_redis(os.getpid())


def beat(r: redis.Redis, hostname: str, now: float | None = None) -> None:
    """Record that `hostname` is alive now; forget workers silent for a day."""
    now = time.time() if now is None else now
    pipe = r.pipeline(transaction=False)
    pipe.zadd(HEARTBEAT_KEY, {hostname: now})
    pipe.zremrangebyscore(HEARTBEAT_KEY, "-inf", now - FORGET_AFTER_SECONDS)
    pipe.execute()


def record_progress(lag_seconds: float) -> None:
    """Note that a ticket was just persisted, `lag_seconds` after its sale (for health)."""
    try:
        monitor_redis().hset(
            PROGRESS_KEY, mapping={"at": time.time(), "lagSeconds": round(lag_seconds, 3)}
        )
    except redis.RedisError as exc:
        log.warning("progress to Redis failed: %s", exc)


def progress(r: redis.Redis) -> tuple[float | None, float | None]:
    """(seconds since the last persisted ticket, that ticket's sale → persist lag)."""
    values = r.hmget(PROGRESS_KEY, "at", "lagSeconds")
    if values[0] is None:
        return None, None
    return round(time.time() - float(values[0]), 3), float(values[1])


def alive_workers(r: redis.Redis, within_seconds: float) -> dict[str, float]:
    """Workers whose last heartbeat is at most `within_seconds` old → its age in seconds."""
    now = time.time()
    rows = r.zrangebyscore(HEARTBEAT_KEY, now - within_seconds, "+inf", withscores=True)
    return {_text(name): round(now - score, 3) for name, score in rows}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

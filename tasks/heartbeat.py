"""Worker liveness for `/events/health`: each worker writes a heartbeat into Redis.

Celery's own heartbeats are events, which SQS cannot carry; this bootstep writes
`hostname → unix time` into one sorted set every WORKER_HEARTBEAT_SECONDS instead.

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
from celery import bootsteps

import settings

HEARTBEAT_KEY = "ticketing:workers:heartbeat"
PROGRESS_KEY = "ticketing:projection:progress"
FORGET_AFTER_SECONDS = 86_400

log = logging.getLogger(__name__)


def _redis() -> redis.Redis:
    timeout = settings.get().redis_socket_timeout
    return redis.Redis.from_url(
        settings.get().monitor_url(), socket_timeout=timeout, socket_connect_timeout=timeout
    )


@cache
def _cached_redis(pid: int) -> redis.Redis:
    return _redis()


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


class RedisHeartbeat(bootsteps.StartStopStep):
    """Worker bootstep: beat at start, then on the worker's timer, and retire on shutdown."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref = None
        self.redis: redis.Redis | None = None

    def start(self, worker: Any) -> None:
        self.redis = _redis()
        self._beat(worker)
        self.tref = worker.timer.call_repeatedly(
            settings.get().worker_heartbeat_seconds, self._beat, (worker,), priority=10
        )

    def stop(self, worker: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self.redis is not None:
            try:
                self.redis.zrem(HEARTBEAT_KEY, worker.hostname)
            except redis.RedisError:
                log.warning("could not retire heartbeat of %s", worker.hostname)

    def _beat(self, worker: Any) -> None:
        try:
            beat(self.redis, worker.hostname)
        except redis.RedisError as exc:  # the worker keeps consuming; health will say DOWN
            log.warning("heartbeat to Redis failed: %s", exc)

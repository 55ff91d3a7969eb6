"""Worker and relay liveness and projection progress for `/events/health`, kept in Redis.

Celery's own heartbeats are events, which SQS cannot carry; each worker writes
`hostname → unix time` into one sorted set every WORKER_HEARTBEAT_SECONDS instead
(`tasks.heartbeat`), and a note after each persisted batch. The events API reads them here,
without importing the worker's Celery app.

Each relay does the same in a sorted set of its own (`relay.monitoring`), with how many outbox
entries it holds (read, not yet published and deleted) beside it.

They live on the monitoring plane's Redis (MONITOR_BROKER_URL), beside Celery's events and
remote control, not with the seat state: the seat Redis may be a cluster, and the worker then
needs no access to it at all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import cache
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from plumbing import settings

HEARTBEAT_KEY = "ticketing:workers:heartbeat"
PROGRESS_KEY = "ticketing:projection:progress"
RELAY_HEARTBEAT_KEY = "ticketing:relays:heartbeat"
RELAY_HELD_KEY = "ticketing:relays:held"
FORGET_AFTER_SECONDS = 86_400

log = logging.getLogger(__name__)


def new_monitor_redis() -> redis.Redis:
    """A new client of the monitoring plane's Redis (MONITOR_BROKER_URL): timeouts, and one
    immediate retry where redis-py's default makes three more attempts with growing pauses."""
    timeout = settings.get().redis_socket_timeout
    return redis.Redis.from_url(
        settings.get().monitor_url(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
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


class _LatestWriter:
    """Writes the latest note handed to it from a daemon thread of this process: the caller
    never waits for Redis, a burst of notes costs one write, and a silent Redis holds one note."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._note: dict[str, float] | None = None
        self._pid: int | None = None

    def put(self, note: dict[str, float]) -> None:
        with self._lock:
            self._note = note
            if self._pid != os.getpid():  # none yet, or the thread stayed behind in a fork
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="progress-writer", daemon=True).start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                note, self._note = self._note, None
            if note is None:
                continue
            try:
                monitor_redis().hset(PROGRESS_KEY, mapping=note)
            except redis.RedisError as exc:
                log.warning("progress to Redis failed: %s", exc)
                time.sleep(1)  # then the latest note, if another came


_progress = _LatestWriter()


def record_progress(lag_seconds: float) -> None:
    """Note that a ticket was just persisted, `lag_seconds` after its sale (for health).
    Returns at once: the note is written to Redis by a thread of its own."""
    _progress.put({"at": time.time(), "lagSeconds": round(lag_seconds, 3)})


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


def relay_beat(r: redis.Redis, name: str, held: int, now: float | None = None) -> None:
    """Record that relay `name` is alive now and holds `held` entries; forget relays silent
    for a day."""
    now = time.time() if now is None else now
    pipe = r.pipeline(transaction=False)
    pipe.zadd(RELAY_HEARTBEAT_KEY, {name: now})
    pipe.hset(RELAY_HELD_KEY, name, held)
    gone = now - FORGET_AFTER_SECONDS
    pipe.zrangebyscore(RELAY_HEARTBEAT_KEY, "-inf", gone)
    pipe.zremrangebyscore(RELAY_HEARTBEAT_KEY, "-inf", gone)
    forgotten = pipe.execute()[2]
    if forgotten:
        r.hdel(RELAY_HELD_KEY, *forgotten)


def retire_relay(r: redis.Redis, name: str) -> None:
    """A relay that stopped cleanly: no longer listed."""
    pipe = r.pipeline(transaction=False)
    pipe.zrem(RELAY_HEARTBEAT_KEY, name)
    pipe.hdel(RELAY_HELD_KEY, name)
    pipe.execute()


def alive_relays(r: redis.Redis, within_seconds: float) -> dict[str, dict[str, float]]:
    """Relays whose last heartbeat is at most `within_seconds` old → its age in seconds and the
    entries it held then."""
    now = time.time()
    rows = r.zrangebyscore(RELAY_HEARTBEAT_KEY, now - within_seconds, "+inf", withscores=True)
    names = [_text(name) for name, _ in rows]
    held = r.hmget(RELAY_HELD_KEY, names) if names else []
    return {
        name: {"ageSeconds": round(now - score, 3), "held": int(count or 0)}
        for name, (_, score), count in zip(names, rows, held, strict=True)
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""The worker's heartbeat bootstep: a beat at start, then one every WORKER_HEARTBEAT_SECONDS.

The beats are written by a thread of their own, not on the worker's timer: that timer runs on
the event loop that receives and acknowledges the SQS messages, and a monitoring Redis that
accepts and never answers would hold it for a socket timeout (and a retry) per beat.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from celery import bootsteps

from plumbing import settings
from plumbing.heartbeats import HEARTBEAT_KEY, beat, new_monitor_redis

log = logging.getLogger(__name__)


class RedisHeartbeat(bootsteps.StartStopStep):
    """Worker bootstep: beat at start, then from a daemon thread, and retire on shutdown."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.redis: redis.Redis | None = None

    def start(self, worker: Any) -> None:
        self.redis = new_monitor_redis()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(worker.hostname,), name="heartbeat", daemon=True
        )
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.redis is not None:
            try:
                self.redis.zrem(HEARTBEAT_KEY, worker.hostname)
            except redis.RedisError:
                log.warning("could not retire heartbeat of %s", worker.hostname)

    def _loop(self, hostname: str) -> None:
        interval = settings.get().worker_heartbeat_seconds
        while True:
            try:
                beat(self.redis, hostname)
            except redis.RedisError as exc:  # the worker keeps consuming; health will say DOWN
                log.warning("heartbeat to Redis failed: %s", exc)
            if self._stop.wait(interval):
                return

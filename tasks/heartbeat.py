"""The worker's heartbeat bootstep: a beat at start, then one on the worker's timer."""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import bootsteps

from plumbing import settings
from plumbing.heartbeats import HEARTBEAT_KEY, beat, new_monitor_redis

log = logging.getLogger(__name__)


class RedisHeartbeat(bootsteps.StartStopStep):
    """Worker bootstep: beat at start, then on the worker's timer, and retire on shutdown."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref = None
        self.redis: redis.Redis | None = None

    def start(self, worker: Any) -> None:
        self.redis = new_monitor_redis()
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

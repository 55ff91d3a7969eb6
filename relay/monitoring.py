"""The relay seen from outside: its heartbeat on the monitoring plane's Redis, its metrics.

The heartbeat (name → time, and how many entries it holds) is written by a thread of its own,
like the worker's (`tasks/heartbeat.py`): a monitoring Redis that hangs never holds up relaying.
Metrics go out as CloudWatch EMF lines on stdout (`plumbing.emf`), and on RELAY_METRICS_PORT
when set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from plumbing import emf, metrics, settings
from plumbing.heartbeats import new_monitor_redis, relay_beat, retire_relay

log = logging.getLogger(__name__)


class Heartbeat:
    """A daemon thread beating every RELAY_HEARTBEAT_SECONDS; retires the relay on stop."""

    def __init__(self, name: str, held: Callable[[], int]) -> None:
        self.name = name
        self.held = held
        self.redis = new_monitor_redis()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            retire_relay(self.redis, self.name)
        except redis.RedisError:
            log.warning("could not retire heartbeat of %s", self.name)

    def _loop(self) -> None:
        interval = settings.get().relay_heartbeat_seconds
        while True:
            try:
                relay_beat(self.redis, self.name, self.held())
            except redis.RedisError as exc:  # the relay keeps relaying; health will say so
                log.warning("heartbeat to Redis failed: %s", exc)
            if self._stop.wait(interval):
                return


def start_metrics() -> None:
    """EMF lines on stdout (METRICS_EMF_SECONDS), and /metrics on RELAY_METRICS_PORT if set."""
    emf.start("relay")
    port = settings.get().relay_metrics_port
    if port:
        from prometheus_client import start_http_server

        try:
            start_http_server(port, registry=metrics.registry())
        except OSError as exc:  # the relay works without its metrics endpoint
            log.warning("metrics port %s unavailable: %s", port, exc)


def stop_metrics() -> None:
    """The last EMF flush."""
    emf.stop()

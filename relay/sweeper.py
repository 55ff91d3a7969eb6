"""The relay's sweeper of expired holds: it frees, within about a second, the holds no script met.

A hold is expired as soon as Redis TIME reaches its `exp`, and every script that meets it frees
it first (`models/seats/order_scripts.py`); the sweeper frees the rest, so seats and buyer counts
come back and the EXPIRED event goes out even when nobody touches the event. Every
SWEEP_INTERVAL_MS it takes the events of the catalog copy in Redis, skips those whose earliest
hold is not yet due (one pipelined ZRANGE per round, compared with Redis TIME: a shortcut only,
the sweep script decides by its own clock) and drains each of the others with the sweep script,
SWEEP_BATCH holds a call, calling again while a call expires a full batch, so no single call
keeps Redis busy for long.

It is a thread of the relay process, not a step of the relay's loop: draining thousands of due
holds takes tens of script calls in a row, which in the loop would hold back every publish for
as long; on its own thread it mostly waits on Redis, and the loop's timing stays its own.
Several relays sweep at once, harmlessly: each call re-reads every order's status in one atomic
script, so a hold is expired once (one event), by whichever call meets it first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import redis

from models import seats
from models.seats import keys
from models.seats.connection import Client, node_for
from plumbing import metrics
from plumbing.settings import Settings
from relay.loop import backoff

log = logging.getLogger(__name__)

# Redis TIME is read on one node while the holds live on several (a cluster): a hold due within
# this many ms of that clock is swept now rather than skipped for a round.
CLOCK_SLACK_MS = 100


def sweep_event(r: Client, event_id: str, batch: int = 100) -> int:
    """Expire every hold of the event that is due now, at most `batch` per script call, calling
    again while a call expires a full batch; how many holds these calls expired."""
    if batch < 1:
        raise ValueError("a sweep expires at least one hold per call")
    orders = seats.orders_for(r)
    total = 0
    while True:
        expired = orders.sweep(event_id, batch)
        metrics.SWEEP_CALLS.inc()
        metrics.HOLDS_SWEPT.inc(expired)
        total += expired
        if expired < batch:
            return total


def redis_time_ms(r: Client, key: str) -> int:
    """Redis TIME in ms, read on the node that serves `key`."""
    seconds, micros = node_for(r, key).time()
    return int(seconds) * 1000 + int(micros) // 1000


def due_events(r: Client, event_ids: Sequence[str]) -> list[str]:
    """The events whose earliest hold is due by Redis TIME (within CLOCK_SLACK_MS), or whose
    holds cannot be read (the sweep script meets the same error and it is reported there)."""
    if not event_ids:
        return []
    pipe = r.pipeline(transaction=False)
    for event_id in event_ids:
        pipe.zrange(keys.holds_key(event_id), 0, 0, withscores=True)
    firsts = pipe.execute(raise_on_error=False)
    now = redis_time_ms(r, keys.holds_key(event_ids[0])) + CLOCK_SLACK_MS
    return [
        event_id
        for event_id, first in zip(event_ids, firsts, strict=True)
        if isinstance(first, Exception) or (first and first[0][1] <= now)
    ]


class Sweeper:
    """A daemon thread sweeping the catalog's events every SWEEP_INTERVAL_MS until `stop()`.

    A Redis error ends the round and the next one waits (0.1 s doubling up to 5 s, as the
    relay's loop); an error reply on one event's sweep (its data, not Redis) puts off that event
    alone, the same way, and the others are swept as usual.
    """

    def __init__(
        self, r: Client, config: Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.redis = r
        self.interval = config.sweep_interval
        self.batch = config.sweep_batch
        self.catalog_seconds = config.catalog_cache_seconds
        self.clock = clock
        self._events: list[str] = []
        self._catalog_due = float("-inf")
        self._failures = 0
        self._put_off: dict[str, tuple[int, float]] = {}  # event → (failures, retry at)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End after the round in flight."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run(self) -> None:
        log.info("sweeping expired holds every %g ms, %d a call", self.interval * 1000, self.batch)
        while not self._stop.is_set():
            self._stop.wait(self.turn())

    def turn(self) -> float:
        """One round; the pause before the next (longer after a failed round)."""
        started = self.clock()
        try:
            expired = self.sweep_round(started)
        except Exception as exc:  # a thread of its own: nothing may end the sweeping silently
            self._failures += 1
            metrics.SWEEP_FAILURES.inc()
            pause = backoff(self._failures)
            if isinstance(exc, redis.RedisError):
                log.warning("sweep round failed (%s); next round in %.1fs", exc, pause)
            else:
                log.exception("sweep round failed; next round in %.1fs", pause)
            return pause
        self._failures = 0
        if expired:
            log.info("swept %d expired holds", expired)
        return max(0.0, started + self.interval - self.clock())

    def sweep_round(self, now: float) -> int:
        """Sweep every catalog event that has a due hold; how many holds this round expired."""
        events = [e for e in self.events(now) if self._put_off.get(e, (0, now))[1] <= now]
        expired = 0
        for event_id in due_events(self.redis, events):
            try:
                expired += sweep_event(self.redis, event_id, self.batch)
            except redis.ResponseError as exc:  # an error reply: this event's state, not Redis
                self.put_off(event_id, exc)
            else:
                self._put_off.pop(event_id, None)
        return expired

    def put_off(self, event_id: str, exc: redis.ResponseError) -> None:
        """Sweep the event again only after a pause (the others go on)."""
        failures = self._put_off.get(event_id, (0, 0.0))[0] + 1
        pause = backoff(failures)
        self._put_off[event_id] = (failures, self.clock() + pause)
        metrics.SWEEP_FAILURES.inc()
        log.warning("sweep of %s failed (%s); again in %.1fs", event_id, exc, pause)

    def events(self, now: float) -> list[str]:
        """The catalog's event ids, read again every CATALOG_CACHE_SECONDS (every round while
        no catalog is loaded)."""
        if now >= self._catalog_due:
            catalog = seats.read_catalog(self.redis)
            self._events = sorted(catalog.events) if catalog else []
            self._catalog_due = now + self.catalog_seconds if catalog else now
        return self._events

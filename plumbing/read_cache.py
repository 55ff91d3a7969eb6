"""A per-process cache of short-lived answers: a TTL, a bound on entries and bytes (least
recently used out first), and single flight (concurrent misses on one key make one load).

Thread-safe: gunicorn's gthread workers serve requests on several threads of one process. An
answer is at most `ttl` seconds old when served: its age counts from the moment its load
started, so a load that took long does not stretch it. A failed load is not kept: the threads
that waited for it get the same exception, and the next request loads again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class _Entry:
    value: bytes
    expires: float


class _Flight:
    """One load in progress: the threads that missed the same key wait for its outcome."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: bytes | None = None
        self.error: BaseException | None = None

    def outcome(self) -> bytes:
        self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class ReadCache:
    """Bytes by key for `ttl` seconds, at most `max_entries` of them and `max_bytes` in all.

    `ttl` 0 turns the cache off: every `get` loads. A value larger than `max_bytes` is served
    but not kept.
    """

    def __init__(
        self,
        ttl: float,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or max_entries < 1 or max_bytes < 1:
            raise ValueError("ttl must be ≥ 0, max_entries and max_bytes ≥ 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()  # oldest use first
        self._bytes = 0
        self._flights: dict[Hashable, _Flight] = {}
        self.loads = 0  # loads started (misses that were not waiting for another's load)

    def get(self, key: Hashable, load: Callable[[], bytes]) -> bytes:
        """The kept value of `key` if younger than the TTL, else `load()`'s (one at a time)."""
        if not self.ttl:
            return load()
        with self._lock:
            now = self._clock()
            entry = self._entries.get(key)
            if entry is not None:
                if entry.expires > now:
                    self._entries.move_to_end(key)
                    return entry.value
                self._drop(key)
            flight = self._flights.get(key)
            if flight is not None:
                leader = False
            else:
                leader, flight = True, _Flight()
                self._flights[key] = flight
                self.loads += 1
        if not leader:
            return flight.outcome()
        try:
            value = load()
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                del self._flights[key]
            flight.done.set()
            raise
        flight.value = value
        with self._lock:
            del self._flights[key]
            self._keep(key, value, now + self.ttl)
        flight.done.set()
        return value

    def clear(self) -> None:
        """Forget every kept value (loads in progress finish and keep theirs)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of the kept values."""
        return self._bytes

    def _keep(self, key: Hashable, value: bytes, expires: float) -> None:
        if len(value) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = _Entry(value, expires)
        self._bytes += len(value)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: Hashable) -> None:
        self._bytes -= len(self._entries.pop(key).value)

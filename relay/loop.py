"""The relay's loop: read the outbox, publish full batches, delete what SNS took.

One loop thread. Each turn reads every outbox stream with one non-blocking XREADGROUP each (one
pipeline), and sends what it holds in PublishBatch calls of 10 once 10 are ready, or once the
oldest ready one has waited RELAY_BATCH_WINDOW_MS; the calls of one turn go out on up to
RELAY_SENDERS threads at once, and their answers are settled (delete, retry, park) by the loop
thread alone. An entry is deleted only after SNS listed it
as published. A refused entry is tried again after a pause, and parked after
RELAY_MAX_ATTEMPTS refusals (a sender fault: after two). A call that failed as a whole (timeout,
connection) says nothing about its entries: all of them are sent again after a pause, and a
duplicate is harmless (the projection is idempotent). Entries another relay read and left
unacknowledged for RELAY_CLAIM_IDLE_MS are claimed; the entries this relay holds are renewed
long before, so a live relay's work is not taken from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from botocore.exceptions import ClientError

from models.seats import outbox
from models.seats.outbox import Entry
from plumbing import metrics
from plumbing.settings import Settings
from relay.envelopes import Envelopes, Unrelayable
from relay.sns import MAX_ENTRIES, Refusal, Sns, chunks, entry_size

log = logging.getLogger(__name__)

MAX_HELD = 200  # no reads beyond this: while SNS is down the backlog stays in Redis
RETRY_FIRST = 0.1  # seconds before a failed entry or call is sent again, doubling …
RETRY_CAP = 5.0  # … up to this
GAUGE_SECONDS = 1.0  # how often the depth and age gauges are read
# error codes of a whole PublishBatch refused for what it carries (nothing published)
CONTENT_REFUSALS = frozenset({"BatchRequestTooLong", "InvalidParameter", "InvalidParameterValue"})


@dataclass
class Held:
    """An entry this relay read and has not yet published and deleted."""

    entry: Entry
    ready_at: float  # monotonic: when it may be sent (read, or its retry pause over)
    attempts: int = 0  # refusals by SNS (whole-call failures do not count)
    alone: bool = False  # in a call of its own (a whole batch was refused for its size)
    message: dict[str, Any] | None = field(default=None, repr=False)


def backoff(failures: int) -> float:
    """The pause after `failures` failures in a row."""
    return min(RETRY_CAP, RETRY_FIRST * 2 ** max(0, failures - 1))


class Relay:
    """One relay process's work: `run()` until `stop()`."""

    def __init__(
        self,
        r: Any,
        sns: Sns,
        envelopes: Envelopes,
        config: Settings,
        consumer: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = r
        self.sns = sns
        self.envelopes = envelopes
        self.config = config
        self.consumer = consumer
        self.clock = clock
        self.held: dict[tuple[str, str], Held] = {}
        self.stopping = threading.Event()
        self._call_failures = 0
        self._idle = 0.0
        self._next_claim = 0.0
        self._next_gauges = 0.0
        senders = config.relay_senders
        self._senders = ThreadPoolExecutor(senders, "sender") if senders > 1 else None
        # per stream and read: a full batch for every sender (a hot event is one stream)
        self._read_count = MAX_ENTRIES * max(1, senders)

    def stop(self) -> None:
        """Finish the call in flight, then leave `run()` (from a signal handler too)."""
        self.stopping.set()

    def holding(self) -> int:
        return len(self.held)

    def run(self) -> None:
        """Relay until stopped; then send what is held once more (no retry pauses)."""
        self._ensure_groups()
        log.info("relay %s reading %d outbox streams", self.consumer, len(outbox.outbox_streams()))
        while not self.stopping.is_set():
            self.turn()
        if self.held and not self._call_failures:
            self.send(
                [h for h in self.held.values() if h.attempts < self.config.relay_max_attempts]
            )
        log.info("relay %s stopped, %d entries left to other relays", self.consumer, len(self.held))

    def _ensure_groups(self) -> None:
        while not self.stopping.is_set():
            try:
                outbox.ensure_groups(self.redis)
                return
            except redis.RedisError as exc:
                log.warning("outbox consumer groups not ready: %s", exc)
                self.stopping.wait(1)

    def turn(self) -> None:
        """One read, the sends it makes due, and a pause when there is nothing to do."""
        now = self.clock()
        fresh = 0
        try:
            if now >= self._next_claim:
                self._next_claim = now + self.config.relay_claim_idle / 3
                fresh += self.claim(now)
            if now >= self._next_gauges:
                self._next_gauges = now + GAUGE_SECONDS
                self.update_gauges()
            if self._ready(now) < MAX_ENTRIES and len(self.held) < MAX_HELD:
                fresh += self.take(outbox.read(self.redis, self.consumer, self._read_count), now)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("outbox consumer group gone (%s): making it again", exc)
            self._ensure_groups()
            return
        except redis.RedisError as exc:
            log.warning("outbox unreadable: %s", exc)
            self.stopping.wait(1)
            return
        due = self.due(self.clock())
        if due:
            self.send(due)
            self._idle = 0.0
            return
        self.pause(fresh)

    def take(self, entries: list[Entry], now: float) -> int:
        """Hold entries just read or claimed (an entry already held is not held twice)."""
        taken = 0
        for entry in entries:
            key = (entry.stream, entry.id)
            if key not in self.held:
                self.held[key] = Held(entry, ready_at=now)
                taken += 1
        return taken

    def _ready(self, now: float) -> int:
        return sum(1 for h in self.held.values() if h.ready_at <= now)

    def due(self, now: float) -> list[Held]:
        """What to send now: every ready entry once 10 are ready or the oldest has waited the
        batching window (else nothing: more may come to fill the batch)."""
        ready = [h for h in self.held.values() if h.ready_at <= now]
        if not ready:
            return []
        if len(ready) >= MAX_ENTRIES:
            return ready
        if now - min(h.ready_at for h in ready) >= self.config.relay_batch_window:
            return ready
        return []

    def pause(self, fresh: int) -> None:
        """Sleep briefly: shortly while a batch is filling, longer (growing) when all is quiet."""
        waiting = [h.ready_at for h in self.held.values()]
        if fresh or waiting:
            self._idle = 0.0
            now = self.clock()
            until = min(waiting) if waiting else now
            if waiting and until <= now:  # a batch filling: its window ends soon
                until = until + self.config.relay_batch_window
            delay = min(max(until - now, 0.001), self.config.relay_idle_sleep)
        else:
            self._idle = min(self.config.relay_idle_sleep, max(0.001, self._idle * 2))
            delay = self._idle
        self.stopping.wait(delay)

    def send(self, ready: list[Held]) -> None:
        """Publish `ready` in full batches; delete, retry or park each entry by its outcome."""
        ready.sort(key=lambda h: h.ready_at)
        sendable: list[Held] = []
        for held in ready:
            if held.message is None:
                try:
                    held.message = self.envelopes.build(held.entry.fields)
                except Unrelayable as exc:
                    self.park(held, "UNRELAYABLE", str(exc))
                    continue
            sendable.append(held)
        together = [h for h in sendable if not h.alone]
        batches = chunks(together, lambda h: entry_size(h.message))
        batches += [[h] for h in sendable if h.alone]
        results = self._calls(batches)
        published: list[Held] = []
        failed_at: float | None = None
        for batch, result in zip(batches, results, strict=False):
            if not self.settle(batch, result, published):
                failed_at = batch[0].ready_at
        for unsent in batches[len(results) :]:  # SNS unreachable: the rest waits as long
            for held in unsent:
                held.ready_at = max(held.ready_at, failed_at or held.ready_at)
        self.delete(published)

    def _calls(self, batches: list[list[Held]]) -> list[list[Refusal | None] | Exception]:
        """One PublishBatch per batch, up to RELAY_SENDERS of them on the wire at once (the
        relay's throughput is SNS's round trip × batch, not its CPU); each call's answer, or
        the exception that ended it. One sender stops at the first failed call: the batches
        after it are not sent (no answer for them)."""
        if len(batches) > 1 and self._senders is not None:
            return list(self._senders.map(self._call, batches))
        results: list[list[Refusal | None] | Exception] = []
        for batch in batches:
            results.append(self._call(batch))
            if isinstance(results[-1], Exception):
                break
        return results

    def _call(self, batch: list[Held]) -> list[Refusal | None] | Exception:
        metrics.RELAY_BATCH_SIZE.observe(len(batch))
        started = time.perf_counter()
        try:
            return self.sns.publish_batch([h.message for h in batch])
        except Exception as exc:  # botocore and socket errors: settled by the loop's thread
            return exc
        finally:
            metrics.RELAY_PUBLISH_SECONDS.observe(time.perf_counter() - started)

    def settle(
        self, batch: list[Held], result: list[Refusal | None] | Exception, published: list[Held]
    ) -> bool:
        """What follows from one call's answer: its published entries join `published` (to be
        deleted), refused ones are retried or parked; False if the call failed as a whole."""
        if isinstance(result, ClientError):
            if self.refused_whole(batch, result):
                return True
            self.call_failed(batch, result)
            return False
        if isinstance(result, Exception):  # the outcome is unknown
            self.call_failed(batch, result)
            return False
        self._call_failures = 0
        published += [h for h, refusal in zip(batch, result, strict=True) if refusal is None]
        for held, refusal in zip(batch, result, strict=True):
            if refusal is not None:
                self.refused(held, refusal)
        return True

    def refused_whole(self, batch: list[Held], exc: ClientError) -> bool:
        """SNS refused the whole call for what it carries (AWS refuses a batch whose messages
        exceed 256 KiB together, or a lone message over the limit): nothing was published.
        Its entries go alone next, so only the culprit is refused. False for any other error
        (credentials, throttling, a server fault), which is retried as a failed call."""
        code = exc.response.get("Error", {}).get("Code", "")
        if code not in CONTENT_REFUSALS:
            return False
        self._call_failures = 0
        if len(batch) > 1:
            for held in batch:
                held.alone = True
            return True
        message = exc.response.get("Error", {}).get("Message", "")
        self.refused(batch[0], Refusal(code, message, sender_fault=True))
        return True

    def call_failed(self, batch: list[Held], exc: Exception) -> None:
        """The call failed as a whole, outcome unknown: all of it again after a pause."""
        self._call_failures += 1
        pause = backoff(self._call_failures)
        log.warning(
            "PublishBatch of %d failed (%s); sending them again in %.1fs", len(batch), exc, pause
        )
        ready_at = self.clock() + pause
        for held in batch:
            held.ready_at = ready_at

    def delete(self, published: list[Held]) -> None:
        """Acknowledge and delete published entries. If Redis fails here they stay pending
        and are claimed and published again later: a duplicate, never a loss."""
        for held in published:
            self.held.pop((held.entry.stream, held.entry.id), None)
        try:
            outbox.delete(self.redis, [h.entry for h in published])
        except redis.RedisError as exc:
            log.warning(
                "%d published entries not deleted (%s): sent again later", len(published), exc
            )

    def refused(self, held: Held, refusal: Refusal) -> None:
        held.attempts += 1
        limit = min(2, self.config.relay_max_attempts) if refusal.sender_fault else None
        if held.attempts >= (limit or self.config.relay_max_attempts):
            self.park(held, refusal.code, str(refusal))
            return
        held.ready_at = self.clock() + backoff(held.attempts)
        log.warning(
            "SNS refused outbox entry %s %s (attempt %d): %s",
            held.entry.stream,
            held.entry.id,
            held.attempts,
            refusal,
        )

    def park(self, held: Held, reason: str, detail: str) -> None:
        """Move the entry to its parked stream; it leaves this relay's hands either way."""
        entry = held.entry
        try:
            parked_id = outbox.park(self.redis, entry, detail, held.attempts)
        except redis.RedisError as exc:
            log.warning(
                "outbox entry %s %s not parked (%s): tried again", entry.stream, entry.id, exc
            )
            held.ready_at = self.clock() + RETRY_CAP
            return
        self.held.pop((entry.stream, entry.id), None)
        metrics.RELAY_PARKED.labels(reason=reason).inc()
        log.error(
            "outbox entry %s %s parked as %s after %d refusals: %s",
            entry.stream,
            entry.id,
            parked_id,
            held.attempts,
            detail,
            extra={"outcome": "PARKED"},
        )

    def claim(self, now: float) -> int:
        """Renew what this relay holds, then take over entries idle for RELAY_CLAIM_IDLE_MS."""
        outbox.renew(self.redis, self.consumer, [h.entry for h in self.held.values()])
        claimed = outbox.claim_stale(self.redis, self.consumer, self.config.relay_claim_idle)
        taken = self.take(claimed, now)
        if taken:
            log.info("claimed %d outbox entries a relay left behind", taken)
        return taken

    def update_gauges(self) -> None:
        depth, age = outbox.stats(self.redis)
        metrics.OUTBOX_DEPTH.set(depth)
        metrics.OUTBOX_AGE.set(age or 0.0)

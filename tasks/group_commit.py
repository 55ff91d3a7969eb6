"""Group commit: callers on many threads hand one item each to a batch that is written at once.

Used twice: the purchase API's SNS publisher (up to 10 messages per `PublishBatch`) and the
worker's projection (up to 10 tickets per INSERT). The caller's contract does not change: it
blocks until *its own* item has been written, and gets its own result or its own exception, so
a `201` still means "SNS has it" and a message is still acknowledged only after its row is
committed. Only throughput changes: one round trip carries up to `max_batch` items.

A sender thread takes the first waiting item, then waits at most `window` seconds for more
(or until `max_batch` are together), and calls `write(items)`. With `linger_alone=False` it
waits only while other callers are waiting too (a burst): a lone caller, at light load, is
sent at once (the purchase API: latency). By default it always waits (the worker: the
messages of one SQS receive arrive a moment apart and belong in one transaction). `write`
returns one outcome per item, in order: a value, or an exception for that item alone. If
`write` itself raises, every item of that batch gets the exception. Several sender threads let
one batch be collected while another is on the wire.

Fork safety: gunicorn and Celery's prefork pool fork after import, and threads do not survive a
fork, so the sender threads are started lazily by the first `submit` in each process.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

Writer = Callable[[list[Item]], Sequence["Result | BaseException"]]


class GroupCommitTimeout(TimeoutError):
    """The item waited longer than the caller's timeout and was withdrawn, never written."""


class GroupCommit(Generic[Item, Result]):
    """Batch items handed in by concurrent callers; each caller waits for its own outcome."""

    def __init__(
        self,
        write: Writer,
        *,
        name: str,
        max_batch: int = 10,
        window: float = 0.002,
        senders: int = 2,
        linger_alone: bool = True,
    ) -> None:
        if max_batch < 1 or window < 0 or senders < 1:
            raise ValueError("max_batch and senders must be >= 1 and window >= 0")
        self._write = write
        self.name = name
        self.max_batch = max_batch
        self.window = window
        self.senders = senders
        self.linger_alone = linger_alone
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pending: deque[tuple[Item, Future]] = deque()
        self._ready = threading.Condition()
        self._waiting = 0  # callers inside submit
        self._dense = False  # were others waiting when the latest item arrived?

    def submit(self, item: Item, timeout: float | None = None) -> Result:
        """Write `item` in a coming batch and return its outcome (or raise its exception).

        `timeout` bounds the wait for a place in a batch. If it passes while the item is still
        queued, the item is withdrawn — it will never be written — and `GroupCommitTimeout` is
        raised. Once its batch is being written the caller waits for the real outcome: `write`
        must bound its own duration (client timeouts), so no caller ever hears "failed" for an
        item that is then written after all.
        """
        future = self._put(item, waiting=True)
        try:
            try:
                return future.result(timeout)
            except FutureTimeout:
                if future.cancel():
                    raise GroupCommitTimeout(
                        f"{self.name}: not written within {timeout}s; withdrawn"
                    ) from None
            return future.result()
        finally:
            with self._ready:
                self._waiting -= 1

    def enqueue(self, item: Item) -> Future:
        """Put `item` in a coming batch without waiting; its future will hold the outcome."""
        return self._put(item, waiting=False)

    def _put(self, item: Item, *, waiting: bool) -> Future:
        self._ensure_senders()
        future: Future = Future()
        with self._ready:
            self._dense = self._waiting > 0
            self._waiting += waiting
            self._pending.append((item, future))
            # wake a sender only for a first item or a full batch: one wake-up per batch
            if len(self._pending) in (1, self.max_batch):
                self._ready.notify()
        return future

    def _ensure_senders(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            # a parent's state means nothing here (its senders did not survive the fork)
            self._pending = deque()
            self._ready = threading.Condition()
            self._waiting = 0
            for number in range(self.senders):
                threading.Thread(
                    target=self._send_forever, name=f"{self.name}-{number}", daemon=True
                ).start()
            self._pid = pid

    def _send_forever(self) -> None:
        pending, ready = self._pending, self._ready
        while True:
            with ready:
                while not pending:
                    ready.wait()
                linger = self.linger_alone or self._dense
                deadline = time.monotonic() + (self.window if linger else 0)
                while len(pending) < self.max_batch:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    ready.wait(left)
                    if not pending:  # another sender took them
                        break
                batch = [pending.popleft() for _ in range(min(self.max_batch, len(pending)))]
                if pending:
                    ready.notify()  # the rest for another sender
            batch = [entry for entry in batch if entry[1].set_running_or_notify_cancel()]
            if batch:
                self._write_batch(batch)

    def _write_batch(self, batch: list[tuple[Item, Future]]) -> None:
        try:
            outcomes = list(self._write([item for item, _ in batch]))
            if len(outcomes) != len(batch):
                raise RuntimeError(f"{self.name}: {len(outcomes)} outcomes for {len(batch)} items")
        except BaseException as exc:  # every caller of the batch must hear it
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

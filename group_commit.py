"""Group commit: callers on many threads hand one item each to a batch that is written at once.

Used twice: the purchase API's SNS publisher (up to 10 messages per `PublishBatch`) and the
worker's projection (up to 10 tickets per INSERT). The caller's contract does not change: it
blocks until *its own* item has been written, and gets its own result or its own exception, so
a `201` still means "SNS has it" and a message is still acknowledged only after its row is
committed. Only throughput changes: one round trip carries up to `max_batch` items.

A sender thread takes the first waiting item, then waits at most `window` seconds for more
(or until `max_batch` are together), and calls `write(items)`. `write` returns one outcome per
item, in order: a value, or an exception for that item alone. If `write` itself raises, every
item of that batch gets the exception. Several sender threads let one batch be collected while
another is on the wire; only one of them collects at a time, or concurrent callers would be
spread over the idle senders in batches of one or two instead of sharing one.

Fork safety: gunicorn and Celery's prefork pool fork after import, and threads do not survive a
fork, so the sender threads are started lazily by the first `submit` in each process.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
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
    ) -> None:
        if max_batch < 1 or window < 0 or senders < 1:
            raise ValueError("max_batch and senders must be >= 1 and window >= 0")
        self._write = write
        self.name = name
        self.max_batch = max_batch
        self.window = window
        self.senders = senders
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.SimpleQueue[tuple[Item, Future]] = queue.SimpleQueue()
        self._collecting = threading.Lock()

    def submit(self, item: Item, timeout: float | None = None) -> Result:
        """Write `item` in a coming batch and return its outcome (or raise its exception).

        `timeout` bounds the wait for a place in a batch. If it passes while the item is still
        queued, the item is withdrawn — it will never be written — and `GroupCommitTimeout` is
        raised. Once its batch is being written the caller waits for the real outcome: `write`
        must bound its own duration (client timeouts), so no caller ever hears "failed" for an
        item that is then written after all.
        """
        future = self.enqueue(item)
        try:
            return future.result(timeout)
        except FutureTimeout:
            if future.cancel():
                raise GroupCommitTimeout(
                    f"{self.name}: not written within {timeout}s; withdrawn"
                ) from None
        return future.result()

    def enqueue(self, item: Item) -> Future:
        """Put `item` in a coming batch without waiting; its future will hold the outcome."""
        self._ensure_senders()
        future: Future = Future()
        self._queue.put((item, future))
        return future

    def _ensure_senders(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            self._queue = queue.SimpleQueue()  # a parent's queue holds nothing for this process
            self._collecting = threading.Lock()  # nor may a parent's sender hold this one
            for number in range(self.senders):
                threading.Thread(
                    target=self._send_forever, name=f"{self.name}-{number}", daemon=True
                ).start()
            self._pid = pid

    def _send_forever(self) -> None:
        pending, collecting = self._queue, self._collecting
        while True:
            with collecting:  # the other senders write their batches meanwhile
                batch = [pending.get()]
                deadline = time.monotonic() + self.window
                while len(batch) < self.max_batch:
                    left = deadline - time.monotonic()
                    try:
                        batch.append(
                            pending.get(timeout=left) if left > 0 else pending.get_nowait()
                        )
                    except queue.Empty:
                        break
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

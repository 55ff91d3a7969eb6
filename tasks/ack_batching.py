"""Batched acks for the worker: up to 10 messages per `sqs:DeleteMessageBatch`, off Celery's loop.

With the transport option `sqs_ack_batch` (the worker's configuration), an ack does not call
`sqs:DeleteMessage` itself. Celery acknowledges on its event loop, one message after another,
and kombu's ack is a blocking DeleteMessage: one HTTP round trip per message that holds the loop
(no receiving, no dispatching meanwhile). Here the ack hands the receipt handle to a
per-process `GroupCommit` whose senders delete up to 10 per DeleteMessageBatch, and returns.
The ack still comes only after the task succeeded (its row committed); a delete that fails or
never happens (a crash) leaves the message in the queue, SQS redelivers it after the visibility
timeout, and the idempotent projection answers DUPLICATE: at-least-once, as with a
DeleteMessage that failed.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from typing import Any

from kombu.transport.SQS import Channel as SQSChannel
from kombu.transport.virtual import Channel as VirtualChannel

from plumbing import metrics
from tasks.group_commit import GroupCommit

log = logging.getLogger(__name__)
_lock = threading.Lock()


class DeleteEntryFailed(RuntimeError):
    """SQS refused this entry of a DeleteMessageBatch: the message will be redelivered."""


# (boto3 SQS client, queue URL, receipt handle)
AckEntry = tuple[Any, str, str]


def delete_batch(entries: list[AckEntry]) -> list[BaseException | None]:
    """The ack group commit's write: one DeleteMessageBatch per queue, one outcome per entry."""
    metrics.ACK_BATCH_SIZE.observe(len(entries))
    outcomes: list[BaseException | None] = [None] * len(entries)
    by_queue: dict[tuple[int, str], list[int]] = {}
    for number, (client, queue_url, _) in enumerate(entries):
        by_queue.setdefault((id(client), queue_url), []).append(number)
    for numbers in by_queue.values():
        client, queue_url, _ = entries[numbers[0]]
        try:
            response = client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": entries[n][2]} for n in numbers],
            )
        except Exception as exc:  # every entry of this call: all will be redelivered
            for n in numbers:
                outcomes[n] = exc
            continue
        for failed in response.get("Failed", []):
            outcomes[int(failed["Id"])] = DeleteEntryFailed(
                f"{failed.get('Code')}: {failed.get('Message')}"
            )
    return outcomes


_acker: GroupCommit[AckEntry, None] | None = None


def acker(options: dict[str, Any]) -> GroupCommit[AckEntry, None]:
    """The process's ack group commit (one: every channel's acks may share a batch)."""
    global _acker
    if _acker is None:
        with _lock:
            if _acker is None:
                _acker = GroupCommit(
                    delete_batch, name="sqs-ack", max_batch=10, window=options["window"]
                )
    return _acker


def _report_failed_ack(future: Future) -> None:
    if (exc := future.exception()) is not None:
        log.warning("ack not applied, SQS will redeliver the message (a DUPLICATE then): %s", exc)


class AckBatchingChannel(SQSChannel):
    """An SQS channel whose acks join a DeleteMessageBatch (when configured)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._acks_in_flight: set[Future] = set()
        super().__init__(*args, **kwargs)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        options = self.transport_options.get("sqs_ack_batch")
        try:
            delivery = self.qos.get(delivery_tag).delivery_info
            receipt_handle = delivery["sqs_message"]["ReceiptHandle"]
            queue_url = delivery["sqs_queue"]
        except KeyError:
            delivery = None
        if not options or delivery is None:
            return super().basic_ack(delivery_tag, multiple)
        queue = delivery.get("routing_key")
        client = self.sqs(queue=self.canonical_queue_name(queue) if queue else None)
        future = acker(options).enqueue((client, queue_url, receipt_handle))
        self._acks_in_flight.add(future)
        future.add_done_callback(self._acks_in_flight.discard)
        future.add_done_callback(_report_failed_ack)
        VirtualChannel.basic_ack(self, delivery_tag)  # the prefetch slot is free again

    def close(self) -> None:
        if self._acks_in_flight:  # a warm shutdown: let the acks of finished tasks go out
            wait_for_futures(list(self._acks_in_flight), timeout=10)
        super().close()

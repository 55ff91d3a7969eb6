"""kombu's SQS transport with two changes: undecodable bodies are not fatal, and SNS publishes
can be group-committed.

1. kombu 5.7 decodes `body_encoding: base64` while building the message, before Celery sees it;
   a body that is not valid base64 raises there and stops the whole worker ("Unrecoverable
   error"). One poison message would then crash every worker that receives it until SQS
   dead-letters it. Here the raw body is passed on instead: Celery fails to decode it, and
   `WorkerConsumer` rejects it for the DLQ.
2. With the transport option `sns_group_commit` (the purchase API sets it, see
   `celeryconfig.publisher_overrides`), a fanout publish does not call `sns:Publish` itself: it
   hands the string kombu built (`_put_fanout` → `kombu.utils.json.dumps(message)`, the stock
   Celery/kombu encoding, untouched) to a per-process `GroupCommit`, which sends up to 10 of
   them per `sns:PublishBatch`, and the publishing thread waits for its own entry's answer. A
   failed entry raises in its own publisher only, so only that purchase releases its seat.
3. With the transport option `sqs_ack_batch` (the worker's configuration), an ack does not
   call `sqs:DeleteMessage` itself. Celery acknowledges on its event loop, one message after
   another, and kombu's ack is a blocking DeleteMessage: one HTTP round trip per message that
   holds the loop (no receiving, no dispatching meanwhile) and was the largest CPU cost per
   ticket. Here the ack hands the receipt handle to a per-process `GroupCommit` whose senders
   delete up to 10 per `sqs:DeleteMessageBatch`, and returns. The ack still comes only after the
   task succeeded (its row committed); a delete that fails or never happens (a crash) leaves the
   message in the queue, SQS redelivers it after the visibility timeout, and the idempotent
   projection answers DUPLICATE: at-least-once, as with a DeleteMessage that failed.
"""

from __future__ import annotations

import binascii
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from typing import Any

from kombu.transport.SQS import Channel as SQSChannel
from kombu.transport.SQS import Transport as SQSTransport
from kombu.transport.SQS.SNS import SNS as SnsFanout
from kombu.transport.virtual import Channel as VirtualChannel

import metrics
from group_commit import GroupCommit

log = logging.getLogger(__name__)


class PublishEntryFailed(RuntimeError):
    """SNS refused this entry of a PublishBatch (the others may have been accepted)."""


_batchers: dict[tuple, GroupCommit[dict[str, Any], str]] = {}
_batchers_lock = threading.Lock()


def _publish_batch_writer(topic_arn: str, client: Any) -> Callable:
    """The write function of a topic's group commit: one PublishBatch, one outcome per entry."""

    def write(entries: list[dict[str, Any]]) -> list[str | BaseException]:
        metrics.PUBLISH_BATCH_SIZE.observe(len(entries))
        response = client.publish_batch(
            TopicArn=topic_arn,
            PublishBatchRequestEntries=[
                {"Id": str(number), **entry} for number, entry in enumerate(entries)
            ],
        )
        accepted = {ok["Id"]: ok["MessageId"] for ok in response.get("Successful", [])}
        refused = {bad["Id"]: bad for bad in response.get("Failed", [])}
        outcomes: list[str | BaseException] = []
        for number in range(len(entries)):
            entry_id = str(number)
            if entry_id in accepted:
                outcomes.append(accepted[entry_id])
            else:
                why = refused.get(entry_id, {"Code": "Missing", "Message": "no answer for entry"})
                outcomes.append(
                    PublishEntryFailed(
                        f"SNS refused the entry: {why.get('Code')}: {why.get('Message')}"
                    )
                )
        return outcomes

    return write


def batcher_for(topic_arn: str, client: Any, options: dict[str, Any]) -> GroupCommit:
    """The process's group commit for `topic_arn` at `client`'s endpoint (its first client's).

    One per process, not per kombu channel: the purchase threads publish through different
    pooled connections, and only a shared batch lets their messages travel together.
    """
    key = (topic_arn, client.meta.endpoint_url, tuple(sorted(options.items())))
    batcher = _batchers.get(key)
    if batcher is None:
        with _batchers_lock:
            batcher = _batchers.get(key)
            if batcher is None:
                batcher = _batchers[key] = GroupCommit(
                    _publish_batch_writer(topic_arn, client),
                    name="sns-publish-batch",
                    max_batch=options["max_batch"],
                    window=options["window"],
                    senders=options["senders"],
                    linger_alone=False,  # a lone purchase does not wait for company
                )
    return batcher


class GroupCommitFanout(SnsFanout):
    """kombu's SNS fanout whose `publish` joins a PublishBatch instead of calling Publish."""

    def __init__(self, channel: SQSChannel, options: dict[str, Any]) -> None:
        super().__init__(channel)
        self.options = options
        self._batchers: dict[str, GroupCommit] = {}  # by exchange: no registry lookup per publish

    def publish(
        self,
        exchange_name: str,
        message: str,
        message_attributes: dict | None = None,
        request_params: dict | None = None,
    ) -> None:
        topic_arn = self._get_or_create_topic(exchange_name)
        entry: dict[str, Any] = {"Message": message, **(request_params or {})}
        if attributes := self.serialise_message_attributes(message_attributes):
            entry["MessageAttributes"] = attributes
        batcher = self._batchers.get(exchange_name)
        if batcher is None:
            batcher = self._batchers[exchange_name] = batcher_for(
                topic_arn, self.get_client(exchange_name), self.options
            )
        batcher.submit(entry, timeout=self.options["timeout"])


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
        with _batchers_lock:
            if _acker is None:
                _acker = GroupCommit(
                    delete_batch, name="sqs-ack", max_batch=10, window=options["window"]
                )
    return _acker


def _report_failed_ack(future: Future) -> None:
    if (exc := future.exception()) is not None:
        log.warning("ack not applied, SQS will redeliver the message (a DUPLICATE then): %s", exc)


class Channel(SQSChannel):
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

    def decode_body(self, body: Any, encoding: str | None = None) -> Any:
        try:
            return super().decode_body(body, encoding)
        except (binascii.Error, ValueError, TypeError) as exc:
            log.error("message body is not valid %s (%s); passing it on raw", encoding, exc)
            return body

    @property
    def fanout(self) -> SnsFanout:
        if self._fanout is None:
            options = self.transport_options.get("sns_group_commit")
            self._fanout = GroupCommitFanout(self, options) if options else SnsFanout(self)
        return self._fanout


class Transport(SQSTransport):
    Channel = Channel

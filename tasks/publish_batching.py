"""Group-committed SNS publishes for the purchase API: concurrent publishes share a PublishBatch.

With the transport option `sns_group_commit` (`celeryconfig.publisher_overrides`), a fanout
publish does not call `sns:Publish` itself: it hands the string kombu built (`_put_fanout` →
`kombu.utils.json.dumps(message)`, the stock Celery/kombu encoding, untouched) to a per-process
`GroupCommit`, which sends up to 10 of them per `sns:PublishBatch`, and the publishing thread
waits for its own entry's answer. A failed entry raises in its own publisher only, so only that
purchase releases its seat.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kombu.transport.SQS import Channel as SQSChannel
from kombu.transport.SQS import Transport as SQSTransport
from kombu.transport.SQS.SNS import SNS as SnsFanout

from plumbing import metrics
from tasks.group_commit import GroupCommit


class PublishEntryFailed(RuntimeError):
    """SNS refused this entry of a PublishBatch (the others may have been accepted)."""


_batchers: dict[tuple, GroupCommit[dict[str, Any], str]] = {}
_lock = threading.Lock()


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
        with _lock:
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


class PublishBatchingChannel(SQSChannel):
    """An SQS channel whose SNS fanout group-commits its publishes (when configured)."""

    @property
    def fanout(self) -> SnsFanout:
        if self._fanout is None:
            options = self.transport_options.get("sns_group_commit")
            self._fanout = GroupCommitFanout(self, options) if options else SnsFanout(self)
        return self._fanout


class PublishingTransport(SQSTransport):
    """The purchase API's transport: publish only, batched."""

    Channel = PublishBatchingChannel

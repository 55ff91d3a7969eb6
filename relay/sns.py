"""SNS PublishBatch for the relay: plain botocore, lean, one attempt per call.

`parameter_validation=False` and no awscrt (relay/__init__.py) make botocore's client cheap; a
full batch of 10 spreads the rest over ten messages. botocore does not retry: the relay's loop
decides what to send again, and when. The endpoint comes from botocore's standard variables
(`AWS_ENDPOINT_URL_SNS` / `AWS_ENDPOINT_URL`: moto locally, unset on AWS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.config import Config

from relay import form_body

MAX_ENTRIES = 10  # SNS's limit per PublishBatch
MAX_REQUEST_BYTES = 262_144  # SNS's limit on the messages of one PublishBatch, all together


@dataclass(frozen=True)
class Refusal:
    """SNS did not publish one entry of a batch."""

    code: str
    message: str
    sender_fault: bool

    def __str__(self) -> str:
        fault = "sender" if self.sender_fault else "server"
        return f"{self.code} ({fault} fault): {self.message}"


def entry_size(entry: dict[str, Any]) -> int:
    """What an entry counts towards MAX_REQUEST_BYTES (its message; attributes are small)."""
    return len(entry["Message"].encode())


class Sns:
    """One topic's PublishBatch through a botocore client of its own."""

    def __init__(
        self,
        topic_arn: str,
        region: str,
        connect_timeout: float,
        read_timeout: float,
        senders: int = 1,
    ) -> None:
        self.topic_arn = topic_arn
        config = Config(
            parameter_validation=False,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max(2, senders),
        )
        session = botocore.session.get_session()
        self.client = session.create_client("sns", region_name=region, config=config)
        self.client.meta.events.register("before-sign.sns.PublishBatch", form_body.encode_once)

    def publish_batch(self, entries: list[dict[str, Any]]) -> list[Refusal | None]:
        """Publish up to MAX_ENTRIES entries: per entry, None when SNS published it, else why
        not. Raises (botocore, socket errors) when the call itself failed: nothing is known."""
        response = self.client.publish_batch(
            TopicArn=self.topic_arn,
            PublishBatchRequestEntries=[
                {"Id": str(number), **entry} for number, entry in enumerate(entries)
            ],
        )
        published = {ok["Id"] for ok in response.get("Successful", [])}
        refused = {bad["Id"]: bad for bad in response.get("Failed", [])}
        outcomes: list[Refusal | None] = []
        for number in range(len(entries)):
            entry_id = str(number)
            if entry_id in published:
                outcomes.append(None)
                continue
            why = refused.get(entry_id, {})
            outcomes.append(
                Refusal(
                    code=str(why.get("Code", "Missing")),
                    message=str(why.get("Message", "not listed in the answer")),
                    sender_fault=bool(why.get("SenderFault", False)),
                )
            )
        return outcomes


def chunks(entries: list[Any], size_of: Any) -> list[list[Any]]:
    """Batches of at most MAX_ENTRIES items and MAX_REQUEST_BYTES together, in order; an item
    larger than that on its own goes alone, last (SNS refuses it, not its batch-mates)."""
    batches: list[list[Any]] = []
    alone: list[list[Any]] = []
    current: list[Any] = []
    current_bytes = 0
    for item in entries:
        size = size_of(item)
        if size > MAX_REQUEST_BYTES:
            alone.append([item])
            continue
        if current and (len(current) >= MAX_ENTRIES or current_bytes + size > MAX_REQUEST_BYTES):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += size
    if current:
        batches.append(current)
    return batches + alone

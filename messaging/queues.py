"""SQS queues seen from outside the worker: their depths, and waiting for one to drain.

Plain boto3 on the standard endpoint variables (moto locally, AWS in production); it never
builds a Celery app, so the events API and the CLI can use it.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from plumbing import settings
from plumbing.waiting import until_steady

log = logging.getLogger(__name__)


@cache
def sqs() -> Any:
    """An SQS client with the broker's short timeouts."""
    s = settings.get()
    config = Config(
        connect_timeout=s.broker_connect_timeout,
        read_timeout=s.broker_read_timeout,
        retries={"total_max_attempts": 2, "mode": "standard"},
    )
    return boto3.client("sqs", region_name=s.aws_region, config=config)


def depths(queue_url: str) -> dict[str, int]:
    """Visible, in-flight and delayed message counts of one queue (SQS's approximations)."""
    attributes = sqs().get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return {
        "visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "inFlight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        "delayed": int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    }


def is_drained(queue_url: str) -> bool:
    """Nothing visible, in flight or delayed."""
    return sum(depths(queue_url).values()) == 0


def wait_for_drain(queue_url: str, timeout: float, confirmations: int = 2) -> bool:
    """Wait until the queue reads empty `confirmations` times in a row, a second apart."""
    return until_steady(lambda: is_drained(queue_url), timeout, confirmations)

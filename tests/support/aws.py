"""Test support: SNS/SQS on moto server — a direct-to-queue task sender, queue counts, a tap
queue on the topic."""

from __future__ import annotations

import os
import uuid
from typing import Any


def direct_sender(queue_url: str, topic_name: str) -> Any:
    """A Celery app that sends task messages straight to one SQS queue, as the worker's own
    retries do (same exchange name as the worker's config, so retries route back to it)."""
    from celery import Celery
    from kombu import Exchange, Queue

    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    app = Celery(f"sender-{name}", set_as_current=False)
    app.conf.update(
        broker_url="sqs://",
        broker_transport_options={
            "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "predefined_queues": {name: {"url": queue_url}},
            "sqs_base64_encoding": False,
        },
        task_queues=[Queue(name, Exchange(topic_name, type="direct"), routing_key=name)],
        task_default_queue=name,
        task_default_exchange=topic_name,
        task_default_routing_key=name,
        task_ignore_result=True,
    )
    return app


def queue_counts(queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    import boto3

    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def tap_queue(topic_arn: str) -> str:
    """A new queue subscribed raw to the topic: it receives a copy of every publish."""
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"tap-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    boto3.client("sns").subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return url


def receive_all(queue_url: str) -> list[str]:
    """Receive and delete whatever is visible now; the message bodies."""
    import boto3

    sqs = boto3.client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

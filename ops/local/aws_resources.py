"""Create the messaging resources the way Terraform does: topic → raw subscription → queue → DLQ.

Used by `make run` and `make test` against moto server (AWS_ENDPOINT_URL). Idempotent: SNS and
SQS return the existing topic or queue when the attributes match.

    python ops/local/aws_resources.py [--prefix NAME] [--visibility-timeout S] [--max-receive N]

prints the environment lines (TICKET_TOPIC_ARN, TICKET_QUEUE_URL, TICKET_DLQ_URL) to use.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import boto3

DEFAULT_VISIBILITY_TIMEOUT = 60  # above TASK_RETRY_BACKOFF_CAP (20 s), see celeryconfig
DEFAULT_MAX_RECEIVE_COUNT = 5


@dataclass(frozen=True)
class Messaging:
    topic_arn: str
    queue_url: str
    dead_letter_queue_url: str

    def env(self) -> dict[str, str]:
        return {
            "TICKET_TOPIC_ARN": self.topic_arn,
            "TICKET_QUEUE_URL": self.queue_url,
            "TICKET_DLQ_URL": self.dead_letter_queue_url,
        }


def create_messaging(
    prefix: str = "ticket",
    *,
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
    max_receive_count: int = DEFAULT_MAX_RECEIVE_COUNT,
    region: str | None = None,
) -> Messaging:
    """Topic `<prefix>-events`, queue `<prefix>-sql` with DLQ `<prefix>-sql-dlq`, subscribed raw."""
    sns = boto3.client("sns", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    topic_arn = sns.create_topic(Name=f"{prefix}-events")["TopicArn"]
    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-sql-dlq", Attributes={"MessageRetentionPeriod": "1209600"}
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(QueueName=f"{prefix}-sql")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "topic-sends",
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "ReceiveMessageWaitTimeSeconds": "10",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            ),
            "Policy": json.dumps(policy),
        },
    )
    subscribed = any(
        s["Endpoint"] == queue_arn
        for s in sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    )
    if not subscribed:
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
    return Messaging(topic_arn, queue_url, dlq_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="ticket")
    parser.add_argument("--visibility-timeout", type=int, default=DEFAULT_VISIBILITY_TIMEOUT)
    parser.add_argument("--max-receive", type=int, default=DEFAULT_MAX_RECEIVE_COUNT)
    args = parser.parse_args()
    messaging = create_messaging(
        args.prefix, visibility_timeout=args.visibility_timeout, max_receive_count=args.max_receive
    )
    for key, value in messaging.env().items():
        print(f"{key}={value}")


if __name__ == "__main__":
    main()

"""Celery configuration: SQS is the broker, the SNS topic is a fanout exchange in front of it.

Terraform (and `ops/local/aws.py` locally) owns the topic, the queue, its DLQ and redrive
policy, and the raw-delivery subscription. The processes only use them:

* the worker (this module as it stands) knows the queue as a predefined queue bound to a
  *direct* exchange named like the topic. It never calls SNS Subscribe or edits the queue policy,
  creates nothing, and a `self.retry()` is sent straight to its own queue, not through the topic
  (through the topic a retry would reach every subscribed queue);
* the relay (relay/envelopes.py) applies `publisher_overrides()`: the same exchange name as a
  *fanout* exchange mapped to the topic ARN, so a task message is what kombu would send to SNS.

The endpoint comes from botocore's standard `AWS_ENDPOINT_URL` (moto locally, unset on AWS).

Flower and `celery inspect` run this app against the monitoring plane's Redis
(`celery --app tasks --broker redis://… flower`): there the transport options are the monitoring
plane's (`monitor_transport_options()`), never the SQS ones.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from kombu import Exchange, Queue
from kombu.transport import TRANSPORT_ALIASES

from plumbing import settings

_s = settings.get()


class QueueNames:
    """The SQS queues the workers consume; the names come from the configured queue URLs."""

    TICKETS = _s.queue_name

    @classmethod
    def all(cls) -> list[str]:
        return [cls.TICKETS]


class TaskNames:
    PERSIST_TICKET = "tasks.tickets.persist_ticket"
    APPLY_ORDER = "tasks.orders.apply_order"
    RECORD_LATE_PAYMENT = "tasks.orders.record_late_payment"


def _client_config() -> dict[str, Any]:
    # Short timeouts and one retry: a purchase must answer 503 quickly when SNS is unreachable.
    return {
        "connect_timeout": _s.broker_connect_timeout,
        "read_timeout": _s.broker_read_timeout,
        "retries": {"total_max_attempts": 2, "mode": "standard"},
    }


# kombu's SQS transport with the worker's changes (tasks/transport.py), under a scheme of its own:
# `broker_transport` would also take over a `--broker redis://` given to Flower.
TRANSPORT_ALIASES.setdefault("sqs-tickets", "tasks.transport:Transport")
broker_url = "sqs-tickets://"
broker_connection_retry_on_startup = True
_sqs_transport_options: dict[str, Any] = {
    "region": _s.aws_region,
    # kombu never lists or creates queues when they are predefined.
    "predefined_queues": {QueueNames.TICKETS: {"url": _s.queue_url}},
    "wait_time_seconds": 10,  # long polling …
    "polling_interval": 0,  # … and no sleep on top of it
    "sqs_base64_encoding": False,  # a retry's body looks like an SNS raw delivery
    # acks leave Celery's event loop at once and are deleted 10 per DeleteMessageBatch, after
    # at most 2 ms of collecting (tasks/ack_batching.py)
    "sqs_ack_batch": {"window": 0.002},
    "client-config": _client_config(),
}


def monitor_transport_options() -> dict[str, Any]:
    """kombu's Redis transport options for the monitoring plane (events, remote control): the
    worker's connections to it and Flower's.

    A Redis that accepts and never answers must fail a call, not hang it: socket and connect
    timeouts. A subscription (remote control, Flower's events) reads nothing while all is quiet,
    so a connection that died silently is found by a PING on it every
    MONITOR_HEALTH_CHECK_SECONDS of silence (kombu drops it after two unanswered ones).
    """
    return {
        "socket_timeout": _s.redis_socket_timeout,
        "socket_connect_timeout": _s.redis_socket_timeout,
        "socket_keepalive": True,
        "health_check_interval": _s.monitor_health_check_seconds,
    }


def _broker_is_redis() -> bool:
    # `celery --broker URL` puts URL into CELERY_BROKER_URL, which Celery prefers to broker_url
    broker = os.environ.get("CELERY_BROKER_URL") or broker_url
    return urlsplit(broker).scheme in ("redis", "rediss")


# The SQS options must not follow the app onto Redis: kombu's Redis transport takes
# `polling_interval` as its BRPOP timeout, where 0 means "block forever". Each of Flower's pooled
# connections would then read one remote-control reply and never another: later inspects time
# out, and Flower's worker pages stay empty.
broker_transport_options = (
    monitor_transport_options() if _broker_is_redis() else _sqs_transport_options
)

tickets_exchange = Exchange(_s.topic_name, type="direct")
task_queues = [Queue(QueueNames.TICKETS, tickets_exchange, routing_key=QueueNames.TICKETS)]
task_default_queue = QueueNames.TICKETS
task_default_exchange = _s.topic_name
task_default_routing_key = QueueNames.TICKETS

task_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None

# At-least-once: ack after the task ran; a lost worker's message comes back; a failed task is
# rejected, not acked, so SQS redelivers it and its redrive policy moves it to the DLQ.
task_acks_late = True
task_reject_on_worker_lost = True
task_acks_on_failure = False
# prefetch = concurrency (Procfile: --pool threads --concurrency 20). kombu's SQS channel asks each
# ReceiveMessage for min(10, prefetch - unacked) messages, so an idle worker takes 10 at once
# (and 10 more while they are written), and their tasks share a transaction (tasks/tickets.py).
worker_prefetch_multiplier = 1
# undecodable → DLQ, not deleted; events over Redis (tasks/consumer.py)
worker_consumer = "tasks.consumer:WorkerConsumer"

# SQS carries neither events nor remote control. Celery's own remote control stays off (it would
# ask for pidbox queues that are not predefined); events and remote control travel over Redis
# instead (tasks/consumer.py, tasks/monitoring.py), for Flower.
worker_enable_remote_control = False
worker_send_task_events = True
task_send_sent_event = False  # the purchase API would need a Redis publish per purchase
worker_hijack_root_logger = False
broker_heartbeat = 0


def publisher_overrides() -> dict[str, Any]:
    """What a producer of task messages (the relay) changes: publish to the topic as a fanout
    exchange."""
    topic = Exchange(_s.topic_name, type="fanout")
    options = dict(_sqs_transport_options)
    options["supports_fanout"] = True
    options["predefined_exchanges"] = {_s.topic_name: {"arn": _s.topic_arn}}
    return {
        "broker_url": "sqs://",
        "broker_transport_options": options,
        "task_queues": [],
        "task_routes": {
            name: {"exchange": topic, "routing_key": QueueNames.TICKETS}
            for name in (
                TaskNames.PERSIST_TICKET,
                TaskNames.APPLY_ORDER,
                TaskNames.RECORD_LATE_PAYMENT,
            )
        },
        # the relay sends the messages itself; Celery never retries a publish
        "task_publish_retry": False,
    }

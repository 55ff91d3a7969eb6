"""Publishing the ticket event: a Celery task message sent to the SNS topic as a fanout exchange.

The purchase API has a Celery app of its own, configured from `celeryconfig` plus
`publisher_overrides()`; it never imports the task code and never consumes. A publish is
synchronous: when `publish_ticket` returns, SNS has the message, and a 201 may be answered.
Concurrent purchases of one process share an `sns:PublishBatch` of up to PUBLISH_BATCH_MAX
messages (group commit, `tasks/publish_batching.py`); each waits for its own entry's answer, and an
entry SNS refused fails only its own purchase, which releases its own seat.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import Celery
from kombu import Exchange

from celeryconfig import QueueNames, TaskNames, publisher_overrides
from plumbing import logs, metrics, settings

log = logging.getLogger(__name__)


class PublishFailed(RuntimeError):
    """The broker did not take the message; the caller must release the seat."""


@cache
def publisher_app() -> Celery:
    """The producer-only Celery app of this process."""
    app = Celery("ticketing-publisher", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(publisher_overrides())
    return app


@cache
def _topic() -> Exchange:
    return Exchange(settings.get().topic_name, type="fanout")


def publish_ticket(ticket: dict[str, Any]) -> str:
    """Send the persist task for `ticket` through the topic; return the task id.

    Raises PublishFailed if SNS did not acknowledge it. The exchange is declared on every
    publish (a no-op after the first): kombu silently drops a publish to an undeclared exchange.
    """
    topic = _topic()
    try:
        kwargs = {"ticket": ticket}
        with metrics.PUBLISH_SECONDS.time():
            result = publisher_app().send_task(
                TaskNames.PERSIST_TICKET,
                kwargs=kwargs,
                # the builtin repr of flat JSON data: Celery's own saferepr walks it in Python,
                # the costliest step of building the message
                kwargsrepr=repr(kwargs),
                exchange=topic,
                routing_key=QueueNames.TICKETS,
                declare=[topic],
                task_id=ticket["ticketId"],
                headers={"request_id": logs.request_id.get()},
            )
    except Exception as exc:  # botocore, kombu and socket errors all mean the same here
        raise PublishFailed(f"publish of ticket {ticket['ticketId']} failed: {exc}") from exc
    return result.id


def warm_up() -> None:
    """Create the SNS client and declare the exchange now, not on the first buyer's request."""
    app = publisher_app()
    with app.producer_or_acquire() as producer:
        _topic()(producer.channel).declare()


def broker_reachable() -> bool:
    """Cheap broker check for health: the topic's attributes can be read."""
    app = publisher_app()
    try:
        with app.producer_or_acquire() as producer:
            sns = producer.channel.fanout.get_client(settings.get().topic_name)
            sns.get_topic_attributes(TopicArn=settings.get().topic_arn)
        return True
    except Exception as exc:
        log.warning("broker check failed: %s", exc)
        return False

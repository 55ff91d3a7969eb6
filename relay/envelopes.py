"""Outbox entries → the exact PublishBatch entries of the Celery task messages.

The relay does not imitate Celery's envelope: it sends the task through Celery's and kombu's
stock publish path (`send_task` → `as_task_v2` → `Producer.publish` → the SQS channel's
`basic_publish` → `_put_fanout`), on a transport whose SNS fanout keeps the string kombu built
instead of calling `sns:Publish`. What the relay sends is what a stock `send_task` through kombu's
SNS fanout would send for the same ticket (tests/test_relay.py compares them); the worker
consumes it unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from celery import Celery
from kombu import Exchange
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.SQS import Channel as SQSChannel
from kombu.transport.SQS import Transport as SQSTransport
from kombu.transport.SQS.SNS import SNS as SnsFanout

from models.seats import outbox

# A ticket event (`kind=ticket`, `ticket`, `rid`): the one-seat sale of an older release, which
# the sale now appends as an order; entries of that kind still become `persist_ticket` tasks.
# An order event (the box office and the one-seat sale): `kind=order`, `order` = the order's
# full snapshot as JSON (with its `version`), `rid` = the request id. It becomes the task
# `tasks.orders.apply_order` with kwargs {"order": <the snapshot>} and task id
# `<orderId>:<version>`.
KIND_ORDER = "order"
ORDER = "order"
# A LATE_PAYMENT_REJECTED event: `kind=late_payment_rejected`, `payment` = JSON {"orderId",
# "eventId", "paymentId", "amount", "currency", "rejectedOn"}, `rid`. It becomes the task
# `tasks.orders.record_late_payment` with kwargs {"payment": …}, task id `late-payment:<paymentId>`.
KIND_LATE_PAYMENT = "late_payment_rejected"
PAYMENT = "payment"

TRANSPORT_ALIASES.setdefault("sqs-relay", "relay.envelopes:CapturingTransport")


class Unrelayable(ValueError):
    """The entry cannot become a task message (unknown kind, unreadable ticket): it is parked."""


class CapturingFanout(SnsFanout):
    """kombu's SNS fanout whose `publish` keeps the PublishBatch entry instead of sending it."""

    def __init__(self, channel: SQSChannel) -> None:
        super().__init__(channel)
        self.captured: list[dict[str, Any]] = []

    def publish(
        self,
        exchange_name: str,
        message: str,
        message_attributes: dict | None = None,
        request_params: dict | None = None,
    ) -> None:
        entry: dict[str, Any] = {"Message": message, **(request_params or {})}
        if attributes := self.serialise_message_attributes(message_attributes):
            entry["MessageAttributes"] = attributes
        self.captured.append(entry)


class CapturingChannel(SQSChannel):
    """An SQS channel whose fanout publishes are captured."""

    @property
    def fanout(self) -> SnsFanout:
        if self._fanout is None:
            self._fanout = CapturingFanout(self)
        return self._fanout


class CapturingTransport(SQSTransport):
    """The relay's transport: builds messages, sends nothing itself."""

    Channel = CapturingChannel


def relay_app() -> Celery:
    """A producer-only Celery app: `celeryconfig.publisher_overrides()` (the topic as a fanout
    exchange) on the capturing transport."""
    from celeryconfig import publisher_overrides

    app = Celery("ticketing-relay", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update({**publisher_overrides(), "broker_url": "sqs-relay://"})
    return app


class Envelopes:
    """Builds the PublishBatch entry (`Message` and attributes) of outbox entries."""

    def __init__(self, app: Celery | None = None) -> None:
        from celeryconfig import QueueNames, TaskNames
        from plumbing import settings

        self.app = app or relay_app()
        self.task_name = TaskNames.PERSIST_TICKET
        self.order_task_name = TaskNames.APPLY_ORDER
        self.late_payment_task_name = TaskNames.RECORD_LATE_PAYMENT
        self.routing_key = QueueNames.TICKETS
        self.topic = Exchange(settings.get().topic_name, type="fanout")
        self.connection = self.app.connection_for_write()
        self.producer = self.app.amqp.Producer(self.connection.default_channel)
        self._fanout: CapturingFanout = self.producer.channel.fanout
        # declared once: kombu's SQS channel then knows the exchange as the topic's fanout (a
        # publish to an undeclared exchange goes nowhere); declaring it on every send cost a
        # fifth of building a message
        self.topic(self.producer.channel).declare()

    def build(self, fields: dict[str, str]) -> dict[str, Any]:
        """The PublishBatch entry (without its Id) of one outbox entry; Unrelayable if none."""
        kind = fields.get(outbox.KIND)
        if kind == KIND_ORDER:
            return self._order(fields)
        if kind == KIND_LATE_PAYMENT:
            return self._late_payment(fields)
        if kind != outbox.KIND_TICKET:
            raise Unrelayable(f"unknown kind {kind!r}")
        try:
            ticket = json.loads(fields[outbox.TICKET])
            ticket_id = ticket["ticketId"]
        except (KeyError, TypeError, ValueError) as exc:
            raise Unrelayable(f"unreadable ticket: {exc!r}") from exc
        if not isinstance(ticket_id, str):
            raise Unrelayable(f"ticketId is not a string: {ticket_id!r}")
        kwargs = {"ticket": ticket}
        self.app.send_task(
            self.task_name,
            kwargs=kwargs,
            # the builtin repr of flat JSON data: Celery's saferepr walks it in Python, slowly
            kwargsrepr=repr(kwargs),
            exchange=self.topic,
            routing_key=self.routing_key,
            task_id=ticket_id,
            headers={"request_id": fields.get(outbox.REQUEST_ID) or None},
            producer=self.producer,
        )
        return self._fanout.captured.pop()

    def _order(self, fields: dict[str, str]) -> dict[str, Any]:
        try:
            order = json.loads(fields[ORDER])
            order_id, version = order["orderId"], order["version"]
        except (KeyError, TypeError, ValueError) as exc:
            raise Unrelayable(f"unreadable order: {exc!r}") from exc
        if not isinstance(order_id, str) or not isinstance(version, int):
            raise Unrelayable(f"orderId/version of the wrong type: {order_id!r}, {version!r}")
        # one id per version: a redelivered event keeps its id, the next version has its own
        return self._send(self.order_task_name, {"order": order}, f"{order_id}:{version}", fields)

    def _late_payment(self, fields: dict[str, str]) -> dict[str, Any]:
        try:
            payment = json.loads(fields[PAYMENT])
            payment_id = payment["paymentId"]
        except (KeyError, TypeError, ValueError) as exc:
            raise Unrelayable(f"unreadable payment: {exc!r}") from exc
        if not isinstance(payment_id, str):
            raise Unrelayable(f"paymentId is not a string: {payment_id!r}")
        task_id = f"late-payment:{payment_id}"
        return self._send(self.late_payment_task_name, {"payment": payment}, task_id, fields)

    def _send(
        self, task: str, kwargs: dict[str, Any], task_id: str, fields: dict[str, str]
    ) -> dict[str, Any]:
        self.app.send_task(
            task,
            kwargs=kwargs,
            kwargsrepr=repr(kwargs),
            exchange=self.topic,
            routing_key=self.routing_key,
            task_id=task_id,
            headers={"request_id": fields.get(outbox.REQUEST_ID) or None},
            producer=self.producer,
        )
        return self._fanout.captured.pop()

"""Order events from the outbox to MySQL through the real relay, moto's SNS and SQS, and the real
Celery worker: reordered and repeated events end at the newest version, and an order whose seat
is still live in MySQL for another order is retried until that order's closing event arrives."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sns_standin
from sqlalchemy import select

import models
from models.seats import keys
from models.tables import LatePayment, Order, Ticket
from relay.envelopes import Envelopes, Unrelayable
from tests.support.factories import late_payment_message, next_version, order_message
from tests.support.outbox import parked, stream_lengths
from tests.support.processes import wait_until


def add_order(r: Any, order: dict[str, Any], request_id: str = "") -> str:
    """XADD the order event the box office's scripts write: kind=order, the full snapshot."""
    stream = keys.outbox_stream(keys.bucket(order["eventId"]))
    return r.xadd(stream, {"kind": "order", "order": json.dumps(order), "rid": request_id})


def projected(order_id: str) -> tuple[str, int] | None:
    with models.writer().connect() as conn:
        row = conn.execute(
            select(Order.status, Order.version).where(Order.order_id == order_id)
        ).first()
    return (row.status, row.version) if row else None


def ticket_statuses(order: dict[str, Any]) -> list[str]:
    ids = [s["ticketId"] for s in order["seats"]]
    with models.writer().connect() as conn:
        return sorted(conn.scalars(select(Ticket.status).where(Ticket.ticket_id.in_(ids))))


def test_an_order_event_is_the_apply_order_task_with_its_version_in_the_id():
    order = order_message(version=4, status="PAID", payment_id="pay-x")
    entry = Envelopes().build({"kind": "order", "order": json.dumps(order), "rid": "r-1"})
    task = sns_standin.decode_task(entry["Message"])
    assert task["task"] == "tasks.orders.apply_order"
    assert task["id"] == f"{order['orderId']}:4"
    assert task["kwargs"] == {"order": order}


def test_a_late_payment_event_is_the_record_late_payment_task():
    payment = late_payment_message(order_message(), "pay-late")
    entry = Envelopes().build(
        {"kind": "late_payment_rejected", "payment": json.dumps(payment), "rid": ""}
    )
    task = sns_standin.decode_task(entry["Message"])
    assert task["task"] == "tasks.orders.record_late_payment"
    assert task["id"] == "late-payment:pay-late"
    assert task["kwargs"] == {"payment": payment}


@pytest.mark.parametrize("text", ["{not json", "[]", '{"orderId": "o"}', '{"version": 1}'])
def test_an_unreadable_order_entry_is_unrelayable(text):
    with pytest.raises(Unrelayable):
        Envelopes().build({"kind": "order", "order": text, "rid": ""})


@pytest.mark.worker
def test_reordered_and_repeated_order_events_reach_mysql_at_the_newest_version(
    redis_client, clean_tickets, pipeline_worker, pipeline_relay
):
    held = order_message(seats=[("K", "1"), ("K", "2")], buyer="buyer-e2e")
    paid = next_version(held, "PAID", paymentId="pay-e2e")
    for event in (paid, held, paid, held):  # v2 first, then v1, each twice
        add_order(redis_client, event, request_id="rid-order")
    wait_until(lambda: projected(held["orderId"]) == ("PAID", 2), 60, "the order in MySQL")
    order_id = held["orderId"]

    def outcomes(outcome: str) -> int:
        return sum(
            pipeline_worker.count(f"order {order_id} v{v} {status}: {outcome}")
            for v, status in ((1, "HELD"), (2, "PAID"))
        )

    # the four deliveries run on the worker's threads at once: whichever lands first inserts the
    # order, a v1 after v2 is stale, and each repetition is stale
    wait_until(
        lambda: sum(outcomes(o) for o in ("INSERTED", "UPDATED", "STALE")) >= 4,
        30,
        "every delivery applied or found stale",
    )
    assert outcomes("INSERTED") == 1
    assert outcomes("UPDATED") <= 1
    assert projected(order_id) == ("PAID", 2)
    assert ticket_statuses(held) == ["PAID", "PAID"]
    wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
    assert parked(redis_client) == []


@pytest.mark.worker
def test_a_seat_still_live_for_another_order_is_retried_until_it_is_freed(
    redis_client, clean_tickets, pipeline_worker, pipeline_relay
):
    first = order_message(seats=[("L", "1")], buyer="buyer-first")
    add_order(redis_client, first)
    wait_until(lambda: projected(first["orderId"]) == ("HELD", 1), 60, "the first hold")
    second = order_message(seats=[("L", "1"), ("L", "2")], buyer="buyer-second")
    add_order(redis_client, second)
    retried = f"order {second['orderId']} v1: SeatStillLive, retry"
    wait_until(lambda: pipeline_worker.count(retried) >= 2, 60, "two retries of the second")
    assert projected(second["orderId"]) is None
    add_order(redis_client, next_version(first, "EXPIRED"))  # its event arrives late
    wait_until(lambda: projected(second["orderId"]) == ("HELD", 1), 60, "the second hold")
    assert projected(first["orderId"]) == ("EXPIRED", 2)


@pytest.mark.worker
def test_a_late_payment_reaches_mysql_for_its_refund(
    redis_client, clean_tickets, pipeline_worker, pipeline_relay
):
    order = order_message(seats=[("N", "1")])
    add_order(redis_client, order)
    add_order(redis_client, next_version(order, "EXPIRED"))
    payment = late_payment_message(order, f"pay-{order['orderId']}")
    stream = keys.outbox_stream(keys.bucket(order["eventId"]))
    redis_client.xadd(
        stream, {"kind": "late_payment_rejected", "payment": json.dumps(payment), "rid": ""}
    )

    def kept() -> list[str]:
        with models.writer().connect() as conn:
            return list(conn.scalars(select(LatePayment.payment_id)))

    wait_until(lambda: kept() == [payment["paymentId"]], 60, "the late payment in MySQL")
    wait_until(lambda: projected(order["orderId"]) == ("EXPIRED", 2), 30, "the expired order")
    assert pipeline_worker.count(f"late payment {payment['paymentId']} for order") == 1


@pytest.mark.worker
def test_many_orders_shuffled_and_repeated_converge_with_totals_of_paid_only(
    redis_client, clean_tickets, pipeline_worker, pipeline_relay
):
    """40 orders of 2 seats each, HELD → PAID, every other one then REFUNDED, and a second
    order on each refunded seat that is paid in turn: every event twice, all shuffled, through
    the worker's concurrent threads. MySQL ends at each order's newest state, and the totals
    agree with a recount of the PAID tickets."""
    import random

    from models import totals

    rng = random.Random(7)
    events, finals, paid_seats = [], {}, 0
    for n in range(40):
        seats = [
            ("PQRSTUVWXY"[n // 4], str(2 * (n % 4) + 1)),
            ("PQRSTUVWXY"[n // 4], str(2 * (n % 4) + 2)),
        ]
        held = order_message(seats=seats, buyer=f"buyer-{n}", price="25.00")
        paid = next_version(held, "PAID", paymentId=f"pay-{held['orderId']}")
        chain = [held, paid]
        if n % 2:
            chain.append(next_version(paid, "REFUNDED"))
            again = order_message(seats=seats, buyer=f"buyer-again-{n}", price="25.00")
            again_paid = next_version(again, "PAID", paymentId=f"pay-{again['orderId']}")
            events += [again, again_paid]
            finals[again["orderId"]] = ("PAID", 2)
        paid_seats += 2  # the order's seats, paid once: by it, or by the order after its refund
        events += chain
        finals[held["orderId"]] = (chain[-1]["status"], chain[-1]["version"])
    deliveries = events * 2
    rng.shuffle(deliveries)
    for event in deliveries:
        add_order(redis_client, event)

    def converged() -> bool:
        return all(projected(order_id) == final for order_id, final in finals.items())

    wait_until(converged, 120, "every order at its newest state")
    wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
    with models.writer().connect() as conn:
        kept = totals.of_event(conn, "Event1")
        assert (kept.tickets, kept.revenue) == (paid_seats, 25 * paid_seats)
        recounted = totals.recount(conn, "Event1")
    assert (recounted.tickets, recounted.revenue) == (paid_seats, 25 * paid_seats)

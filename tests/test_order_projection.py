"""The projection of order events on real MariaDB: newest version wins whatever the order and
repetition of delivery; MySQL refuses two live orders on one seat; a refund leaves REFUNDED
tickets and a seat that sells again; count and revenue are of PAID tickets only."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

import models
from models import totals
from models.orders import (
    Applied,
    LatePaymentRecord,
    MalformedOrder,
    OrderSnapshot,
    SeatStillLive,
    apply_order,
    get_order,
    record_late_payment,
)
from models.tables import LatePayment, OrderSeat, Ticket
from models.tickets import Outcome, TicketRecord, persist_ticket, seats_per_buyer, sold_seats
from tests.support.factories import late_payment_message, next_version, order_message


def apply(order: dict[str, Any]) -> Applied:
    with models.writer().begin() as conn:
        return apply_order(conn, OrderSnapshot.from_json(order))


def stored(order_id: str) -> OrderSnapshot | None:
    with models.writer().connect() as conn:
        return get_order(conn, order_id)


def tickets_of(order: dict[str, Any]) -> dict[str, str]:
    ids = [s["ticketId"] for s in order["seats"]]
    with models.writer().connect() as conn:
        rows = conn.execute(
            select(Ticket.ticket_id, Ticket.status).where(Ticket.ticket_id.in_(ids))
        )
        return dict(rows.all())


def seat_statuses(order_id: str) -> set[str]:
    with models.writer().connect() as conn:
        return set(conn.scalars(select(OrderSeat.status).where(OrderSeat.order_id == order_id)))


def event_totals(event_id: str = "Event1") -> tuple[int, Decimal]:
    with models.writer().connect() as conn:
        found = totals.of_event(conn, event_id)
    assert found is not None
    return found.tickets, found.revenue


def lifecycle(**kw: Any) -> list[dict[str, Any]]:
    """HELD v1 → PAID v2 → REFUNDED v3 of one order."""
    held = order_message(**kw)
    paid = next_version(held, "PAID", paymentId="pay-1")
    return [held, paid, next_version(paid, "REFUNDED")]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_any_delivery_order_and_duplicates_end_at_the_newest_version(clean_tickets, order):
    events = lifecycle(seats=[("A", "1"), ("A", "2")])
    deliveries = [events[i] for i in order] + [events[order[0]], events[2], events[0]]
    outcomes = [apply(e) for e in deliveries]
    final = stored(events[0]["orderId"])
    assert final is not None
    assert (final.status, final.version, final.payment_id) == ("REFUNDED", 3, "pay-1")
    assert final.to_json()["seats"] == events[0]["seats"]
    assert seat_statuses(final.order_id) == {"REFUNDED"}
    assert set(tickets_of(events[0]).values()) == {"REFUNDED"}
    assert event_totals() == (0, Decimal("0.00"))
    # every delivery after the newest one is a no-op, and so is each repeated one
    newest_at = deliveries.index(events[2])
    assert set(outcomes[newest_at + 1 :]) == {Applied.STALE}
    assert outcomes.count(Applied.INSERTED) == 1


def test_v3_before_v1_then_v2_keeps_the_paid_state_of_v2_until_v3(clean_tickets):
    held = order_message(seats=[("B", "1")])
    paid = next_version(held, "PAID", paymentId="pay-2")
    assert apply(paid) is Applied.INSERTED
    assert apply(held) is Applied.STALE
    assert stored(held["orderId"]).status == "PAID"
    assert set(tickets_of(held).values()) == {"PAID"}
    assert event_totals() == (1, Decimal("100.00"))


def test_mysql_refuses_two_live_orders_on_one_seat(clean_tickets):
    first = order_message(seats=[("C", "1"), ("C", "2")], buyer="buyer-a")
    second = order_message(seats=[("C", "2"), ("C", "3")], buyer="buyer-b")
    apply(first)
    with pytest.raises(SeatStillLive):
        apply(second)
    assert stored(second["orderId"]) is None  # nothing of it stays: the transaction rolled back
    # and once the first order's closing event arrives, the second one applies
    apply(next_version(first, "EXPIRED"))
    assert apply(second) is Applied.INSERTED
    assert seat_statuses(second["orderId"]) == {"HELD"}


def test_a_newer_state_meeting_a_live_seat_is_refused_too(clean_tickets):
    """An order EXPIRED in MySQL whose late payment took its seats again (PAID v3) while
    another order holds one of them in MySQL: refused until that order's event frees it."""
    late = order_message(seats=[("D", "1")], buyer="buyer-a")
    apply(late)
    expired = next_version(late, "EXPIRED")
    apply(expired)
    other = order_message(seats=[("D", "1")], buyer="buyer-b")
    apply(other)
    with pytest.raises(SeatStillLive):
        apply(next_version(expired, "PAID", paymentId="pay-late"))
    assert stored(late["orderId"]).status == "EXPIRED"


def test_a_refund_leaves_refunded_tickets_and_the_seat_sells_again(clean_tickets):
    first = order_message(seats=[("E", "1")], price="100.00", buyer="buyer-a")
    apply(first)
    apply(paid := next_version(first, "PAID", paymentId="pay-a"))
    assert set(tickets_of(first).values()) == {"PAID"}
    apply(next_version(paid, "REFUNDED"))
    assert set(tickets_of(first).values()) == {"REFUNDED"}
    again = order_message(seats=[("E", "1")], price="100.00", buyer="buyer-b")
    apply(again)
    apply(next_version(again, "PAID", paymentId="pay-b"))
    assert set(tickets_of(again).values()) == {"PAID"}
    assert set(tickets_of(first).values()) == {"REFUNDED"}
    assert event_totals() == (1, Decimal("100.00"))


def test_the_one_seat_ticket_path_sells_a_refunded_seat_and_refuses_a_paid_one(clean_tickets):
    first = order_message(seats=[("F", "1")])
    apply(paid := next_version(first, "PAID", paymentId="pay-f"))
    ticket = TicketRecord(
        ticket_id="00000000-0000-4000-8000-00000000f001",
        venue_id="Venue1",
        event_id="Event1",
        zone_id=1,
        row="F",
        column=1,
        price=Decimal("100.00"),
        status="PAID",
        created_on=OrderSnapshot.from_json(first).created_on,
    )
    with models.writer().begin() as conn:
        assert persist_ticket(conn, ticket) is Outcome.CONFLICT
    apply(next_version(paid, "REFUNDED"))
    with models.writer().begin() as conn:
        assert persist_ticket(conn, ticket) is Outcome.INSERTED


def test_totals_count_paid_tickets_only(clean_tickets):
    held = order_message(seats=[("G", "1"), ("G", "2")], price="50.00")
    apply(held)
    assert event_totals() == (0, Decimal("0.00"))
    apply(next_version(held, "CANCELLED"))
    expired = order_message(seats=[("G", "3")], price="50.00")
    apply(expired)
    apply(next_version(expired, "EXPIRED"))
    assert event_totals() == (0, Decimal("0.00"))
    paid = order_message(seats=[("H", "1"), ("H", "2"), ("H", "3")], price="70.00")
    apply(paid)
    apply(paid2 := next_version(paid, "PAID", paymentId="pay-h"))
    assert event_totals() == (3, Decimal("210.00"))
    apply(paid2)  # a duplicate counts nothing
    assert event_totals() == (3, Decimal("210.00"))
    apply(next_version(paid2, "REFUNDED"))
    assert event_totals() == (0, Decimal("0.00"))
    # what count and revenue answer agrees with a recount from the tickets
    with models.writer().connect() as conn:
        assert totals.recount(conn, "Event1").tickets == 0


def test_held_seats_are_not_tickets(clean_tickets):
    held = order_message(seats=[("J", "1")])
    apply(held)
    assert tickets_of(held) == {}


BAD = {
    "not an object": [],
    "no version": {"version": None},
    "version zero": {"version": 0},
    "boolean version": {"version": True},
    "unknown status": {"status": "SOLD"},
    "bad order id": {"orderId": "a b"},
    "no seats": {"seats": []},
    "float total": {"total": 100.0},
    "nan total": {"total": "NaN"},
    "naive time": {"createdOn": "2026-11-26T12:00:00"},
    "empty buyer": {"buyer": ""},
    "bad currency": {"currency": "usd"},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_malformed_snapshot_is_refused(case):
    order = order_message()
    change = BAD[case]
    data = change if isinstance(change, list) else {**order, **change}
    with pytest.raises(MalformedOrder):
        OrderSnapshot.from_json(data)


@pytest.mark.parametrize(
    "seat",
    [
        {"zoneId": "1"},
        {"zoneId": 0},
        {"row": "1"},
        {"column": "01"},
        {"column": 1},
        {"price": "1.001"},
        {"ticketId": ""},
    ],
)
def test_a_malformed_seat_is_refused(seat):
    order = order_message()
    order["seats"] = [{**order["seats"][0], **seat}]
    with pytest.raises(MalformedOrder):
        OrderSnapshot.from_json(order)


def test_a_seat_twice_in_one_order_is_refused():
    order = order_message(seats=[("A", "1"), ("A", "1")])
    with pytest.raises(MalformedOrder):
        OrderSnapshot.from_json(order)


def test_a_rejected_late_payment_is_kept_once_for_its_refund(clean_tickets):
    order = order_message(seats=[("M", "1")])
    apply(order)
    apply(next_version(order, "EXPIRED"))
    payment = LatePaymentRecord.from_json(late_payment_message(order, "pay-late-1"))
    outcomes = []
    for _ in range(3):
        with models.writer().begin() as conn:
            outcomes.append(record_late_payment(conn, payment))
    assert outcomes == [Applied.INSERTED, Applied.STALE, Applied.STALE]
    with models.writer().connect() as conn:
        rows = conn.execute(select(LatePayment)).all()
    assert [(r.payment_id, r.order_id, r.amount) for r in rows] == [
        ("pay-late-1", order["orderId"], Decimal("100.00"))
    ]
    assert stored(order["orderId"]).status == "EXPIRED"  # the order itself is unchanged


@pytest.mark.parametrize(
    "change", [{"paymentId": ""}, {"amount": 100}, {"orderId": "a b"}, {"rejectedOn": "x"}]
)
def test_a_malformed_late_payment_is_refused(change):
    data = {**late_payment_message(order_message(), "pay-x"), **change}
    with pytest.raises(MalformedOrder):
        LatePaymentRecord.from_json(data)


def test_a_refunded_seat_is_not_sold_when_redis_is_rebuilt_from_mysql(clean_tickets):
    """What `seats rebuild` reads: the PAID tickets' seats and buyers, not the refunded ones."""
    kept = order_message(seats=[("Q", "1")], buyer="buyer-kept")
    refunded = order_message(seats=[("Q", "2")], buyer="buyer-refunded")
    for order in (kept, refunded):
        apply(order)
        apply(paid := next_version(order, "PAID", paymentId=f"pay-{order['orderId']}"))
    apply(next_version(paid, "REFUNDED"))
    with models.writer().connect() as conn:
        seats = sold_seats(conn, "Event1")
        buyers = seats_per_buyer(conn, "Event1")
    assert seats == {1: [("Q", 1, kept["seats"][0]["ticketId"])]}
    assert buyers == {"buyer-kept": 1}

"""The projection of orders (the worker's domain function) and its reads (the query API).

Every order event carries the order's full state and its `version` (each transition in Redis
increments it), so one event tells everything and the newest version wins: an event whose
version is not above what MySQL holds is a no-op, which makes SNS/SQS duplicates and
reordering harmless. Applying an event writes, in the caller's transaction:

* the order's row (`orders`) and its seats (`order_seat`) with the order's status: the seat key
  of live (HELD or PAID) orders is UNIQUE, so MySQL refuses two live orders on one seat;
* its tickets: the seats of a PAID order are PAID tickets, REFUNDED after a refund (held seats
  are not tickets); the ticket's seat key is unique among PAID tickets only, so a refunded seat
  can be sold again;
* the event's totals (count and revenue: PAID only), by the change the event makes.

When a seat is still live in MySQL for another order whose EXPIRED/CANCELLED/REFUNDED event has
not arrived yet, `SeatStillLive` is raised: transient, the task retries with backoff (Redis
decided the seat was free; only a bug would make it outlive the retries, and then the message
reaches the DLQ).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from models import totals
from models.catalog import is_id
from models.tables import LatePayment, Order, OrderSeat, Ticket
from models.tickets import ER_DUP_ENTRY, ER_NO_REFERENCED_ROW, UnknownCatalogEntry, _iso

HELD = "HELD"
PAID = "PAID"
EXPIRED = "EXPIRED"
CANCELLED = "CANCELLED"
REFUNDED = "REFUNDED"
STATUSES = (HELD, PAID, EXPIRED, CANCELLED, REFUNDED)
LIVE = (HELD, PAID)  # a seat belongs to at most one live order
TICKETED = (PAID, REFUNDED)  # the orders whose seats are tickets, with the order's status

# the unique keys whose refusal means "the seat is still another order's in MySQL"
_SEAT_KEYS = ("uq_order_seat_live", "uq_ticket_paid_seat")
_ROW = re.compile(r"[A-Za-z]{1,16}\Z")
_COLUMN = re.compile(r"[1-9][0-9]{0,8}\Z")
_CURRENCY = re.compile(r"[A-Z]{3}\Z")


class Applied(enum.StrEnum):
    INSERTED = "INSERTED"  # the order's first event in MySQL
    UPDATED = "UPDATED"  # a newer version than MySQL held
    STALE = "STALE"  # this version or a newer one is already applied: a no-op


class MalformedOrder(ValueError):
    """The message does not carry an order snapshot this worker understands: never retried."""


class SeatStillLive(RuntimeError):
    """A seat of the order is still live in MySQL for another order (its closing event is on its
    way): transient, retried with backoff."""


class OrderRace(RuntimeError):
    """Another event of the same new order committed its first row meanwhile: retried."""


@dataclass(frozen=True)
class SeatRecord:
    ticket_id: str
    zone_id: int
    row: str
    column: int
    price: Decimal

    def to_json(self) -> dict[str, Any]:
        return {
            "ticketId": self.ticket_id,
            "zoneId": self.zone_id,
            "row": self.row,
            "column": str(self.column),
            "price": f"{self.price:.2f}",
        }


@dataclass(frozen=True)
class OrderSnapshot:
    """An order's full state as its events carry it and the query API returns it."""

    order_id: str
    status: str
    venue_id: str
    event_id: str
    buyer: str
    seats: tuple[SeatRecord, ...]
    total: Decimal
    currency: str
    created_on: datetime
    expires_at: datetime | None
    version: int
    payment_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """camelCase JSON of the contract: money as decimal strings, times ISO-8601 UTC."""
        body: dict[str, Any] = {
            "orderId": self.order_id,
            "status": self.status,
            "venueId": self.venue_id,
            "eventId": self.event_id,
            "buyer": self.buyer,
            "seats": [s.to_json() for s in self.seats],
            "total": f"{self.total:.2f}",
            "currency": self.currency,
            "createdOn": _iso(self.created_on),
            "expiresAt": _iso(self.expires_at) if self.expires_at else None,
            "version": self.version,
        }
        if self.payment_id is not None:
            body["paymentId"] = self.payment_id
        return body

    @classmethod
    def from_json(cls, data: Any) -> OrderSnapshot:
        """Parse and check an order event's snapshot; MalformedOrder if it is not one."""
        try:
            return _parse(data)
        except MalformedOrder:
            raise
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise MalformedOrder(f"malformed order: {exc!r}") from exc


def _parse(data: Any) -> OrderSnapshot:
    if not isinstance(data, dict):
        raise MalformedOrder(f"order must be an object, got {type(data).__name__}")
    for key in ("orderId", "venueId", "eventId"):
        if not isinstance(data[key], str) or not is_id(data[key]):
            raise MalformedOrder(f"{key} is not an id: {data[key]!r}")
    status = data["status"]
    if status not in STATUSES:
        raise MalformedOrder(f"unknown status {status!r}")
    version = data["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MalformedOrder(f"version must be a positive integer: {version!r}")
    buyer = data["buyer"]
    if not isinstance(buyer, str) or not 1 <= len(buyer) <= 255:
        raise MalformedOrder("buyer must be a string of 1-255 characters")
    currency = data["currency"]
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise MalformedOrder(f"currency is not a currency code: {currency!r}")
    payment_id = data.get("paymentId")
    if payment_id is not None and (not isinstance(payment_id, str) or not payment_id):
        raise MalformedOrder(f"paymentId must be a string: {payment_id!r}")
    if not isinstance(data["seats"], list) or not data["seats"]:
        raise MalformedOrder("seats must be a non-empty array")
    seats = tuple(_parse_seat(s) for s in data["seats"])
    if len({(s.zone_id, s.row, s.column) for s in seats}) != len(seats):
        raise MalformedOrder("a seat twice in one order")
    if len({s.ticket_id for s in seats}) != len(seats):
        raise MalformedOrder("a ticket id twice in one order")
    expires = data.get("expiresAt")
    return OrderSnapshot(
        order_id=data["orderId"],
        status=status,
        venue_id=data["venueId"],
        event_id=data["eventId"],
        buyer=buyer,
        seats=seats,
        total=_money(data["total"]),
        currency=currency,
        created_on=_time(data["createdOn"]),
        expires_at=_time(expires) if expires is not None else None,
        version=version,
        payment_id=payment_id,
    )


def _parse_seat(seat: Any) -> SeatRecord:
    if not isinstance(seat, dict):
        raise MalformedOrder("a seat must be an object")
    ticket_id, zone, row, column = seat["ticketId"], seat["zoneId"], seat["row"], seat["column"]
    if not isinstance(ticket_id, str) or not is_id(ticket_id) or len(ticket_id) > 36:
        raise MalformedOrder(f"ticketId is not a ticket id: {ticket_id!r}")
    if not isinstance(zone, int) or isinstance(zone, bool) or zone < 1:
        raise MalformedOrder(f"zoneId must be a positive integer: {zone!r}")
    if not isinstance(row, str) or not _ROW.match(row):
        raise MalformedOrder(f"row must be letters: {row!r}")
    if not isinstance(column, str) or not _COLUMN.match(column):
        raise MalformedOrder(f"column must be digits without leading zeros: {column!r}")
    return SeatRecord(ticket_id, zone, row, int(column), _money(seat["price"]))


def _money(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise MalformedOrder(f"money must be a decimal string: {value!r}")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise MalformedOrder(f"money must be a decimal string: {value!r}") from exc
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise MalformedOrder(f"money must be a non-negative amount in cents: {value!r}")
    return amount


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise MalformedOrder(f"time must be an ISO-8601 string: {value!r}")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise MalformedOrder(f"time must carry its offset: {value!r}")
    return moment.astimezone(UTC)


def _naive(moment: datetime | None) -> datetime | None:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment is not None else None


def _order_values(order: OrderSnapshot) -> dict[str, Any]:
    return {
        "event_id": order.event_id,
        "venue_id": order.venue_id,
        "buyer": order.buyer,
        "status": order.status,
        "version": order.version,
        "total": order.total,
        "currency": order.currency,
        "created_on": _naive(order.created_on),
        "expires_at": _naive(order.expires_at),
        "payment_id": order.payment_id,
        "updated": datetime.now(UTC).replace(tzinfo=None),
    }


def _code(exc: IntegrityError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args else None


def _refused(exc: IntegrityError, order: OrderSnapshot) -> Exception:
    """What a refused write of the order's rows means."""
    code, text = _code(exc), str(exc.orig)
    if code == ER_NO_REFERENCED_ROW:
        return UnknownCatalogEntry(
            f"order {order.order_id}: unknown event {order.event_id!r} or zone of {order.venue_id}"
        )
    if code == ER_DUP_ENTRY and any(key in text for key in _SEAT_KEYS):
        return SeatStillLive(
            f"order {order.order_id} v{order.version} ({order.status}): a seat is still live "
            f"for another order in MySQL: {text}"
        )
    return exc


def apply_order(conn: Connection, order: OrderSnapshot) -> Applied:
    """Apply one order event if it is newer than what MySQL holds; the caller owns the
    transaction (one per event). Raises SeatStillLive or OrderRace (retry), UnknownCatalogEntry
    (never retried), or the database's transient errors."""
    current = conn.execute(
        select(Order.status, Order.version)
        .where(Order.order_id == order.order_id)
        .with_for_update()
    ).first()
    if current is not None and current.version >= order.version:
        return Applied.STALE
    try:
        if current is None:
            _insert_order(conn, order)
        else:
            conn.execute(
                update(Order).where(Order.order_id == order.order_id).values(_order_values(order))
            )
            conn.execute(
                update(OrderSeat)
                .where(OrderSeat.order_id == order.order_id)
                .values(status=order.status)
            )
        _write_tickets(conn, order, had_tickets=current is not None and current.status in TICKETED)
    except IntegrityError as exc:
        raise _refused(exc, order) from exc
    was_paid = current is not None and current.status == PAID
    if was_paid != (order.status == PAID):
        sign = 1 if order.status == PAID else -1
        revenue = sum((s.price for s in order.seats), Decimal(0))
        totals.change(conn, order.event_id, sign * len(order.seats), sign * revenue)
    return Applied.INSERTED if current is None else Applied.UPDATED


def _insert_order(conn: Connection, order: OrderSnapshot) -> None:
    try:
        conn.execute(insert(Order).values(order_id=order.order_id, **_order_values(order)))
    except IntegrityError as exc:
        if _code(exc) == ER_DUP_ENTRY:  # the order's row committed since the SELECT: retry
            raise OrderRace(f"order {order.order_id}: inserted meanwhile") from exc
        raise
    conn.execute(
        insert(OrderSeat),
        [
            {
                "order_id": order.order_id,
                "zone_id": s.zone_id,
                "seat_row": s.row,
                "seat_column": s.column,
                "venue_id": order.venue_id,
                "event_id": order.event_id,
                "ticket_id": s.ticket_id,
                "price": s.price,
                "status": order.status,
            }
            for s in order.seats
        ],
    )


def _write_tickets(conn: Connection, order: OrderSnapshot, *, had_tickets: bool) -> None:
    """The order's seats as tickets with its status if it is PAID or REFUNDED, none otherwise
    (`had_tickets`: MySQL held the order as PAID or REFUNDED until now)."""
    if order.status not in TICKETED:
        if had_tickets:
            conn.execute(delete(Ticket).where(Ticket.order_id == order.order_id))
        return
    ids = [s.ticket_id for s in order.seats]
    existing = set(conn.scalars(select(Ticket.ticket_id).where(Ticket.ticket_id.in_(ids))))
    if existing:
        conn.execute(
            update(Ticket).where(Ticket.ticket_id.in_(existing)).values(status=order.status)
        )
    missing = [s for s in order.seats if s.ticket_id not in existing]
    if missing:
        conn.execute(
            insert(Ticket),
            [
                {
                    "ticket_id": s.ticket_id,
                    "venue_id": order.venue_id,
                    "event_id": order.event_id,
                    "zone_id": s.zone_id,
                    "seat_row": s.row,
                    "seat_column": s.column,
                    "price": s.price,
                    "status": order.status,
                    "created_on": _naive(order.created_on),
                    "buyer": order.buyer,
                    "order_id": order.order_id,
                }
                for s in missing
            ],
        )


def _snapshots(conn: Connection, rows: Sequence[Any]) -> list[OrderSnapshot]:
    if not rows:
        return []
    seats: dict[str, list[SeatRecord]] = {}
    query = (
        select(OrderSeat)
        .where(OrderSeat.order_id.in_([r.order_id for r in rows]))
        .order_by(OrderSeat.zone_id, OrderSeat.seat_row, OrderSeat.seat_column)
    )
    for s in conn.execute(query):
        seats.setdefault(s.order_id, []).append(
            SeatRecord(s.ticket_id, s.zone_id, s.seat_row, s.seat_column, s.price)
        )
    return [
        OrderSnapshot(
            order_id=r.order_id,
            status=r.status,
            venue_id=r.venue_id,
            event_id=r.event_id,
            buyer=r.buyer,
            seats=tuple(seats.get(r.order_id, ())),
            total=r.total,
            currency=r.currency,
            created_on=r.created_on,
            expires_at=r.expires_at,
            version=r.version,
            payment_id=r.payment_id,
        )
        for r in rows
    ]


def get_order(conn: Connection, order_id: str) -> OrderSnapshot | None:
    """One order as projected, or None."""
    rows = conn.execute(select(Order).where(Order.order_id == order_id)).all()
    found = _snapshots(conn, rows)
    return found[0] if found else None


def list_orders(
    conn: Connection,
    *,
    limit: int,
    event_id: str | None = None,
    status: str | None = None,
    buyer: str | None = None,
) -> list[OrderSnapshot]:
    """Orders newest first, filtered by event, status and buyer."""
    query = select(Order).order_by(Order.created_on.desc(), Order.order_id.desc()).limit(limit)
    if event_id is not None:
        query = query.where(Order.event_id == event_id)
    if status is not None:
        query = query.where(Order.status == status)
    if buyer is not None:
        query = query.where(Order.buyer == buyer)
    return _snapshots(conn, conn.execute(query).all())


@dataclass(frozen=True)
class LatePaymentRecord:
    """A LATE_PAYMENT_REJECTED event: a payment for an expired order whose seats were gone."""

    order_id: str
    event_id: str
    payment_id: str
    amount: Decimal
    currency: str
    rejected_on: datetime

    @classmethod
    def from_json(cls, data: Any) -> LatePaymentRecord:
        """Parse and check the event; MalformedOrder if it is not one."""
        try:
            if not isinstance(data, dict):
                raise MalformedOrder("a late payment must be an object")
            for key in ("orderId", "eventId"):
                if not isinstance(data[key], str) or not is_id(data[key]):
                    raise MalformedOrder(f"{key} is not an id: {data[key]!r}")
            payment_id, currency = data["paymentId"], data["currency"]
            if not isinstance(payment_id, str) or not 1 <= len(payment_id.encode()) <= 255:
                raise MalformedOrder(f"paymentId must be a string: {payment_id!r}")
            if not isinstance(currency, str) or not _CURRENCY.match(currency):
                raise MalformedOrder(f"currency is not a currency code: {currency!r}")
            return cls(
                order_id=data["orderId"],
                event_id=data["eventId"],
                payment_id=payment_id,
                amount=_money(data["amount"]),
                currency=currency,
                rejected_on=_time(data["rejectedOn"]),
            )
        except MalformedOrder:
            raise
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise MalformedOrder(f"malformed late payment: {exc!r}") from exc


def record_late_payment(conn: Connection, payment: LatePaymentRecord) -> Applied:
    """Keep a rejected late payment once (the payment id is the key); a redelivery is STALE."""
    stmt = (
        insert(LatePayment)
        .values(
            payment_id=payment.payment_id,
            order_id=payment.order_id,
            event_id=payment.event_id,
            amount=payment.amount,
            currency=payment.currency,
            rejected_on=_naive(payment.rejected_on),
        )
        .prefix_with("IGNORE")
    )
    return Applied.INSERTED if conn.execute(stmt).rowcount == 1 else Applied.STALE


def event_orders(conn: Connection, event_id: str) -> list[OrderSnapshot]:
    """Every order of an event as projected, whatever its status (what `seats rebuild` writes
    back to Redis)."""
    rows = conn.execute(select(Order).where(Order.event_id == event_id)).all()
    return _snapshots(conn, rows)


def refused_payments(conn: Connection, event_id: str) -> dict[str, str]:
    """The event's late payments refused for expired orders: {payment id: order id}."""
    query = select(LatePayment.payment_id, LatePayment.order_id).where(
        LatePayment.event_id == event_id
    )
    return {payment_id: order_id for payment_id, order_id in conn.execute(query)}

"""The tables: catalog (venue, zone, event), the ticket projection and recorded seat conflicts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    VARBINARY,
    BigInteger,
    Computed,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from models import Base

Money = Numeric(10, 2)
Total = Numeric(20, 2)  # a sum of many prices
# Naive UTC with microseconds: the list is ordered by it, and lag is measured with it.
UtcTimestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


class _TextVarbinary(VARBINARY):
    """VARBINARY that is sent str as it is: the driver quotes it as a string (readable in the
    process list and the logs, where bytes would be hex), and the server stores its UTF-8 bytes
    and compares the column with it byte for byte."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None


class Id(TypeDecorator[str]):
    """An id that compares byte for byte: case, accents and trailing spaces all count.

    VARBINARY, because it is the exact comparison both MariaDB and Aurora MySQL 3 (MySQL 8.0)
    have: their `utf8mb4_bin` pads (`'a' = 'a '`), and the NO PAD binary collations differ by
    name (`utf8mb4_nopad_bin` on MariaDB, `utf8mb4_0900_bin` on MySQL), neither on both.
    Python sees str: the bytes are UTF-8 (ids are ASCII by the contract).
    """

    impl = _TextVarbinary
    cache_ok = True

    def process_result_value(self, value: bytes | str | None, dialect: Dialect) -> str | None:
        """bytes from the driver → str."""
        return value.decode() if isinstance(value, bytes) else value


class Venue(Base):
    __tablename__ = "venue"

    venue_id: Mapped[str] = mapped_column(Id(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Zone(Base):
    __tablename__ = "zone"

    venue_id: Mapped[str] = mapped_column(
        Id(64), ForeignKey("venue.venue_id", name="fk_zone_venue"), primary_key=True
    )
    zone_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    row_count: Mapped[int] = mapped_column(Integer)
    column_count: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer)
    row_capacity: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Money)


class Event(Base):
    __tablename__ = "event"

    event_id: Mapped[str] = mapped_column(Id(64), primary_key=True)
    venue_id: Mapped[str] = mapped_column(
        Id(64), ForeignKey("venue.venue_id", name="fk_event_venue"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(50))
    event_date: Mapped[datetime] = mapped_column(UtcTimestamp)
    capacity: Mapped[int] = mapped_column(Integer)
    # Set before the event's seat state is first written to Redis; never cleared. An event
    # without seat state but with this set lost its state: rebuild it, never start it empty.
    seat_state_created_on: Mapped[datetime | None] = mapped_column(UtcTimestamp, nullable=True)
    # the sales window, as the catalog file sets it (NULL: no bound)
    sales_start: Mapped[datetime | None] = mapped_column(UtcTimestamp, nullable=True)
    sales_end: Mapped[datetime | None] = mapped_column(UtcTimestamp, nullable=True)


# The event of a row while it holds its seat, NULL otherwise: under a UNIQUE key with the seat,
# MySQL refuses a second holder of a seat and ignores the rows that let it go (NULLs never clash).
_PAID_EVENT = "CASE WHEN status = 'PAID' THEN event_id END"
_LIVE_EVENT = "CASE WHEN status IN ('HELD', 'PAID') THEN event_id END"


class Ticket(Base):
    """One sold seat (a seat of a PAID order; REFUNDED after a refund): the primary key makes
    redelivery harmless, the seat key of PAID tickets a double sale impossible, while a REFUNDED
    ticket leaves its seat free to be sold again."""

    __tablename__ = "ticket"
    __table_args__ = (
        UniqueConstraint(
            "paid_event_id", "zone_id", "seat_row", "seat_column", name="uq_ticket_paid_seat"
        ),
        ForeignKeyConstraint(
            ["venue_id", "zone_id"], ["zone.venue_id", "zone.zone_id"], name="fk_ticket_zone"
        ),
        # The list's filters, each with the list's order (newest first) after its equalities:
        # a page reads its rows from one of these in order and sorts nothing.
        Index("ix_ticket_created", "created_on", "ticket_id"),
        Index("ix_ticket_event_created", "event_id", "created_on", "ticket_id"),
        Index("ix_ticket_event_zone_created", "event_id", "zone_id", "created_on", "ticket_id"),
        Index("ix_ticket_venue_created", "venue_id", "created_on", "ticket_id"),
        Index("ix_ticket_venue_zone_created", "venue_id", "zone_id", "created_on", "ticket_id"),
        Index("ix_ticket_zone_created", "zone_id", "created_on", "ticket_id"),
        Index("ix_ticket_event_buyer", "event_id", "buyer"),  # a buyer's seats (rebuild)
    )

    ticket_id: Mapped[str] = mapped_column(Id(36), primary_key=True)
    venue_id: Mapped[str] = mapped_column(Id(64))
    event_id: Mapped[str] = mapped_column(
        Id(64), ForeignKey("event.event_id", name="fk_ticket_event")
    )
    zone_id: Mapped[int] = mapped_column(Integer)
    seat_row: Mapped[str] = mapped_column(String(16))
    seat_column: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))
    created_on: Mapped[datetime] = mapped_column(UtcTimestamp)
    persisted_on: Mapped[datetime] = mapped_column(UtcTimestamp, server_default=func.now(6))
    # the token's `sub` of the sale; NULL for tickets sold before identities existed
    buyer: Mapped[str | None] = mapped_column(Id(1020), nullable=True)
    # the order the seat was sold in; NULL for tickets of an older release's one-seat sale
    # (its `kind=ticket` events)
    order_id: Mapped[str | None] = mapped_column(Id(64), nullable=True, index=True)
    paid_event_id: Mapped[str | None] = mapped_column(
        Id(64), Computed(_PAID_EVENT, persisted=True), nullable=True
    )


class TicketConflict(Base):
    """A second, different ticket for a seat that already has an owner: kept for an operator."""

    __tablename__ = "ticket_conflict"

    ticket_id: Mapped[str] = mapped_column(Id(36), primary_key=True)
    owner_ticket_id: Mapped[str] = mapped_column(Id(36))
    venue_id: Mapped[str] = mapped_column(Id(64))
    event_id: Mapped[str] = mapped_column(Id(64))
    zone_id: Mapped[int] = mapped_column(Integer)
    seat_row: Mapped[str] = mapped_column(String(16))
    seat_column: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Money)
    created_on: Mapped[datetime] = mapped_column(UtcTimestamp)
    detected_on: Mapped[datetime] = mapped_column(UtcTimestamp, server_default=func.now(6))


class EventTotals(Base):
    """What count and revenue answer, kept by the projection in the transaction that inserts the
    tickets: one primary-key read instead of an aggregate that grows with the event."""

    __tablename__ = "event_totals"

    event_id: Mapped[str] = mapped_column(
        Id(64), ForeignKey("event.event_id", name="fk_event_totals_event"), primary_key=True
    )
    ticket_count: Mapped[int] = mapped_column(BigInteger)
    revenue: Mapped[Decimal] = mapped_column(Total)


class Order(Base):
    """An order as projected: the newest version of its state that reached the worker."""

    __tablename__ = "orders"
    __table_args__ = (
        # the operators' list (by event and status) and a buyer's own, newest first
        Index("ix_orders_event_status_created", "event_id", "status", "created_on", "order_id"),
        Index("ix_orders_buyer_created", "buyer", "created_on", "order_id"),
    )

    order_id: Mapped[str] = mapped_column(Id(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(
        Id(64), ForeignKey("event.event_id", name="fk_orders_event")
    )
    venue_id: Mapped[str] = mapped_column(Id(64))
    buyer: Mapped[str] = mapped_column(Id(1020))
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[Decimal] = mapped_column(Total)
    currency: Mapped[str] = mapped_column(String(3))
    created_on: Mapped[datetime] = mapped_column(UtcTimestamp)
    expires_at: Mapped[datetime | None] = mapped_column(UtcTimestamp, nullable=True)
    payment_id: Mapped[str | None] = mapped_column(Id(255), nullable=True)
    updated: Mapped[datetime] = mapped_column(UtcTimestamp, server_default=func.now(6))


class OrderSeat(Base):
    """A seat of an order, with the order's status: the seat key of live (HELD or PAID) orders
    is UNIQUE, so MySQL refuses two live orders on one seat."""

    __tablename__ = "order_seat"
    __table_args__ = (
        UniqueConstraint(
            "live_event_id", "zone_id", "seat_row", "seat_column", name="uq_order_seat_live"
        ),
        ForeignKeyConstraint(
            ["venue_id", "zone_id"], ["zone.venue_id", "zone.zone_id"], name="fk_order_seat_zone"
        ),
    )

    order_id: Mapped[str] = mapped_column(
        Id(64), ForeignKey("orders.order_id", name="fk_order_seat_order"), primary_key=True
    )
    zone_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seat_row: Mapped[str] = mapped_column(String(16), primary_key=True)
    seat_column: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    venue_id: Mapped[str] = mapped_column(Id(64))
    event_id: Mapped[str] = mapped_column(Id(64))
    ticket_id: Mapped[str] = mapped_column(Id(36))
    price: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16))
    live_event_id: Mapped[str | None] = mapped_column(
        Id(64), Computed(_LIVE_EVENT, persisted=True), nullable=True
    )


class LatePayment(Base):
    """A payment that came for an expired order whose seats were gone (LATE_PAYMENT_REJECTED):
    kept until the money is refunded, one row per payment."""

    __tablename__ = "late_payment"

    payment_id: Mapped[str] = mapped_column(Id(255), primary_key=True)
    order_id: Mapped[str] = mapped_column(Id(64), index=True)
    event_id: Mapped[str] = mapped_column(Id(64))
    amount: Mapped[Decimal] = mapped_column(Total)
    currency: Mapped[str] = mapped_column(String(3))
    rejected_on: Mapped[datetime] = mapped_column(UtcTimestamp)
    recorded_on: Mapped[datetime] = mapped_column(UtcTimestamp, server_default=func.now(6))

"""Per-event totals of the ticket projection: what count and revenue answer, one primary-key read.

The projection adds each batch's newly inserted PAID tickets in the transaction that inserts them
(`models.tickets.persist_tickets`), so the totals and the rows commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.mysql import insert

from models.tables import Event, EventTotals, Ticket

if TYPE_CHECKING:
    from models.tickets import TicketRecord

PAID = "PAID"  # count and revenue are of PAID tickets (the contract)


@dataclass(frozen=True)
class Totals:
    """An event's venue and its PAID tickets: how many, for how much."""

    venue_id: str
    tickets: int
    revenue: Decimal


def add(conn: Connection, tickets: Iterable[TicketRecord]) -> None:
    """Add newly inserted tickets to their events' totals, in the caller's transaction.

    One statement, atomic in the database (`n = n + k`): two batches of one event at once both
    count. Its rows are in event id order, the order InnoDB locks them in, so two batches that
    touch several events wait for each other instead of deadlocking. It comes after the batch's
    inserts, so a batch holds a totals row only for the moment before its commit.
    """
    sums: dict[str, tuple[int, Decimal]] = {}
    for t in tickets:
        if t.status == PAID:
            n, total = sums.get(t.event_id, (0, Decimal(0)))
            sums[t.event_id] = (n + 1, total + t.price)
    if not sums:
        return
    # event ids compare byte for byte in MySQL; Python's str order is the UTF-8 byte order
    rows = [
        {"event_id": e, "ticket_count": n, "revenue": total}
        for e, (n, total) in sorted(sums.items())
    ]
    stmt = insert(EventTotals).values(rows)
    conn.execute(
        stmt.on_duplicate_key_update(
            ticket_count=EventTotals.ticket_count + stmt.inserted.ticket_count,
            revenue=EventTotals.revenue + stmt.inserted.revenue,
        )
    )


def change(conn: Connection, event_id: str, tickets: int, revenue: Decimal) -> None:
    """Add `tickets` PAID tickets worth `revenue` (negative: take them away, a refund) to an
    event's totals, in the caller's transaction (the projection of orders)."""
    stmt = insert(EventTotals).values(event_id=event_id, ticket_count=tickets, revenue=revenue)
    conn.execute(
        stmt.on_duplicate_key_update(
            ticket_count=EventTotals.ticket_count + stmt.inserted.ticket_count,
            revenue=EventTotals.revenue + stmt.inserted.revenue,
        )
    )


def of_event(conn: Connection, event_id: str) -> Totals | None:
    """The event's venue and totals in one statement (two primary-key reads); None if there is
    no such event."""
    row = conn.execute(
        select(Event.venue_id, EventTotals.ticket_count, EventTotals.revenue)
        .outerjoin(EventTotals, EventTotals.event_id == Event.event_id)
        .where(Event.event_id == event_id)
    ).first()
    if row is None:
        return None
    return Totals(row.venue_id, int(row.ticket_count or 0), Decimal(row.revenue or 0))


def recount(conn: Connection, event_id: str) -> Totals | None:
    """Recompute an event's totals from its tickets, safe while the projection writes.

    The caller's transaction must be fresh; it is committed here. The totals row is locked
    first: a batch that already added to it has committed its rows before the count reads
    them (READ COMMITTED), and a batch still inserting adds to it only after this commit.
    """
    if conn.scalar(select(Event.event_id).where(Event.event_id == event_id)) is None:
        conn.rollback()
        return None
    zero = insert(EventTotals).values(event_id=event_id, ticket_count=0, revenue=0)
    conn.execute(zero.prefix_with("IGNORE"))  # the row may exist: it is locked next
    conn.commit()
    conn.scalar(
        select(EventTotals.event_id).where(EventTotals.event_id == event_id).with_for_update()
    )
    n, total = conn.execute(
        select(func.count(), func.coalesce(func.sum(Ticket.price), 0)).where(
            Ticket.event_id == event_id, Ticket.status == PAID
        )
    ).one()
    conn.execute(
        EventTotals.__table__.update()
        .where(EventTotals.event_id == event_id)
        .values(ticket_count=n, revenue=total)
    )
    conn.commit()
    return of_event(conn, event_id)

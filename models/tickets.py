"""Writing the ticket projection (the worker's domain function) and reading it (the query API)."""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pymysql.err import InterfaceError as PyMySQLInterfaceError
from sqlalchemy import Connection, Select, func, insert, or_, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from models import totals
from models.tables import Event, Ticket, TicketConflict

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # of the ticket event; the worker refuses any other

# A ticket id is a uuid4 in its canonical spelling, the only one the purchase side issues: any
# other spelling names no ticket (ids compare byte for byte), so it is answered without a lookup.
TICKET_ID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_TICKET_ID = re.compile(TICKET_ID_PATTERN.removesuffix("$") + r"\Z")

ER_DUP_ENTRY = 1062
ER_NO_REFERENCED_ROW = 1452

# MySQL/MariaDB errors worth another try: can't connect, server gone away, lost connection,
# lock wait timeout, deadlock, and read-only (an Aurora writer that was just demoted).
TRANSIENT_MYSQL_ERRORS = {2003, 2006, 2013, 2014, 2055, 1205, 1213, 1290, 1836}


class Outcome(enum.StrEnum):
    INSERTED = "INSERTED"
    DUPLICATE = "DUPLICATE"  # the same ticket again: SQS redelivery, a retried task
    CONFLICT = "CONFLICT"  # a different ticket for a seat that already has an owner


class UnknownCatalogEntry(ValueError):
    """The ticket names an event or zone the database does not know: never retried."""


@dataclass(frozen=True)
class TicketRecord:
    """A ticket as the event carries it and the query API returns it."""

    ticket_id: str
    venue_id: str
    event_id: str
    zone_id: int
    row: str
    column: int
    price: Decimal
    status: str
    created_on: datetime
    buyer: str | None = None  # who bought it (the token's `sub`); not in the public JSON

    def to_json(self) -> dict[str, Any]:
        """camelCase JSON of the contract; price as a decimal string, time as ISO-8601 UTC."""
        return {
            "ticketId": self.ticket_id,
            "venueId": self.venue_id,
            "eventId": self.event_id,
            "zoneId": self.zone_id,
            "row": self.row,
            "column": str(self.column),
            "price": f"{self.price:.2f}",
            "status": self.status,
            "createdOn": _iso(self.created_on),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TicketRecord:
        """Parse the JSON form back; raises KeyError/ValueError on a malformed ticket."""
        return cls(
            ticket_id=str(data["ticketId"]),
            venue_id=str(data["venueId"]),
            event_id=str(data["eventId"]),
            zone_id=int(data["zoneId"]),
            row=str(data["row"]),
            column=int(data["column"]),
            price=Decimal(data["price"]),
            status=str(data["status"]),
            created_on=datetime.fromisoformat(data["createdOn"]).astimezone(UTC),
            buyer=str(data["buyer"]) if data.get("buyer") is not None else None,
        )


def is_ticket_id(value: str) -> bool:
    """Whether `value` is spelled as the ticket ids the purchase side issues."""
    return _TICKET_ID.match(value) is not None


def is_transient(exc: BaseException) -> bool:
    """True for database errors that a later attempt can get past."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc.orig, PyMySQLInterfaceError):
            return True
        args = getattr(exc.orig, "args", ())
        return bool(args) and args[0] in TRANSIENT_MYSQL_ERRORS
    return False


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row_values(t: TicketRecord) -> dict[str, Any]:
    return {
        "ticket_id": t.ticket_id,
        "venue_id": t.venue_id,
        "event_id": t.event_id,
        "zone_id": t.zone_id,
        "seat_row": t.row,
        "seat_column": t.column,
        "price": t.price,
        "created_on": t.created_on.astimezone(UTC).replace(tzinfo=None),
    }


def _ticket_values(t: TicketRecord) -> dict[str, Any]:
    return {"status": t.status, "buyer": t.buyer, **_row_values(t)}


def persist_ticket(conn: Connection, ticket: TicketRecord) -> Outcome:
    """Insert the ticket once and count it in its event's totals; the caller owns the
    transaction (`persist_tickets`: per batch).

    Idempotent: ticket_id is the primary key, so a second delivery of the same message fails the
    insert with a duplicate key and is reported as DUPLICATE, a successful no-op. The seat key
    (event, zone, row, column) is UNIQUE, so a *different* ticket for a sold seat cannot overwrite
    the owner: it is recorded in ticket_conflict for an operator, and the first owner keeps it.
    Only an INSERTED ticket counts in the totals.
    Transient errors (lost connection, deadlock, lock wait) propagate for the task to retry.
    """
    outcome = _insert(conn, ticket)
    if outcome is Outcome.INSERTED:
        totals.add(conn, [ticket])
    return outcome


def _insert(conn: Connection, ticket: TicketRecord) -> Outcome:
    try:
        # No savepoint needed: InnoDB rolls back only the failed statement on a duplicate key.
        conn.execute(insert(Ticket).values(_ticket_values(ticket)))
        return Outcome.INSERTED
    except IntegrityError as exc:
        code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
        if code == ER_NO_REFERENCED_ROW:
            raise UnknownCatalogEntry(
                f"ticket {ticket.ticket_id}: unknown event {ticket.event_id!r} or zone "
                f"{ticket.venue_id}/{ticket.zone_id}"
            ) from exc
        if code != ER_DUP_ENTRY:
            raise
    if conn.scalar(select(Ticket.ticket_id).where(Ticket.ticket_id == ticket.ticket_id)):
        return Outcome.DUPLICATE
    owner = conn.scalar(
        select(Ticket.ticket_id).where(
            Ticket.event_id == ticket.event_id,
            Ticket.zone_id == ticket.zone_id,
            Ticket.seat_row == ticket.row,
            Ticket.seat_column == ticket.column,
            Ticket.status == totals.PAID,  # a REFUNDED ticket owns its seat no longer
        )
    )
    if owner is None:  # the owner vanished between the two statements: let the task retry
        raise RuntimeError(f"ticket {ticket.ticket_id}: duplicate key but no owner found")
    stmt = (
        insert(TicketConflict)
        .values(owner_ticket_id=owner, **_row_values(ticket))
        .prefix_with("IGNORE")  # the conflict itself may be redelivered: keep the first record
    )
    conn.execute(stmt)
    log.error(
        "seat conflict: ticket %s for %s/%s/%s%s already owned by %s; recorded in ticket_conflict",
        ticket.ticket_id,
        ticket.event_id,
        ticket.zone_id,
        ticket.row,
        ticket.column,
        owner,
        extra={"ticketId": ticket.ticket_id, "ownerTicketId": owner},
    )
    return Outcome.CONFLICT


def persist_tickets(conn: Connection, tickets: Sequence[TicketRecord]) -> list[Outcome | Exception]:
    """Insert a batch with one multi-row INSERT, then add the inserted ones to their events'
    totals with one more statement; one outcome per ticket, in order.

    The caller owns the transaction (one per batch). The common case is one statement. If it
    fails for a reason that belongs to some rows (a redelivered ticket, a second owner of a seat,
    an unknown event, a value the column refuses), InnoDB has undone that statement alone, and
    the batch is written again one row at a time, each in a SAVEPOINT with `persist_ticket`'s
    rules: every ticket gets its own INSERTED / DUPLICATE / CONFLICT, or its own exception with
    its own effects rolled back, while the others stay in the transaction. A transient error
    (lost connection, deadlock, lock wait) raises: the transaction is lost for every ticket.
    """
    outcomes = _insert_batch(conn, tickets)
    totals.add(conn, [t for t, o in zip(tickets, outcomes, strict=True) if o is Outcome.INSERTED])
    return outcomes


def _insert_batch(conn: Connection, tickets: Sequence[TicketRecord]) -> list[Outcome | Exception]:
    if len(tickets) > 1:
        try:
            # executemany of one cached statement: PyMySQL sends it as ONE multi-row INSERT
            # (half the CPU of compiling an insert().values([...]) of n rows every time)
            conn.execute(insert(Ticket), [_ticket_values(t) for t in tickets])
            return [Outcome.INSERTED] * len(tickets)
        except Exception as exc:
            if is_transient(exc):
                raise
            log.info(
                "batch of %d tickets: the multi-row insert was refused (%s); one row at a time",
                len(tickets),
                _error_code(exc),
            )
    return [_insert_in_savepoint(conn, ticket) for ticket in tickets]


def _insert_in_savepoint(conn: Connection, ticket: TicketRecord) -> Outcome | Exception:
    savepoint = conn.begin_nested()
    try:
        outcome = _insert(conn, ticket)
    except Exception as exc:
        if is_transient(exc):  # the whole transaction is gone; the caller's rollback ends it
            raise
        savepoint.rollback()
        return exc
    savepoint.commit()
    return outcome


def _error_code(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    return f"{type(orig or exc).__name__} {args[0]}" if args else type(exc).__name__


def _record(row: Ticket) -> TicketRecord:
    return TicketRecord(
        ticket_id=row.ticket_id,
        venue_id=row.venue_id,
        event_id=row.event_id,
        zone_id=row.zone_id,
        row=row.seat_row,
        column=row.seat_column,
        price=row.price,
        status=row.status,
        created_on=row.created_on,
        buyer=row.buyer,
    )


def get_ticket(conn: Connection, ticket_id: str) -> TicketRecord | None:
    """One ticket by id, or None."""
    row = conn.execute(select(Ticket).where(Ticket.ticket_id == ticket_id)).first()
    return _record(row) if row else None


# (eventId given, venueId given without eventId, zoneId given) → the index of that list: its
# equalities first, then created_on, ticket_id (models/tables.py). With an event, the venue is the
# event's own (list_tickets makes sure), so the event's index serves.
_LIST_INDEXES = {
    (False, False, False): "ix_ticket_created",
    (True, False, False): "ix_ticket_event_created",
    (True, False, True): "ix_ticket_event_zone_created",
    (False, True, False): "ix_ticket_venue_created",
    (False, True, True): "ix_ticket_venue_zone_created",
    (False, False, True): "ix_ticket_zone_created",
}


def list_tickets(
    conn: Connection,
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
    event_id: str | None = None,
    venue_id: str | None = None,
    zone_id: int | None = None,
) -> list[TicketRecord]:
    """Newest first, keyset-paginated on (created_on, ticket_id) strictly after `after`."""
    if event_id is not None and venue_id is not None:
        # A ticket is sold at its event's venue: any other venue has none of its tickets, and
        # asking the index would read every ticket of the event to find that out.
        held_at = conn.scalar(select(Event.venue_id).where(Event.event_id == event_id))
        if held_at != venue_id:
            return []
    query = ticket_page_query(
        limit=limit, after=after, event_id=event_id, venue_id=venue_id, zone_id=zone_id
    )
    return [_record(row) for row in conn.execute(query)]


def ticket_page_query(
    *,
    limit: int,
    after: tuple[datetime, str] | None = None,
    event_id: str | None = None,
    venue_id: str | None = None,
    zone_id: int | None = None,
) -> Select:
    """The page's SELECT: each combination of filters has an index that yields its rows in
    (created_on, ticket_id) order, so the page reads `limit` rows and sorts nothing.

    The index is named, not left to the planner: given an ORDER BY … LIMIT, MariaDB prefers
    walking (created_on) and filtering when its estimate of the filter's selectivity is off,
    and reading the event's tickets by `ref` over a cursor's range; both read many pages of
    rows to return one (tests/test_query_plans.py shows the plans)."""
    index = _LIST_INDEXES[
        event_id is not None, venue_id is not None and event_id is None, zone_id is not None
    ]
    query = (
        select(Ticket)
        .with_hint(Ticket, f"FORCE INDEX ({index})", "mysql")
        .with_hint(Ticket, f"FORCE INDEX ({index})", "mariadb")
        .order_by(Ticket.created_on.desc(), Ticket.ticket_id.desc())
        .limit(limit)
    )
    if event_id is not None:
        query = query.where(Ticket.event_id == event_id)
    if venue_id is not None:
        query = query.where(Ticket.venue_id == venue_id)
    if zone_id is not None:
        query = query.where(Ticket.zone_id == zone_id)
    if after is not None:
        created, ticket_id = after
        # `created_on <= c` is a range the index can start from; the OR alone is not
        query = query.where(
            Ticket.created_on <= created,
            or_(Ticket.created_on < created, Ticket.ticket_id < ticket_id),
        )
    return query


def seats_per_buyer(conn: Connection, event_id: str) -> dict[str, int]:
    """How many seats of an event each buyer holds: PAID tickets (tickets without a buyer are
    left out, and so are REFUNDED ones)."""
    query = (
        select(Ticket.buyer, func.count())
        .where(Ticket.event_id == event_id, Ticket.buyer.is_not(None), Ticket.status == totals.PAID)
        .group_by(Ticket.buyer)
    )
    return {buyer: n for buyer, n in conn.execute(query)}


def sold_seats(conn: Connection, event_id: str) -> dict[int, list[tuple[str, int, str]]]:
    """Every sold seat of an event (its PAID ticket; a REFUNDED one freed its seat), by zone:
    {zone_id: [(row, column, ticket id), …]}."""
    seats: dict[int, list[tuple[str, int, str]]] = {}
    query = select(Ticket.zone_id, Ticket.seat_row, Ticket.seat_column, Ticket.ticket_id).where(
        Ticket.event_id == event_id, Ticket.status == totals.PAID
    )
    for zone_id, row, column, ticket_id in conn.execute(query):
        seats.setdefault(zone_id, []).append((row, column, ticket_id))
    return seats

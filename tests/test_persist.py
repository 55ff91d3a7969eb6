"""The projection's domain function on real MariaDB: insert once, duplicates are no-ops,
a second owner of a seat is recorded as a conflict, unknown catalog entries are refused."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

import models
from models.tables import Ticket, TicketConflict
from models.tickets import Outcome, TicketRecord, UnknownCatalogEntry, persist_ticket
from tasks.tickets import MalformedTicket, is_transient, parse_ticket, retry_countdown
from tests.helpers import ticket_message


def persist(message: dict) -> Outcome:
    with models.writer().begin() as conn:
        return persist_ticket(conn, TicketRecord.from_json(message))


def count(table) -> int:
    with models.reader().connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))


def test_insert_then_duplicate_is_a_no_op(clean_tickets):
    message = ticket_message()
    assert persist(message) == Outcome.INSERTED
    assert persist(message) == Outcome.DUPLICATE
    assert count(Ticket) == 1
    assert count(TicketConflict) == 0


def test_second_owner_of_a_seat_is_recorded_not_dropped(clean_tickets):
    first, second = ticket_message(), ticket_message()
    assert persist(first) == Outcome.INSERTED
    assert persist(second) == Outcome.CONFLICT
    assert persist(second) == Outcome.CONFLICT  # redelivered conflict: still one record
    with models.reader().connect() as conn:
        owners = conn.execute(select(Ticket.ticket_id)).scalars().all()
        conflict = conn.execute(select(TicketConflict)).one()
    assert owners == [first["ticketId"]]
    assert conflict.ticket_id == second["ticketId"]
    assert conflict.owner_ticket_id == first["ticketId"]


@pytest.mark.parametrize("changes", [{"eventId": "NoSuchEvent"}, {"zoneId": 99}])
def test_unknown_catalog_entry_is_refused(clean_tickets, changes):
    with pytest.raises(UnknownCatalogEntry):
        persist(ticket_message(**changes))
    assert count(Ticket) == 0


@pytest.mark.parametrize(
    "message",
    [
        None,
        [],
        "x",
        {},
        ticket_message(schemaVersion=2),
        ticket_message(price="abc"),
        ticket_message(createdOn="yesterday"),
        {"schemaVersion": 1},
    ],
)
def test_malformed_messages_are_refused(message):
    with pytest.raises(MalformedTicket):
        parse_ticket(message)


def test_transient_errors_are_told_apart(database):
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import IntegrityError, OperationalError

    from tests.helpers import free_port

    dead = create_engine(f"mysql+pymysql://root@127.0.0.1:{free_port()}/x")
    with pytest.raises(OperationalError) as lost:
        dead.connect()
    assert is_transient(lost.value)
    with models.writer().begin() as conn, pytest.raises(IntegrityError) as dup:
        conn.execute(text("INSERT INTO venue VALUES ('Venue1', 'again')"))
    assert not is_transient(dup.value)
    assert not is_transient(ValueError("x"))


def test_backoff_is_capped_below_the_visibility_timeout():
    waits = [retry_countdown(n, cap=20) for n in range(12)]
    assert all(0 < w <= 20 for w in waits)
    assert max(waits[6:]) > 8  # it does grow

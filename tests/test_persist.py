"""The projection's domain functions on real MariaDB: insert once, duplicates are no-ops,
a second owner of a seat is recorded as a conflict, unknown catalog entries are refused; and the
batch write: one multi-row INSERT, one outcome per ticket, batches racing each other."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.pool import NullPool

import models
from models.tables import Ticket, TicketConflict
from models.tickets import (
    Outcome,
    TicketRecord,
    UnknownCatalogEntry,
    persist_ticket,
    persist_tickets,
)
from plumbing import settings
from tasks.tickets import MalformedTicket, is_transient, parse_ticket, retry_countdown, write_batch
from tests.support.factories import ticket_message
from tests.support.processes import wait_until


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

    from tests.support.processes import free_port

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


# --- the batch write (tasks.tickets.write_batch → models.tickets.persist_tickets)


def records(*messages: dict) -> list[TicketRecord]:
    return [TicketRecord.from_json(m) for m in messages]


def seat(n: int, **overrides) -> dict:
    """A ticket for seat n of Event1 zone 2 (rows of 40)."""
    row, column = divmod(n, 40)
    seat_fields = {"zoneId": 2, "row": chr(ord("A") + row), "column": str(column + 1)}
    return ticket_message(**{**seat_fields, **overrides})


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements `engine` runs while the block runs, as the driver sent them (PyMySQL
    keeps the last query it sent for a cursor: an executemany it turned into one statement)."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        sent = cursor._executed
        seen.append(sent if isinstance(sent, str) else bytes(sent).decode())

    event.listen(engine, "after_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "after_cursor_execute", record)


def test_a_batch_of_new_tickets_is_one_insert_statement_and_one_for_the_totals(clean_tickets):
    batch = [seat(n) for n in range(10)]
    with models.writer().connect():
        pass  # a first connection's set-up statements are not the batch's
    with statements(models.writer()) as sent:
        assert write_batch(records(*batch)) == [Outcome.INSERTED] * 10
    assert len(sent) == 2 and sent[0].startswith("INSERT INTO ticket ")
    assert sent[1].startswith("INSERT INTO event_totals ")  # the batch's count, one statement
    assert all(t["ticketId"] in sent[0] for t in batch)  # one statement, all 10 rows
    assert count(Ticket) == 10


def test_a_mixed_batch_gets_one_outcome_per_ticket_and_commits_the_good_rows(clean_tickets):
    """A redelivery, a second owner of a seat, a poison ticket (unknown event), a value the
    column refuses, and one ticket twice in the same batch, among good tickets."""
    owner, redelivered = seat(0), seat(1)
    assert write_batch(records(owner, redelivered)) == [Outcome.INSERTED] * 2
    good1, good2, twice = seat(2), seat(3), seat(4)
    second_owner = seat(0)  # another ticket id for the owner's seat
    poison = seat(5, eventId="NoSuchEvent")
    too_long = seat(6, row="A" * 40)
    batch = [good1, redelivered, second_owner, poison, twice, too_long, good2, twice]
    with statements(models.writer()) as sent:
        outcomes = write_batch(records(*batch))
    assert outcomes[:3] == [Outcome.INSERTED, Outcome.DUPLICATE, Outcome.CONFLICT]
    assert isinstance(outcomes[3], UnknownCatalogEntry)
    assert outcomes[4] == Outcome.INSERTED
    assert isinstance(outcomes[5], DataError) and not is_transient(outcomes[5])
    assert outcomes[6:] == [Outcome.INSERTED, Outcome.DUPLICATE]
    assert sum(s.startswith("SAVEPOINT") for s in sent) == len(batch)  # one per row
    with models.reader().connect() as conn:
        ids = set(conn.execute(select(Ticket.ticket_id)).scalars())
        conflict = conn.execute(select(TicketConflict)).one()
    assert ids == {t["ticketId"] for t in (owner, redelivered, good1, twice, good2)}
    assert (conflict.ticket_id, conflict.owner_ticket_id) == (
        second_owner["ticketId"],
        owner["ticketId"],
    )


@pytest.fixture
def own_engine(database) -> Iterator[Engine]:
    """Connections of their own (session settings must not reach the shared pool)."""
    engine = create_engine(settings.get().database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


def connection_id(conn: Connection) -> int:
    return conn.scalar(text("SELECT CONNECTION_ID()"))


def lock_waits(connection: int) -> bool:
    with models.reader().connect() as conn:
        state = conn.scalar(
            text(
                "SELECT trx_state FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = :c"
            ),
            {"c": connection},
        )
    return state == "LOCK WAIT"


def test_a_transient_error_fails_the_whole_batch_and_writes_nothing(own_engine, clean_tickets):
    """A lock wait timeout (a first copy of the ticket holds its key): the batch raises a
    transient error for every ticket, and none of them is written."""
    held, good = seat(10), seat(11)
    with own_engine.connect() as first:
        first.begin()
        assert persist_tickets(first, records(held)) == [Outcome.INSERTED]  # not committed
        with own_engine.connect() as second:
            second.execute(text("SET SESSION innodb_lock_wait_timeout = 1"))
            second.commit()
            with pytest.raises(OperationalError) as lost, second.begin():
                persist_tickets(second, records(good, held))
        assert is_transient(lost.value)
        first.rollback()
    assert count(Ticket) == 0


def run_batch_in_thread(batch: list[dict]) -> tuple[threading.Thread, dict]:
    """Write `batch` in a transaction of its own on another thread; its connection id and
    outcomes (or exception) land in the returned dict."""
    result: dict = {}

    def run() -> None:
        try:
            with models.writer().begin() as conn:
                result["connection"] = connection_id(conn)
                result["outcomes"] = persist_tickets(conn, records(*batch))
        except Exception as exc:  # the test asserts on it
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.parametrize("first_batch_ends", ["commit", "rollback"])
def test_a_redelivery_inside_another_open_batch_gives_one_row(
    own_engine, clean_tickets, first_batch_ends
):
    """The first copy of a ticket is in a batch not yet committed; its redelivery, in another
    batch, waits for it: DUPLICATE if the first commits, INSERTED if it rolls back."""
    ticket, mate1, mate2 = seat(20), seat(21), seat(22)
    with own_engine.connect() as first:
        first.begin()
        assert persist_tickets(first, records(ticket, mate1)) == [Outcome.INSERTED] * 2
        thread, second = run_batch_in_thread([mate2, ticket])
        wait_until(lambda: "connection" in second and lock_waits(second["connection"]), 20)
        getattr(first, first_batch_ends)()
    thread.join(30)
    again = Outcome.DUPLICATE if first_batch_ends == "commit" else Outcome.INSERTED
    assert second.get("outcomes") == [Outcome.INSERTED, again], second
    with models.reader().connect() as conn:
        assert conn.scalar(select(func.count()).where(Ticket.ticket_id == ticket["ticketId"])) == 1


@pytest.mark.parametrize("first_batch_ends", ["commit", "rollback"])
def test_two_batches_racing_for_one_seat_keep_one_owner(
    own_engine, clean_tickets, first_batch_ends
):
    """Two different tickets for one seat in two open batches: the second waits; if the first
    commits, the second is a CONFLICT recorded once and the first keeps the seat."""
    first_owner, rival, mate = seat(30), seat(30), seat(31)
    with own_engine.connect() as first:
        first.begin()
        assert persist_tickets(first, records(first_owner)) == [Outcome.INSERTED]
        thread, second = run_batch_in_thread([rival, mate])
        wait_until(lambda: "connection" in second and lock_waits(second["connection"]), 20)
        getattr(first, first_batch_ends)()
    thread.join(30)
    with models.reader().connect() as conn:
        owners = conn.execute(select(Ticket.ticket_id).where(Ticket.zone_id == 2)).scalars()
        recorded = conn.execute(select(TicketConflict.ticket_id, TicketConflict.owner_ticket_id))
        owners, recorded = set(owners), list(recorded)
    if first_batch_ends == "commit":
        assert second.get("outcomes") == [Outcome.CONFLICT, Outcome.INSERTED], second
        assert owners == {first_owner["ticketId"], mate["ticketId"]}
        assert recorded == [(rival["ticketId"], first_owner["ticketId"])]
    else:
        assert second.get("outcomes") == [Outcome.INSERTED] * 2, second
        assert owners == {rival["ticketId"], mate["ticketId"]}
        assert recorded == []

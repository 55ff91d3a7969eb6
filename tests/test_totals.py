"""Per-event totals kept by the projection in the transaction of the rows: only inserted PAID
tickets count, concurrent batches lose no increment and lock the totals in one order, and the
recount is right while batches write."""

from __future__ import annotations

import os
import subprocess
import threading
from decimal import Decimal

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

import models
from models import totals
from models.tickets import Outcome, TicketRecord, persist_ticket, persist_tickets
from tasks.tickets import write_batch
from tests.support.factories import ticket_message
from tests.support.processes import BIN, ROOT, wait_until
from tests.test_persist import lock_waits, own_engine, records, run_batch_in_thread, seat

__all__ = ["own_engine"]  # a fixture of test_persist, used here


def stored(event_id: str) -> tuple[int, Decimal] | None:
    """The event's row of event_totals as stored, or None."""
    with models.reader().connect() as conn:
        row = conn.execute(
            text("SELECT ticket_count, revenue FROM event_totals WHERE event_id = :e"),
            {"e": event_id},
        ).first()
    return (row[0], row[1]) if row else None


def from_tickets(event_id: str) -> tuple[int, Decimal]:
    """The event's PAID tickets and their sum, counted in the ticket table."""
    with models.reader().connect() as conn:
        n, total = conn.execute(
            text(
                "SELECT COUNT(*), COALESCE(SUM(price), 0) FROM ticket"
                " WHERE event_id = :e AND status = 'PAID'"
            ),
            {"e": event_id},
        ).one()
    return n, Decimal(total)


def test_a_batch_counts_its_paid_tickets_in_each_events_totals(clean_tickets):
    batch = [
        seat(0),
        seat(1, price="95.50"),
        seat(2, status="REFUNDED"),  # a ticket, but not PAID: not in count and revenue
        ticket_message(venueId="Venue2", eventId="Event3", price="70.00"),
        ticket_message(venueId="Venue2", eventId="Event3", column="2", price="70.00"),
    ]
    assert write_batch(records(*batch)) == [Outcome.INSERTED] * 5
    assert stored("Event1") == (2, Decimal("195.50")) == from_tickets("Event1")
    assert stored("Event3") == (2, Decimal("140.00")) == from_tickets("Event3")
    assert stored("Event2") is None  # no row until a first ticket: count and revenue say 0


def test_duplicates_conflicts_and_refused_tickets_do_not_move_the_totals(clean_tickets):
    owner, other = seat(0), seat(1)
    assert write_batch(records(owner, other)) == [Outcome.INSERTED] * 2
    assert stored("Event1") == (2, Decimal("200.00"))
    second_owner, new = seat(0), seat(2)  # another ticket for the owner's seat, a new seat
    poison = seat(3, eventId="NoSuchEvent")
    outcomes = write_batch(records(owner, second_owner, poison, new, other))
    assert outcomes[:2] == [Outcome.DUPLICATE, Outcome.CONFLICT]
    assert outcomes[3:] == [Outcome.INSERTED, Outcome.DUPLICATE]
    assert stored("Event1") == (3, Decimal("300.00")) == from_tickets("Event1")
    with models.writer().begin() as conn:  # one at a time, as a task alone would
        assert persist_ticket(conn, TicketRecord.from_json(new)) == Outcome.DUPLICATE
        assert persist_ticket(conn, TicketRecord.from_json(seat(2))) == Outcome.CONFLICT
    assert stored("Event1") == (3, Decimal("300.00")) == from_tickets("Event1")


def test_totals_roll_back_with_their_rows(clean_tickets):
    with pytest.raises(RuntimeError), models.writer().begin() as conn:
        persist_tickets(conn, records(seat(0), seat(1)))
        raise RuntimeError("the batch's transaction fails after the write")
    assert stored("Event1") is None and from_tickets("Event1") == (0, 0)


def test_two_batches_of_one_event_at_once_both_count(own_engine, clean_tickets):
    """The second batch has inserted its rows and waits for the totals row that the first,
    still open, has added to: it must add to the first's sum, not to what it read before."""
    assert write_batch(records(seat(0))) == [Outcome.INSERTED]  # the row exists
    with own_engine.connect() as first:
        first.begin()
        assert persist_tickets(first, records(seat(1))) == [Outcome.INSERTED]
        thread, second = run_batch_in_thread([seat(2), seat(3)])
        wait_until(lambda: "connection" in second and lock_waits(second["connection"]), 20)
        first.commit()
    thread.join(30)
    assert second.get("outcomes") == [Outcome.INSERTED] * 2, second
    assert stored("Event1") == (4, Decimal("400.00")) == from_tickets("Event1")


def test_batches_over_several_events_take_the_totals_rows_in_one_order(own_engine, clean_tickets):
    """A batch of Event3 and Event1 tickets meets Event1's row locked by another transaction.
    It waits for Event1 before it touches Event3, so the other may still take Event3 (as a
    batch of Event1 then Event3 would): in the batch's own order, each would wait for the
    other, a deadlock."""
    event3 = dict(venueId="Venue2", eventId="Event3")
    assert write_batch(records(seat(0), ticket_message(**event3))) == [Outcome.INSERTED] * 2
    with own_engine.connect() as other:
        other.begin()
        other.execute(text("SELECT * FROM event_totals WHERE event_id = 'Event1' FOR UPDATE"))
        thread, batch = run_batch_in_thread([ticket_message(**event3, column="2"), seat(1)])
        wait_until(lambda: "connection" in batch and lock_waits(batch["connection"]), 20)
        try:
            other.execute(
                text("SELECT * FROM event_totals WHERE event_id = 'Event3' FOR UPDATE NOWAIT")
            )
        except OperationalError as exc:
            pytest.fail(f"the batch holds Event3's totals while it waits for Event1's: {exc}")
        finally:
            other.commit()
    thread.join(30)
    assert batch.get("outcomes") == [Outcome.INSERTED] * 2, batch
    assert stored("Event1") == (2, Decimal("200.00"))
    assert stored("Event3")[0] == 2


def test_recount_counts_a_batch_that_adds_to_the_totals_while_it_runs(own_engine, clean_tickets):
    """Right after the recount made sure the totals row exists, a batch inserts a ticket and
    adds to the row, and stays open a moment: the recount must wait for it and count its
    ticket (a count taken before the batch commits, written after, would lose it)."""
    assert write_batch(records(seat(0))) == [Outcome.INSERTED]
    with models.writer().begin() as conn:  # totals gone wrong (say, rows written by old code)
        conn.execute(text("UPDATE event_totals SET ticket_count = 7, revenue = 1"))
    batch = own_engine.connect()
    state: dict = {"committed": False}

    def commit_once_recount_waits() -> None:
        wait_until(lambda: lock_waits(state["recount"]), 20, "the recount to wait")
        batch.commit()

    def on_commit(conn) -> None:
        state["committed"] = True

    def before_statement(conn, cursor, statement, parameters, context, executemany) -> None:
        if state["committed"] and "thread" not in state:  # the recount's first step is done
            batch.begin()
            assert persist_tickets(batch, records(seat(1))) == [Outcome.INSERTED]
            state["thread"] = threading.Thread(target=commit_once_recount_waits)
            state["thread"].start()

    with own_engine.connect() as conn:
        state["recount"] = conn.scalar(text("SELECT CONNECTION_ID()"))
        conn.rollback()
        event.listen(conn, "commit", on_commit)
        event.listen(conn, "before_cursor_execute", before_statement)
        found = totals.recount(conn, "Event1")
    state["thread"].join(30)
    batch.close()
    assert found.tickets == 2
    assert stored("Event1") == (2, Decimal("200.00")) == from_tickets("Event1")


def test_recount_command_puts_every_event_right(clean_tickets):
    assert write_batch(records(seat(0), seat(1))) == [Outcome.INSERTED] * 2
    with models.writer().begin() as conn:
        conn.execute(text("UPDATE event_totals SET ticket_count = 0, revenue = 0"))
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "web", "tickets", "recount"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Event1: 2 tickets, 200.00" in done.stdout
    assert "Event2: 0 tickets, 0.00" in done.stdout
    assert stored("Event1") == (2, Decimal("200.00"))
    assert stored("Event2") == (0, Decimal("0.00"))

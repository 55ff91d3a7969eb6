"""Test support: outbox entries (an older release's ticket entries, written as its purchase
script wrote them; the order snapshots of today's), tickets for them, and whether their rows
arrived."""

from __future__ import annotations

import json
import uuid
from typing import Any

from models.seats import keys
from tests.support.factories import ticket_message
from tests.support.processes import wait_until

EVENTS = {  # event → venue, a bucket each
    "Event1": "Venue1",
    "Event3": "Venue2",
    "Event5": "Venue3",
    "Event6": "Venue4",
    "Event7": "Venue5",
}


def tickets_for(count: int, event_id: str = "Event1", **changes: Any) -> list[dict[str, Any]]:
    """`count` tickets on distinct seats of zone 1 of the event (at most 20 a row)."""
    from models.tickets import SCHEMA_VERSION

    return [
        ticket_message(
            **{
                "ticketId": str(uuid.uuid4()),
                "venueId": EVENTS[event_id],
                "eventId": event_id,
                "row": "ABCDEFGH"[n // 20],
                "column": str(n % 20 + 1),
                "schemaVersion": SCHEMA_VERSION,
                **changes,
            }
        )
        for n in range(count)
    ]


def persisted(ticket_ids: list[str]) -> int:
    """How many of the tickets have their row."""
    from sqlalchemy import bindparam, text

    import models

    query = text("SELECT COUNT(*) FROM ticket WHERE ticket_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    with models.writer().connect() as conn:
        return conn.execute(query, {"ids": ticket_ids}).scalar_one()


def wait_persisted(tickets: list[dict[str, Any]], seconds: float = 60) -> None:
    """Until every ticket has its row (and fail the test after `seconds`)."""
    ticket_ids = [t["ticketId"] for t in tickets]
    wait_until(lambda: persisted(ticket_ids) == len(ticket_ids), seconds, "the tickets in MySQL")


def entry_fields(ticket: dict[str, Any], request_id: str = "") -> dict[str, str]:
    """Exactly the fields of an older release's purchase entry for one sold seat (`kind=ticket`:
    the relay and the worker still take them)."""
    return {"kind": "ticket", "ticket": json.dumps(ticket), "rid": request_id}


def add_ticket(r: Any, ticket: dict[str, Any], request_id: str = "") -> str:
    """XADD the entry of `ticket` to its event's outbox stream; the entry id."""
    stream = keys.outbox_stream(keys.bucket(ticket["eventId"]))
    return r.xadd(stream, entry_fields(ticket, request_id))


def add_tickets(r: Any, tickets: list[dict[str, Any]], bucket_no: int) -> list[str]:
    """XADD the entries of `tickets` to one bucket's stream in one MULTI: a reader sees all of
    them or none."""
    pipe = r.pipeline(transaction=True)
    for ticket in tickets:
        pipe.xadd(keys.outbox_stream(bucket_no), entry_fields(ticket))
    return pipe.execute()


def order_snapshots(r: Any) -> list[dict[str, Any]]:
    """The order snapshot of every `kind=order` entry in the outbox streams (the purchase
    script's sales and the box office's transitions), oldest first per stream."""
    return [
        json.loads(fields["order"])
        for stream in keys.outbox_streams()
        for _, fields in r.xrange(stream)
        if fields.get("kind") == "order"
    ]


def stream_lengths(r: Any) -> int:
    """Entries in every outbox stream."""
    return sum(r.xlen(stream) for stream in keys.outbox_streams())


def parked(r: Any) -> list[tuple[str, dict[str, str]]]:
    """Every parked entry, bucket by bucket."""
    return [row for b in range(keys.BUCKETS) for row in r.xrange(keys.parked_stream(b))]


def drop_leftovers(r: Any) -> None:
    """Delete the outbox streams (and their groups): a relay a module starts must not take the
    sales earlier tests left there (made with no relay running) into this module's tickets."""
    r.delete(*keys.outbox_streams())

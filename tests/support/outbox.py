"""Test support: outbox entries written as the purchase script writes them."""

from __future__ import annotations

import json
from typing import Any

from models.seats import keys


def entry_fields(ticket: dict[str, Any], request_id: str = "") -> dict[str, str]:
    """Exactly the fields of the purchase script's entry for one sold seat."""
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


def stream_lengths(r: Any) -> int:
    """Entries in every outbox stream."""
    return sum(r.xlen(stream) for stream in keys.outbox_streams())


def parked(r: Any) -> list[tuple[str, dict[str, str]]]:
    """Every parked entry, bucket by bucket."""
    return [row for b in range(keys.BUCKETS) for row in r.xrange(keys.parked_stream(b))]

"""The outbox streams seen from outside the purchase scripts: what waits, and the relay's reads.

Every script that changes seat state appends its event(s) to its bucket's stream
(`keys.outbox_stream`) in the same atomic call: the purchase and the order scripts an order's
snapshot (`kind=order`); entries of `kind=ticket` are the sale's event of an older release.
The relay reads the streams through the consumer group `keys.RELAY_GROUP` and deletes an entry
only once SNS has it. Every command here names one stream (one Redis Cluster slot); commands on
several streams go out as one pipeline, which a cluster client splits by node.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from models.seats.connection import Client
from models.seats.keys import BUCKETS, RELAY_GROUP, outbox_stream, outbox_streams, parked_stream

# the fields of an entry, as the scripts write them
KIND = "kind"
TICKET = "ticket"  # kind=ticket (an older release's sale): the ticket JSON
ORDER = "order"  # kind=order: the order's snapshot JSON
REQUEST_ID = "rid"
KIND_TICKET = "ticket"
KIND_ORDER = "order"


@dataclass(frozen=True)
class Entry:
    """One outbox entry: its stream, its id and its fields."""

    stream: str
    id: str
    fields: dict[str, str]

    @property
    def bucket(self) -> int:
        return bucket_of(self.stream)


def bucket_of(stream: str) -> int:
    """The bucket number of an outbox stream name (`outbox:{s07}` → 7)."""
    return int(stream.rsplit("{s", 1)[1].rstrip("}"))


def entry_time(entry_id: str) -> float:
    """The unix time in an entry id (its first part: Redis's clock, in milliseconds)."""
    return int(entry_id.split("-", 1)[0]) / 1000


def stats(r: Client, now: float | None = None) -> tuple[int, float | None]:
    """(entries in all outbox streams, age in seconds of the oldest one or None when empty).

    Depth counts entries not yet relayed and entries relayed but not yet deleted (a moment).
    """
    pipe = r.pipeline(transaction=False)
    for stream in outbox_streams():
        pipe.xlen(stream)
        pipe.xrange(stream, "-", "+", count=1)
    replies = pipe.execute()
    depth = sum(int(n) for n in replies[0::2])
    firsts = [_text(rows[0][0]) for rows in replies[1::2] if rows]
    if not firsts:
        return depth, None
    now = time.time() if now is None else now
    return depth, round(max(0.0, now - min(entry_time(i) for i in firsts)), 3)


def depth(r: Client) -> int:
    """Entries in all outbox streams."""
    return stats(r)[0]


def oldest_age(r: Client, now: float | None = None) -> float | None:
    """Age in seconds of the oldest outbox entry, None when every stream is empty."""
    return stats(r, now)[1]


def parked_depth(r: Client) -> int:
    """Entries in all parked streams."""
    pipe = r.pipeline(transaction=False)
    for b in range(BUCKETS):
        pipe.xlen(parked_stream(b))
    return sum(int(n) for n in pipe.execute())


def waiting(r: Client, bucket: int) -> list[Entry]:
    """Every entry of one bucket's stream, delivered to a relay or not (XRANGE)."""
    stream = outbox_stream(bucket)
    return [Entry(stream, _text(i), _fields(f)) for i, f in r.xrange(stream)]


def ensure_groups(r: Client) -> None:
    """The relay's consumer group on every stream, from its first entry (stream made if none)."""
    for stream in outbox_streams():
        try:
            r.xgroup_create(stream, RELAY_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


def read(r: Client, consumer: str, count: int) -> list[Entry]:
    """New entries for `consumer`: up to `count` per stream, one non-blocking XREADGROUP per
    stream (a cluster refuses one over several slots), all in one pipeline."""
    pipe = r.pipeline(transaction=False)
    for stream in outbox_streams():
        pipe.xreadgroup(RELAY_GROUP, consumer, {stream: ">"}, count=count)
    entries: list[Entry] = []
    for reply in pipe.execute():
        for stream, rows in _streams(reply):
            entries.extend(Entry(stream, _text(i), _fields(f)) for i, f in rows if f is not None)
    return entries


def claim_stale(r: Client, consumer: str, min_idle: float, count: int = 100) -> list[Entry]:
    """Entries other consumers read and left unacknowledged for `min_idle` seconds (a relay
    that died), now `consumer`'s: one XAUTOCLAIM per stream, in one pipeline."""
    pipe = r.pipeline(transaction=False)
    for stream in outbox_streams():
        pipe.xautoclaim(stream, RELAY_GROUP, consumer, int(min_idle * 1000), "0-0", count=count)
    entries: list[Entry] = []
    for stream, reply in zip(outbox_streams(), pipe.execute(), strict=True):
        rows = reply[1] if reply else []
        entries.extend(Entry(stream, _text(i), _fields(f)) for i, f in rows if f)
    return entries


def renew(r: Client, consumer: str, entries: Iterable[Entry]) -> None:
    """Reset the idle time of entries `consumer` still holds, so no other relay claims them."""
    by_stream = _ids_by_stream(entries)
    if not by_stream:
        return
    pipe = r.pipeline(transaction=False)
    for stream, ids in by_stream.items():
        pipe.xclaim(stream, RELAY_GROUP, consumer, 0, ids, justid=True)
    pipe.execute()


def delete(r: Client, entries: Sequence[Entry]) -> None:
    """Acknowledge and delete relayed entries: XACK then XDEL per stream, one pipeline."""
    by_stream = _ids_by_stream(entries)
    if not by_stream:
        return
    pipe = r.pipeline(transaction=False)
    for stream, ids in by_stream.items():
        pipe.xack(stream, RELAY_GROUP, *ids)
        pipe.xdel(stream, *ids)
    pipe.execute()


def park(r: Client, entry: Entry, reason: str, attempts: int) -> str:
    """Move an entry to its bucket's parked stream, acknowledged and deleted in the same MULTI
    (the two streams share a slot); returns the parked entry's id."""
    pipe = r.pipeline(transaction=True)
    fields = {
        **entry.fields,
        "sourceId": entry.id,
        "reason": reason[:1000],
        "attempts": str(attempts),
    }
    pipe.xadd(parked_stream(entry.bucket), fields)
    pipe.xack(entry.stream, RELAY_GROUP, entry.id)
    pipe.xdel(entry.stream, entry.id)
    return _text(pipe.execute()[0])


def _ids_by_stream(entries: Iterable[Entry]) -> dict[str, list[str]]:
    by_stream: dict[str, list[str]] = {}
    for entry in entries:
        by_stream.setdefault(entry.stream, []).append(entry.id)
    return by_stream


def _streams(reply: Any) -> list[tuple[str, list]]:
    """XREADGROUP's reply as (stream, rows): a list with RESP2, a dict with RESP3."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(_text(k), v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(_text(stream), rows) for stream, rows in reply]


def _fields(raw: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

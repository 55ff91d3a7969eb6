"""Where an event's seat state and its outbox live in Redis: one of BUCKETS hash tags.

Every key of an event carries the tag of its bucket, `{sNN}`, so a script touching one zone,
the event's counters, the idempotency record and the outbox stream stays in one Redis Cluster
slot. The outbox is one stream per bucket (not per event): a relay reads a fixed set of BUCKETS
streams, whatever events the catalog holds, and each XREADGROUP names one slot. Sixteen buckets
spread the hot keys over up to sixteen slots (and so over the cluster's shards) while keeping the
relay's set of streams small.
"""

from __future__ import annotations

import re
import uuid
import zlib

BUCKETS = 16
RELAY_GROUP = "relay"


def bucket(event_id: str) -> int:
    """The event's bucket: stable across processes and releases (CRC-32, not Python's hash)."""
    return zlib.crc32(event_id.encode()) % BUCKETS


def tag(event_id: str) -> str:
    """The hash tag of every key of the event."""
    return f"{{s{bucket(event_id):02d}}}"


def outbox_stream(bucket_no: int) -> str:
    """The outbox stream of one bucket: the events of every seat change of its events."""
    return f"outbox:{{s{bucket_no:02d}}}"


def outbox_streams() -> list[str]:
    """Every outbox stream, in bucket order."""
    return [outbox_stream(b) for b in range(BUCKETS)]


def parked_stream(bucket_no: int) -> str:
    """Where the relay parks an entry SNS keeps refusing (same slot as its outbox)."""
    return f"outbox:parked:{{s{bucket_no:02d}}}"


def event_key(event_id: str) -> str:
    """The event's sold/capacity hash; it exists only while the event is sellable."""
    return f"seats:{tag(event_id)}:{event_id}:event"


def zone_keys(event_id: str, zone_id: int) -> tuple[str, str, str]:
    """The sold bitmap, the seats-left hash and the event counter of one zone."""
    prefix = f"seats:{tag(event_id)}:{event_id}:zone:{zone_id}"
    return f"{prefix}:sold", f"{prefix}:left", event_key(event_id)


def owners_key(event_id: str, zone_id: int) -> str:
    """Who holds each taken seat of a zone: bit offset → ticket id."""
    return f"seats:{tag(event_id)}:{event_id}:zone:{zone_id}:owner"


def buyers_key(event_id: str) -> str:
    """Seats held or sold per buyer of the event: buyer id → count (the per-buyer limit)."""
    return f"seats:{tag(event_id)}:{event_id}:buyers"


def rate_key(event_id: str, buyer: str) -> str:
    """A buyer's purchase attempts on the event (the rate limit); it expires on its own."""
    return f"seats:{tag(event_id)}:{event_id}:rate:{buyer}"


def idempotency_key(event_id: str, key_hash: str) -> str:
    """A purchase's idempotency record (the hash of buyer and key), in the event's slot so the
    purchase script writes it."""
    return f"seats:{tag(event_id)}:{event_id}:idem:{key_hash}"


def event_prefix(event_id: str) -> str:
    """The common start of every seat key of the event; the order scripts build the zone and
    order keys they meet from it (`<prefix>zone:<z>:sold`, `<prefix>order:<id>`), all in the
    event's slot."""
    return f"seats:{tag(event_id)}:{event_id}:"


def held_key(event_id: str, zone_id: int) -> str:
    """The zone's bitmap of held seats (a subset of the sold bitmap: held seats are taken too)."""
    return f"{event_prefix(event_id)}zone:{zone_id}:held"


def holder_key(event_id: str, zone_id: int) -> str:
    """Which order holds each held seat of a zone: bit offset → order id (held seats only)."""
    return f"{event_prefix(event_id)}zone:{zone_id}:holder"


def order_key(event_id: str, order_id: str) -> str:
    """An order: hash of `doc` (its snapshot JSON), `cells`, `total`, `exp` (ms)."""
    return f"{event_prefix(event_id)}order:{order_id}"


def holds_key(event_id: str) -> str:
    """The event's HELD orders by expiry: sorted set, score = expiresAt in ms (Redis TIME)."""
    return f"{event_prefix(event_id)}holds"


def payments_key(event_id: str) -> str:
    """Which order each payment id of the event paid (or tried to): paymentId → order id."""
    return f"{event_prefix(event_id)}payments"


def front_key(event_id: str, zone_id: int) -> str:
    """Where best available starts scanning a zone: quantity → a row before which no row has
    that many adjacent free seats (hash)."""
    return f"{event_prefix(event_id)}zone:{zone_id}:front"


def runs_key(event_id: str, zone_id: int) -> str:
    """Rows best available found without a block: row label → the longest run of free seats
    the row had then (hash; a freed seat deletes its row's field)."""
    return f"{event_prefix(event_id)}zone:{zone_id}:runs"


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def new_order_id(event_id: str, name: str | None = None) -> str:
    """A new order id: a random uuid (or, with `name`, the uuid5 of that name: the same for
    every call) whose last hex digit is the event's bucket, so the routes that name only the
    order (`/orders/{id}`) find the slot of its event lookup."""
    base = uuid.uuid4() if name is None else uuid.uuid5(_KEYED_ORDERS, name)
    return str(base)[:-1] + format(bucket(event_id), "x")


_KEYED_ORDERS = uuid.UUID("8a0d6f2e-4d1c-5b7a-9e3f-1c2b3a4d5e6f")


def order_bucket(order_id: str) -> int | None:
    """The bucket an order id names (its last hex digit), or None for anything but such a uuid."""
    if not _UUID.match(order_id):
        return None
    return int(order_id[-1], 16)


def order_event_key(order_id: str) -> str | None:
    """Which event an order belongs to (a string key, written by the hold script in the event's
    slot); None when the id cannot be an order id."""
    b = order_bucket(order_id)
    return None if b is None else f"seats:{{s{b:02d}}}:order-event:{order_id}"

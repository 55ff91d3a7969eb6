"""An event's orders as the order scripts keep them in Redis, written back from their stored
snapshots (a rebuild after Redis lost data): every key exactly as a hold and the transitions
after it left it, so the scripts cannot tell a rebuilt order from one they made.

Per order (`keys.order_key`): `doc` (the snapshot, `paymentId` null until paid), `cells` ([[zone,
bit, row label, ticket id, row index]], one per seat in the snapshot's order), `total` (the
canonical amount a confirmation must match), `exp` (the hold's expiry in ms), and
`rejected:<payment>` for each late payment that was refused. Per event: the `holds` sorted set
(HELD orders by expiry, due ones included: the first script or sweep that meets one expires it,
once, with its event, as it would have before the loss), the `payments` hash (paid, refunded and
refused payments → their order), and the order id → event lookup (`keys.order_event_key`, for
ids that name the event's bucket, as the hold writes it). Seats are the caller's: a HELD order's
cells are held (sold + held bitmaps, owner = ticket, holder = order) and count for its buyer.

MySQL keeps neither the reason of a refused late payment (only that it was refused: what the
confirm script checks) nor the snapshot's `updatedOn`, `paidOn` and `refundedOn`, which no
script reads; a rebuilt `doc` has every other field, and the next transition sets `updatedOn`
again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from models.catalog import ZoneSpec, row_index
from models.seats import keys
from models.seats.connection import Client
from models.seats.orders import canonical_amount
from models.seats.scripts import seat_bit

HELD = "HELD"
PAID_PAYMENTS = ("PAID", "REFUNDED")  # statuses whose paymentId the payments hash binds
REJECTED_REASON = "LATE_PAYMENT_REJECTED"  # what a rebuilt `rejected:<payment>` holds
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITE_BATCH = 500  # orders per MULTI/EXEC


def epoch_ms(iso: str) -> int:
    """Milliseconds since the epoch of an ISO-8601 time with its offset (`…Z`), exactly."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass(frozen=True)
class HeldCell:
    """A seat a HELD order holds: its zone, bit, row label, ticket and order."""

    zone_id: int
    bit: int
    row: str
    ticket_id: str
    order_id: str
    buyer: str


@dataclass
class OrderState:
    """What the order keys of one event hold, computed from the stored orders."""

    hashes: dict[str, dict[str, str]] = field(default_factory=dict)  # order id → hash
    holds: dict[str, int] = field(default_factory=dict)  # HELD order id → expiry ms
    payments: dict[str, str] = field(default_factory=dict)  # payment id → order id
    lookups: list[str] = field(default_factory=list)  # order ids with an event lookup
    held: list[HeldCell] = field(default_factory=list)


def cells_of(doc: Mapping[str, Any], zones: Mapping[int, ZoneSpec]) -> list[list[Any]]:
    """The order's `cells` as the hold script stores them, in the order of its seats."""
    cells: list[list[Any]] = []
    for seat in doc["seats"]:
        zone = zones[int(seat["zoneId"])]
        index = row_index(seat["row"])
        bit = seat_bit(zone, index, int(seat["column"]))
        cells.append([zone.zone_id, bit, seat["row"], seat["ticketId"], index])
    return cells


def order_state(
    event_id: str,
    docs: Iterable[Mapping[str, Any]],
    zones: Mapping[int, ZoneSpec],
    rejected: Mapping[str, str] | None = None,
) -> OrderState:
    """The order keys of an event from its orders' snapshots (the contract's JSON) and its
    refused late payments ({payment id: order id})."""
    state = OrderState()
    bucket = keys.bucket(event_id)
    for stored in docs:
        doc = {"paymentId": None, **stored}  # a hold's doc carries paymentId: null
        order_id = doc["orderId"]
        cells = cells_of(doc, zones)
        exp = epoch_ms(doc["expiresAt"]) if doc.get("expiresAt") else 0
        state.hashes[order_id] = {
            "doc": json.dumps(doc),
            "cells": json.dumps(cells),
            "total": canonical_amount(doc["total"]),
            "exp": str(exp),
        }
        if doc["status"] == HELD:
            state.holds[order_id] = exp
            state.held += [HeldCell(c[0], c[1], c[2], c[3], order_id, doc["buyer"]) for c in cells]
        if doc["status"] in PAID_PAYMENTS and doc["paymentId"]:
            state.payments[doc["paymentId"]] = order_id
        if keys.order_bucket(order_id) == bucket:
            state.lookups.append(order_id)
    for payment_id, order_id in (rejected or {}).items():
        if order_id in state.hashes:
            state.hashes[order_id][f"rejected:{payment_id}"] = REJECTED_REASON
            state.payments[payment_id] = order_id
    return state


def stray_orders(r: Client, event_id: str, kept: Iterable[str]) -> list[str]:
    """Order hashes of the event in Redis that MySQL does not have (their events never reached
    it): their ids. A SCAN of the keyspace (on a cluster, of every primary)."""
    prefix = keys.order_key(event_id, "")
    found = {_text(k)[len(prefix) :] for k in r.scan_iter(match=_glob(prefix) + "*", count=1000)}
    return sorted(found - set(kept))


def write_order_state(r: Client, event_id: str, state: OrderState) -> None:
    """Replace the event's order keys with `state` (the seats are the caller's): holds,
    payments, each order's hash and lookup; order hashes MySQL does not have are deleted."""
    strays = stray_orders(r, event_id, state.hashes)
    holds_key, payments_key = keys.holds_key(event_id), keys.payments_key(event_id)
    pipe = r.pipeline(transaction=True)  # one slot: every key carries the event's tag
    pipe.delete(holds_key, payments_key)
    if state.holds:
        pipe.zadd(holds_key, state.holds)
    if state.payments:
        pipe.hset(payments_key, mapping=state.payments)
    for order_id in strays:
        pipe.delete(keys.order_key(event_id, order_id))
    pipe.execute()
    lookups = set(state.lookups)
    ids = list(state.hashes)
    for start in range(0, len(ids), _WRITE_BATCH):
        pipe = r.pipeline(transaction=True)
        for order_id in ids[start : start + _WRITE_BATCH]:
            order_key = keys.order_key(event_id, order_id)
            pipe.delete(order_key)
            pipe.hset(order_key, mapping=state.hashes[order_id])
            if order_id in lookups:
                pipe.set(keys.order_event_key(order_id), event_id)
        pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob(text: str) -> str:
    """`text` as a literal SCAN MATCH pattern (the hash tag's braces are literal already)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)

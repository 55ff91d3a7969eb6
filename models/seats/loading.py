"""Creating, disabling and rebuilding an event's seat state, and the catalog copy in Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from models.catalog import Catalog, EventSpec, ZoneSpec, row_index, row_label
from models.seats import keys
from models.seats.connection import Client
from models.seats.order_state import HeldCell, order_state, write_order_state
from models.seats.scripts import SeatScripts, seat_bit

log = logging.getLogger(__name__)

CATALOG_KEY = "ticketing:catalog"


def event_loaded(r: Client, event_id: str) -> bool:
    """Whether the event's seat state exists (an event without it is not sold: NOT_LOADED)."""
    return bool(r.exists(keys.event_key(event_id)))


def has_seat_state(r: Client, event_id: str, zone_ids: Iterable[int]) -> bool:
    """Whether Redis holds any seat state of the event: its counter hash, or a zone's bitmap
    or counters (a rebuild that is under way, or that stopped, leaves zones without the hash)."""
    found = [keys.event_key(event_id)]
    for zone_id in zone_ids:
        found += keys.zone_keys(event_id, zone_id)[:2]
    return bool(r.exists(*found))  # one slot: every key carries the event's hash tag


def disable_event(r: Client, event_id: str) -> None:
    """Make an event unsellable until `rebuild_event` finishes: purchases answer 503."""
    r.delete(keys.event_key(event_id))


def rebuild_event(
    r: Client,
    event: EventSpec,
    zones: dict[int, ZoneSpec],
    sold: dict[int, list[tuple[str, int, str]]],
    buyers: dict[str, int] | None = None,
    orders: Iterable[Mapping[str, Any]] = (),
    rejected: Mapping[str, str] | None = None,
) -> int:
    """Write an event's seat state from its persisted tickets ({zone: [(row, column, ticket
    id)]}: single seats and paid orders' seats), their buyers' seat counts, its orders'
    snapshots (the contract's JSON; `order_state` writes their keys, and a HELD order's seats
    are held by it and count for its buyer) and its refused late payments ({payment: order}):
    bitmaps, seats left, owners, holders and per-buyer counts; the event hash last, so the event
    is sellable only once every zone is written. Returns the seats marked taken (sold or held)."""
    state = order_state(event.event_id, orders, zones, rejected)
    counts = dict(buyers or {})
    held_by_zone: dict[int, list[HeldCell]] = {}
    for cell in state.held:
        held_by_zone.setdefault(cell.zone_id, []).append(cell)
        counts[cell.buyer] = counts.get(cell.buyer, 0) + 1
    total = 0
    for zone in zones.values():
        cells = sold.get(zone.zone_id, [])
        bitmap = bytearray((zone.rows * zone.columns + 7) // 8)
        held_bitmap = bytearray(len(bitmap))
        per_row: dict[str, int] = {}
        owners: dict[int, str] = {}
        holders: dict[int, str] = {}
        for row, column, ticket_id in cells:
            bit = seat_bit(zone, row_index(row), column)
            bitmap[bit // 8] |= 0x80 >> (bit % 8)  # Redis bitmaps are big-endian within a byte
            per_row[row] = per_row.get(row, 0) + 1
            owners[bit] = ticket_id
        for held in held_by_zone.get(zone.zone_id, []):
            if held.bit in owners:  # sold as well: MySQL disagrees with itself; the sale wins
                log.warning("%s: seat %s held by %s is sold", event.event_id, held, held.order_id)
                continue
            bitmap[held.bit // 8] |= 0x80 >> (held.bit % 8)
            held_bitmap[held.bit // 8] |= 0x80 >> (held.bit % 8)
            per_row[held.row] = per_row.get(held.row, 0) + 1
            owners[held.bit] = held.ticket_id
            holders[held.bit] = held.order_id
        taken = len(owners)
        left = {
            row_label(i): zone.row_capacity - per_row.get(row_label(i), 0) for i in range(zone.rows)
        }
        left["zone"] = zone.capacity - taken
        sold_key, left_key, _ = keys.zone_keys(event.event_id, zone.zone_id)
        owners_key = keys.owners_key(event.event_id, zone.zone_id)
        pipe = r.pipeline(transaction=True)  # one slot: MULTI/EXEC works on a cluster too
        held_key = keys.held_key(event.event_id, zone.zone_id)
        holder_key = keys.holder_key(event.event_id, zone.zone_id)
        front_key = keys.front_key(event.event_id, zone.zone_id)
        runs_key = keys.runs_key(event.event_id, zone.zone_id)
        pipe.delete(sold_key, left_key, owners_key, held_key, holder_key, front_key, runs_key)
        pipe.set(sold_key, bytes(bitmap))
        pipe.hset(left_key, mapping=left)
        if owners:
            pipe.hset(owners_key, mapping=owners)
        if holders:
            pipe.set(held_key, bytes(held_bitmap))
            pipe.hset(holder_key, mapping=holders)
        pipe.execute()
        total += taken
    write_order_state(r, event.event_id, state)
    pipe = r.pipeline(transaction=True)
    pipe.delete(keys.buyers_key(event.event_id))
    counts = {buyer: n for buyer, n in counts.items() if n > 0}
    if counts:
        pipe.hset(keys.buyers_key(event.event_id), mapping=counts)
    pipe.execute()
    r.hset(keys.event_key(event.event_id), mapping={"sold": total, "capacity": event.capacity})
    return total


def load_catalog(r: Client, catalog: Catalog) -> None:
    """Create missing counters of every loaded event, then publish the catalog to the API.

    Only for events whose seat state exists (`event_loaded`): the others must be rebuilt from
    MySQL (`models.seat_repair.rebuild`), never initialised as empty — after a Redis loss that
    would sell every seat again.
    """
    scripts = SeatScripts(r)
    for event in catalog.events.values():
        if not event_loaded(r, event.event_id):
            continue
        for zone in catalog.venues[event.venue_id].zones.values():
            scripts.initialise(event, zone)
    publish_catalog(r, catalog)


def publish_catalog(r: Client, catalog: Catalog) -> None:
    """The catalog copy the purchase API reads."""
    r.set(CATALOG_KEY, json.dumps(catalog.to_dict()))


def read_catalog(r: Client) -> Catalog | None:
    """The catalog the purchase API sells from, or None before it was loaded."""
    raw = r.get(CATALOG_KEY)
    return Catalog.from_dict(json.loads(raw)) if raw else None

"""Seat state in Redis: the Lua scripts that sell and release a seat, and catalog loading.

The seed's model, per (event, zone): a bitmap of sold seats (bit = rowIndex × columns +
colIndex) and a hash of seats left per row and for the zone; per event, sold vs capacity.
Every key of an event carries the hash tag ``{eventId}``, so all keys a script touches (one
zone plus the event counter) live in one Redis Cluster slot. The event counter is why the tag
is the event and not the (event, zone) pair: it must change in the same atomic call as the zone.
"""

from __future__ import annotations

import json
import os
from functools import cache

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import settings
from models.catalog import Catalog, EventSpec, ZoneSpec, row_index, row_label

CATALOG_KEY = "ticketing:catalog"

# Returns OK or the outcome code of the contract. SEAT_TAKEN is checked before the counters.
PURCHASE_LUA = """
local sold, left, event = KEYS[1], KEYS[2], KEYS[3]
local bit, row = tonumber(ARGV[1]), ARGV[2]
if redis.call('EXISTS', left) == 0 or redis.call('EXISTS', event) == 0 then
  return 'NOT_LOADED'
end
if redis.call('GETBIT', sold, bit) == 1 then return 'SEAT_TAKEN' end
local row_left = tonumber(redis.call('HGET', left, row))
if row_left == nil then return 'NOT_LOADED' end
if row_left <= 0 then return 'ROW_FULL' end
if tonumber(redis.call('HGET', left, 'zone')) <= 0 then return 'ZONE_FULL' end
local counts = redis.call('HMGET', event, 'sold', 'capacity')
if tonumber(counts[1]) >= tonumber(counts[2]) then return 'EVENT_SOLD_OUT' end
redis.call('SETBIT', sold, bit, 1)
redis.call('HINCRBY', left, row, -1)
redis.call('HINCRBY', left, 'zone', -1)
redis.call('HINCRBY', event, 'sold', 1)
return 'OK'
"""

# Returns 1 if the seat was sold and is now free again, 0 if it was not sold.
RELEASE_LUA = """
local sold, left, event = KEYS[1], KEYS[2], KEYS[3]
local bit, row = tonumber(ARGV[1]), ARGV[2]
if redis.call('GETBIT', sold, bit) == 0 then return 0 end
redis.call('SETBIT', sold, bit, 0)
redis.call('HINCRBY', left, row, 1)
redis.call('HINCRBY', left, 'zone', 1)
redis.call('HINCRBY', event, 'sold', -1)
return 1
"""

# Creates counters that do not exist yet; never touches a counter or bit that exists, so
# loading the catalog again never un-sells a seat. ARGV: zone capacity, row capacity, event
# capacity, then the row labels.
INITIALISE_LUA = """
local left, event = KEYS[1], KEYS[2]
redis.call('HSETNX', left, 'zone', ARGV[1])
for i = 4, #ARGV do redis.call('HSETNX', left, ARGV[i], ARGV[2]) end
redis.call('HSETNX', event, 'sold', 0)
redis.call('HSET', event, 'capacity', ARGV[3])
return 1
"""


def event_key(event_id: str) -> str:
    """The event's sold/capacity hash; it exists only while the event is sellable."""
    return "seats:{" + event_id + "}:event"


def zone_keys(event_id: str, zone_id: int) -> tuple[str, str, str]:
    """The sold bitmap, the seats-left hash and the event counter, all under one hash tag."""
    tag = "{" + event_id + "}"
    return (
        f"seats:{tag}:zone:{zone_id}:sold",
        f"seats:{tag}:zone:{zone_id}:left",
        event_key(event_id),
    )


def seat_bit(zone: ZoneSpec, row_index: int, column: int) -> int:
    """Bit offset of a seat: rowIndex × columns + colIndex (columns are 1-based on the wire)."""
    return row_index * zone.columns + (column - 1)


def client(url: str | None = None) -> redis.Redis:
    """This process's Redis client: short timeouts, and no silent retry of a script call."""
    return _client(url or settings.get().redis_url, os.getpid())


@cache
def _client(url: str, pid: int) -> redis.Redis:
    timeout = settings.get().redis_socket_timeout
    # No retries: a purchase script that timed out may have run; running it again could answer
    # SEAT_TAKEN to the buyer who holds the seat. The caller answers 503 instead.
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
        decode_responses=True,
    )


class SeatScripts:
    """The registered scripts of one client; each call is one EVALSHA (EVAL once after a flush)."""

    def __init__(self, r: redis.Redis) -> None:
        self.redis = r
        self._purchase = r.register_script(PURCHASE_LUA)
        self._release = r.register_script(RELEASE_LUA)
        self._initialise = r.register_script(INITIALISE_LUA)

    def purchase(self, event_id: str, zone: ZoneSpec, row_index: int, column: int) -> str:
        """Sell one seat if it and every counter allow; return OK or the outcome code."""
        return self._purchase(
            keys=zone_keys(event_id, zone.zone_id),
            args=[seat_bit(zone, row_index, column), row_label(row_index)],
        )

    def release(self, event_id: str, zone: ZoneSpec, row_index: int, column: int) -> bool:
        """Make a sold seat free again; False if it was not sold."""
        return bool(
            self._release(
                keys=zone_keys(event_id, zone.zone_id),
                args=[seat_bit(zone, row_index, column), row_label(row_index)],
            )
        )

    def initialise(self, event: EventSpec, zone: ZoneSpec) -> None:
        """Create the counters of one (event, zone) that are missing."""
        _, left, event_hash = zone_keys(event.event_id, zone.zone_id)
        rows = [row_label(i) for i in range(zone.rows)]
        self._initialise(
            keys=[left, event_hash],
            args=[zone.capacity, zone.row_capacity, event.capacity, *rows],
        )


def event_loaded(r: redis.Redis, event_id: str) -> bool:
    """Whether the event's seat state exists (an event without it is not sold: NOT_LOADED)."""
    return bool(r.exists(event_key(event_id)))


def disable_event(r: redis.Redis, event_id: str) -> None:
    """Make an event unsellable until `rebuild_event` finishes: purchases answer 503."""
    r.delete(event_key(event_id))


def rebuild_event(
    r: redis.Redis,
    event: EventSpec,
    zones: dict[int, ZoneSpec],
    sold: dict[int, list[tuple[str, int]]],
) -> int:
    """Write an event's seat state from its persisted tickets; the event hash last, so the
    event is sellable only once every zone is written. Returns the seats marked sold."""
    total = 0
    for zone in zones.values():
        cells = sold.get(zone.zone_id, [])
        bitmap = bytearray((zone.rows * zone.columns + 7) // 8)
        per_row: dict[str, int] = {}
        for row, column in cells:
            bit = seat_bit(zone, row_index(row), column)
            bitmap[bit // 8] |= 0x80 >> (bit % 8)  # Redis bitmaps are big-endian within a byte
            per_row[row] = per_row.get(row, 0) + 1
        left = {
            row_label(i): zone.row_capacity - per_row.get(row_label(i), 0) for i in range(zone.rows)
        }
        left["zone"] = zone.capacity - len(cells)
        sold_key, left_key, _ = zone_keys(event.event_id, zone.zone_id)
        pipe = r.pipeline(transaction=True)  # one slot: MULTI/EXEC works on a cluster too
        pipe.delete(sold_key, left_key)
        pipe.set(sold_key, bytes(bitmap))
        pipe.hset(left_key, mapping=left)
        pipe.execute()
        total += len(cells)
    r.hset(event_key(event.event_id), mapping={"sold": total, "capacity": event.capacity})
    return total


@cache
def scripts_for(r: redis.Redis) -> SeatScripts:
    """The scripts bound to a client, registered once per client."""
    return SeatScripts(r)


def load_catalog(r: redis.Redis, catalog: Catalog) -> None:
    """Create missing counters of every loaded event, then publish the catalog to the API.

    Only for events whose seat state exists (`event_loaded`): the others must be rebuilt from
    MySQL (`web.seat_repair.rebuild`), never initialised as empty — after a Redis loss that
    would sell every seat again.
    """
    scripts = scripts_for(r)
    for event in catalog.events.values():
        if not event_loaded(r, event.event_id):
            continue
        for zone in catalog.venues[event.venue_id].zones.values():
            scripts.initialise(event, zone)
    publish_catalog(r, catalog)


def publish_catalog(r: redis.Redis, catalog: Catalog) -> None:
    """The catalog copy the purchase API reads."""
    r.set(CATALOG_KEY, json.dumps(catalog.to_dict()))


def read_catalog(r: redis.Redis) -> Catalog | None:
    """The catalog the purchase API sells from, or None before it was loaded."""
    raw = r.get(CATALOG_KEY)
    return Catalog.from_dict(json.loads(raw)) if raw else None

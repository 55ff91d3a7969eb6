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
from collections.abc import Iterable
from functools import cache

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from models.catalog import Catalog, EventSpec, ZoneSpec, row_index, row_label
from models.seats.keys import event_key, idempotency_key, owners_key, zone_keys
from plumbing import settings

__all__ = ["event_key", "idempotency_key", "owners_key", "zone_keys"]

CATALOG_KEY = "ticketing:catalog"

# Sells one seat: returns OK or the outcome code of the contract. SEAT_TAKEN is checked before
# the counters. Shared by the plain and the idempotent purchase scripts.
DECIDE_LUA = """
local function decide(sold, left, event, bit, row)
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
end
"""

PURCHASE_LUA = DECIDE_LUA + "return decide(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2])"

# With an Idempotency-Key: an existing record for the key is returned as it is (no decision);
# else the seat is decided, and on OK the record {fp, state=pending, ticket} is stored with its
# TTL in the same atomic call, so no crash can separate the sold seat from the key.
# ARGV: bit, row, fingerprint, ticket JSON, TTL seconds. Returns {outcome, fp, state, ticket}.
IDEMPOTENT_PURCHASE_LUA = (
    DECIDE_LUA
    + """
local idem = KEYS[4]
local record = redis.call('HMGET', idem, 'fp', 'state', 'ticket')
if record[1] then return {'REPLAY', record[1], record[2], record[3]} end
local outcome = decide(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2])
if outcome == 'OK' then
  redis.call('HSET', idem, 'fp', ARGV[3], 'state', 'pending', 'ticket', ARGV[4])
  redis.call('EXPIRE', idem, tonumber(ARGV[5]))
end
return {outcome}
"""
)

# Returns 1 if the seat was sold and is now free again, 0 if it was not sold. An optional
# KEYS[4], the purchase's idempotency record, is deleted with it: a retry decides again.
RELEASE_LUA = """
local sold, left, event = KEYS[1], KEYS[2], KEYS[3]
local bit, row = tonumber(ARGV[1]), ARGV[2]
if KEYS[4] then redis.call('DEL', KEYS[4]) end
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

# The seat map of one zone in one round trip: the sold bitmap as hex (it is binary, and the
# client decodes replies as text) and the seats-left hash; NOT_LOADED without seat state.
ZONE_STATE_LUA = """
local sold, left, event = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', left) == 0 or redis.call('EXISTS', event) == 0 then
  return 'NOT_LOADED'
end
local raw = redis.call('GET', sold) or ''
local hex = {}
for i = 1, #raw do hex[i] = string.format('%02x', string.byte(raw, i)) end
return {table.concat(hex), redis.call('HGETALL', left)}
"""

# Seats left in every zone of an event: KEYS[1] the event hash, then each zone's left hash.
AVAILABILITY_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'NOT_LOADED' end
local out = {}
for i = 2, #KEYS do
  local n = redis.call('HGET', KEYS[i], 'zone')
  if not n then return 'NOT_LOADED' end
  out[#out + 1] = n
end
return out
"""

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


def seat_bit(zone: ZoneSpec, row_index: int, column: int) -> int:
    """Bit offset of a seat: rowIndex × columns + colIndex (columns are 1-based on the wire)."""
    return row_index * zone.columns + (column - 1)


Client = redis.Redis | RedisCluster


def client(url: str | None = None) -> Client:
    """This process's Redis client: short timeouts, and no silent retry of a script call."""
    s = settings.get()
    return _client(url or s.redis_url, s.redis_cluster, os.getpid())


@cache
def _client(url: str, cluster: bool, pid: int) -> Client:
    return connect(url, cluster=cluster)


def connect(
    url: str, *, cluster: bool, timeout: float | None = None, decode_responses: bool = True
) -> Client:
    """A new Redis client: a RedisCluster on a cluster's configuration endpoint, else a Redis.

    No retries either way: a purchase script that timed out may have run; running it again
    could answer SEAT_TAKEN to the buyer who holds the seat. The caller answers 503 instead.
    A cluster client still follows MOVED and ASK redirections (a redirected command did not
    run), but with `retry` at 0 it does not re-send a command after a timeout or a lost
    connection; it refreshes its slot map and raises.
    """
    timeout = timeout or settings.get().redis_socket_timeout
    options = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": decode_responses,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, health_check_interval=30, **options)


def ping(r: Client) -> bool:
    """Whether Redis answers; on a cluster every master must, since any event may live on any."""
    if isinstance(r, RedisCluster):
        return bool(r.ping(target_nodes=RedisCluster.PRIMARIES))
    return bool(r.ping())


class SeatScripts:
    """The registered scripts of one client; each call is one EVALSHA (EVAL once after a flush)."""

    def __init__(self, r: Client) -> None:
        self.redis = r
        self._purchase = r.register_script(PURCHASE_LUA)
        self._release = r.register_script(RELEASE_LUA)
        self._initialise = r.register_script(INITIALISE_LUA)
        self._idempotent_purchase = r.register_script(IDEMPOTENT_PURCHASE_LUA)
        self._zone_state = r.register_script(ZONE_STATE_LUA)
        self._availability = r.register_script(AVAILABILITY_LUA)

    def purchase(self, event_id: str, zone: ZoneSpec, row_index: int, column: int) -> str:
        """Sell one seat if it and every counter allow; return OK or the outcome code."""
        return self._purchase(
            keys=zone_keys(event_id, zone.zone_id),
            args=[seat_bit(zone, row_index, column), row_label(row_index)],
        )

    def purchase_idempotent(
        self,
        event_id: str,
        zone: ZoneSpec,
        row_index: int,
        column: int,
        *,
        record_key: str,
        fingerprint: str,
        ticket_json: str,
    ) -> tuple[str, dict[str, str] | None]:
        """Like `purchase`, keyed: (REPLAY, the stored record) if the key has a record, else
        (outcome, None), the record stored on OK in the same call."""
        reply = self._idempotent_purchase(
            keys=[*zone_keys(event_id, zone.zone_id), record_key],
            args=[
                seat_bit(zone, row_index, column),
                row_label(row_index),
                fingerprint,
                ticket_json,
                IDEMPOTENCY_TTL_SECONDS,
            ],
        )
        if reply[0] == "REPLAY":
            return "REPLAY", {"fp": reply[1], "state": reply[2], "ticket": reply[3]}
        return reply[0], None

    def release(
        self,
        event_id: str,
        zone: ZoneSpec,
        row_index: int,
        column: int,
        record_key: str | None = None,
    ) -> bool:
        """Make a sold seat free again (and drop its idempotency record); False if not sold."""
        keys = list(zone_keys(event_id, zone.zone_id))
        if record_key is not None:
            keys.append(record_key)
        return bool(
            self._release(keys=keys, args=[seat_bit(zone, row_index, column), row_label(row_index)])
        )

    def zone_state(self, event_id: str, zone: ZoneSpec) -> tuple[list[str], dict[str, int]] | None:
        """One row string per row ('1' = sold) and the seats-left hash; None if not loaded."""
        reply = self._zone_state(keys=zone_keys(event_id, zone.zone_id))
        if reply == "NOT_LOADED":
            return None
        hex_bitmap, flat = reply
        bits = "".join(f"{b:08b}" for b in bytes.fromhex(hex_bitmap))
        bits = bits.ljust(zone.rows * zone.columns, "0")
        grid = [bits[i * zone.columns : (i + 1) * zone.columns] for i in range(zone.rows)]
        return grid, {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def availability(self, event_id: str, zone_ids: list[int]) -> dict[int, int] | None:
        """Seats left per zone of an event in one call; None if its seat state is not loaded."""
        keys = [event_key(event_id)] + [zone_keys(event_id, z)[1] for z in zone_ids]
        reply = self._availability(keys=keys)
        if reply == "NOT_LOADED":
            return None
        return {z: int(n) for z, n in zip(zone_ids, reply, strict=True)}

    def initialise(self, event: EventSpec, zone: ZoneSpec) -> None:
        """Create the counters of one (event, zone) that are missing."""
        _, left, event_hash = zone_keys(event.event_id, zone.zone_id)
        rows = [row_label(i) for i in range(zone.rows)]
        self._initialise(
            keys=[left, event_hash],
            args=[zone.capacity, zone.row_capacity, event.capacity, *rows],
        )


def event_loaded(r: Client, event_id: str) -> bool:
    """Whether the event's seat state exists (an event without it is not sold: NOT_LOADED)."""
    return bool(r.exists(event_key(event_id)))


def has_seat_state(r: Client, event_id: str, zone_ids: Iterable[int]) -> bool:
    """Whether Redis holds any seat state of the event: its counter hash, or a zone's bitmap
    or counters (a rebuild that is under way, or that stopped, leaves zones without the hash)."""
    keys = [event_key(event_id)]
    for zone_id in zone_ids:
        keys += zone_keys(event_id, zone_id)[:2]
    return bool(r.exists(*keys))  # one slot: every key carries the event's hash tag


def disable_event(r: Client, event_id: str) -> None:
    """Make an event unsellable until `rebuild_event` finishes: purchases answer 503."""
    r.delete(event_key(event_id))


def rebuild_event(
    r: Client,
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
def scripts_for(r: Client) -> SeatScripts:
    """The scripts bound to a client, registered once per client."""
    return SeatScripts(r)


def load_catalog(r: Client, catalog: Catalog) -> None:
    """Create missing counters of every loaded event, then publish the catalog to the API.

    Only for events whose seat state exists (`event_loaded`): the others must be rebuilt from
    MySQL (`models.seat_repair.rebuild`), never initialised as empty — after a Redis loss that
    would sell every seat again.
    """
    scripts = scripts_for(r)
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

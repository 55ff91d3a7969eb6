"""The Lua scripts that read and change seat state; each call is one atomic EVALSHA.

Every script that changes seat state appends the event of that change to its bucket's outbox
stream in the same call (keys.py: the stream shares the event's hash tag, so one slot), so a
seat change without its event, or an event without its change, cannot exist. The relay takes
the stream's entries to SNS.

The seed's one-seat sale (`PURCHASE_LUA`) is an order of one seat, paid at once: the call that
sells the seat stores that order PAID at version 1 (the order hash `order_scripts.py`
describes, so the box office's scripts read, refund and answer it like any other order) and
appends its snapshot to the outbox as `kind=order`, `order` (the snapshot JSON), `rid` (the
request id). Entries of `kind=ticket` (`ticket` = the ticket's JSON with its schemaVersion)
were the sale's event before it was an order; the relay and the worker still take the ones an
older release left in a stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import redis

from models.catalog import EventSpec, ZoneSpec, row_label
from models.seats import keys
from models.seats.connection import Client, node_for
from models.seats.lua_lib import ORDER_LIB_LUA, RATE_LUA

IDEMPOTENCY_TTL_SECONDS = 24 * 3600

# Sells one seat if it and every counter allow: returns OK or the outcome code of the contract.
# SEAT_TAKEN is checked before the counters. Nothing is written unless the answer is OK.
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

# KEYS: 1 sold bitmap, 2 seats left, 3 event counters, 4 owners, 5 outbox stream, 6 the
# event's per-buyer seat counts, 7 the buyer's rate key, 8 the order's hash, 9 the order's
# event lookup (`keys.order_event_key`)[, 10 idempotency record].
# ARGV: 1 bit, 2 row, 3 ticket JSON (the idempotency record's answer), 4 ticket id, 5 request
# id, 6 buyer, 7 seats allowed per buyer, 8 rate interval ms, 9 rate tolerance ms, 10 the PAID
# order's snapshot JSON (version 1), 11 its cells JSON ([[zone, bit, row label, ticket id, row
# index]]), 12 its canonical total, 13 the event id[, 14 fingerprint, 15 TTL].
# With a record key: an existing record answers REPLAY with its fingerprint and ticket, and
# decides nothing (its TTL is renewed: that write makes a pipelined WAIT cover the original
# sale, which came before it in the replication stream). Else, with the event loaded, the
# attempt is rate-limited (RATE_LIMITED with the ms to wait), the event's due holds expire (a
# late sweeper never costs a buyer a seat or a count: order_scripts.py), the buyer's seats are
# counted (BUYER_LIMIT_REACHED), and the seat is decided; on OK the seat's owner, the buyer's
# count, the PAID order (its hash, `exp` 0: never held; and its event lookup), its outbox
# entry and the record are
# written in the same call, so the answer of a key is known as soon as the script ran: no
# record is ever "pending", and no refused request leaves one. The snapshot is built by the
# caller (nothing in it depends on Redis's state), so the script encodes no JSON.
PURCHASE_LUA = (
    DECIDE_LUA
    + RATE_LUA
    + """
local EVENT, BUYERS, OUTBOX, RID = KEYS[3], KEYS[6], KEYS[5], ARGV[5]
local PREFIX = string.sub(EVENT, 1, -6)
local HOLDS = PREFIX .. 'holds'
"""
    + ORDER_LIB_LUA
    + """
local idem = KEYS[10]
if idem then
  local record = redis.call('HMGET', idem, 'fp', 'ticket')
  if record[1] then
    redis.call('EXPIRE', idem, tonumber(ARGV[15]))
    return {'REPLAY', record[1], record[2]}
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 or redis.call('EXISTS', KEYS[3]) == 0 then
  return {'NOT_LOADED'}
end
local wait = rate_wait(KEYS[7], tonumber(ARGV[8]), tonumber(ARGV[9]))
if wait > 0 then return {'RATE_LIMITED', tostring(wait)} end
expire_due(now_ms(), nil)
local held = tonumber(redis.call('HGET', KEYS[6], ARGV[6]) or '0')
if held >= tonumber(ARGV[7]) then return {'BUYER_LIMIT_REACHED'} end
local outcome = decide(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2])
if outcome ~= 'OK' then return {outcome} end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
redis.call('HINCRBY', KEYS[6], ARGV[6], 1)
redis.call('HSET', KEYS[8], 'doc', ARGV[10], 'cells', ARGV[11], 'total', ARGV[12], 'exp', 0)
redis.call('SET', KEYS[9], ARGV[13])
redis.call('XADD', KEYS[5], '*', 'kind', 'order', 'order', ARGV[10], 'rid', ARGV[5])
if idem then
  redis.call('HSET', idem, 'fp', ARGV[14], 'ticket', ARGV[3])
  redis.call('EXPIRE', idem, tonumber(ARGV[15]))
end
return {'OK'}
"""
)

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


class ReplicasBehind(redis.RedisError):
    """The script ran on the primary, but fewer replicas than asked acknowledged it in time:
    a failover now could lose it. Its outcome is known here, and unknown after a failover."""

    def __init__(self, outcome: Sale, acknowledged: int) -> None:
        super().__init__(f"{acknowledged} replica(s) acknowledged the write in time")
        self.outcome = outcome
        self.acknowledged = acknowledged


@dataclass(frozen=True)
class Sale:
    """A purchase script's answer: OK (with the id of the PAID order it stored), an outcome
    code, REPLAY with the key's record, or RATE_LIMITED with the ms to wait (in
    `fingerprint`'s place on the wire: see `wait_ms`)."""

    outcome: str
    fingerprint: str | None = None
    ticket_json: str | None = None
    order_id: str | None = None

    @property
    def wait_ms(self) -> int:
        """RATE_LIMITED: how long until an attempt passes."""
        return int(self.fingerprint or 0) if self.outcome == "RATE_LIMITED" else 0


@dataclass(frozen=True)
class Limits:
    """Per buyer per event: seats held or sold at most, and attempts (`burst` per `window`)."""

    seats_per_buyer: int = 8
    burst: int = 30
    window_seconds: float = 10.0

    def rate_args(self) -> tuple[int, int]:
        """GCRA's interval and tolerance in ms."""
        window_ms = max(1, int(self.window_seconds * 1000))
        interval = max(1, window_ms // max(1, self.burst))
        return interval, window_ms - interval


@dataclass(frozen=True)
class Wait:
    """WAIT numreplicas timeout, pipelined after a writing script (numreplicas 0: no WAIT)."""

    replicas: int = 0
    timeout_ms: int = 50


def seat_bit(zone: ZoneSpec, row_index: int, column: int) -> int:
    """Bit offset of a seat: rowIndex × columns + colIndex (columns are 1-based on the wire)."""
    return row_index * zone.columns + (column - 1)


def canonical_amount(amount: Decimal | str) -> str:
    """An amount compared by value: `190.0` and `190.00` give the same string."""
    return format(Decimal(amount).normalize(), "f")


def paid_order(
    order_id: str,
    zone: ZoneSpec,
    row_index: int,
    column: int,
    ticket: dict,
    buyer: str,
    currency: str,
) -> tuple[dict[str, Any], list[list[Any]]]:
    """The one-seat sale as an order, paid at once: its snapshot at version 1 (the ticket's id,
    price and createdOn; no hold, so no expiry; no payment provider, so `paymentId` null) and
    its cells, as the order scripts store them."""
    label = row_label(row_index)
    price = f"{Decimal(ticket['price']):.2f}"
    seat = {
        "ticketId": ticket["ticketId"],
        "zoneId": zone.zone_id,
        "row": label,
        "column": str(column),
        "price": price,
    }
    doc = {
        "orderId": order_id,
        "venueId": ticket["venueId"],
        "eventId": ticket["eventId"],
        "buyer": buyer,
        "seats": [seat],
        "total": price,
        "currency": currency,
        "status": "PAID",
        "version": 1,
        "createdOn": ticket["createdOn"],
        "updatedOn": ticket["createdOn"],
        "expiresAt": None,
        "paymentId": None,
        "paidOn": ticket["createdOn"],
    }
    cells = [
        [zone.zone_id, seat_bit(zone, row_index, column), label, ticket["ticketId"], row_index]
    ]
    return doc, cells


class SeatScripts:
    """The registered scripts of one client; each call is one EVALSHA (EVAL once after a flush)."""

    def __init__(self, r: Client) -> None:
        self.redis = r
        self._purchase = r.register_script(PURCHASE_LUA)
        self._initialise = r.register_script(INITIALISE_LUA)
        self._zone_state = r.register_script(ZONE_STATE_LUA)
        self._availability = r.register_script(AVAILABILITY_LUA)

    def purchase(
        self,
        event_id: str,
        zone: ZoneSpec,
        row_index: int,
        column: int,
        *,
        ticket: dict,
        buyer: str,
        limits: Limits = Limits(),
        currency: str = "USD",
        order_id: str | None = None,
        request_id: str = "",
        record_key: str | None = None,
        fingerprint: str = "",
        wait: Wait = Wait(),
    ) -> Sale:
        """Sell one seat to `buyer` within `limits` as a one-seat order paid at once (`ticket`,
        the answer's JSON, gives its ticket id, price and time; `order_id` must name the event's
        bucket, a new one by default) and append the order's event to the outbox, in one call;
        with `record_key`, answer a repeat of the key from its record instead. With
        `wait.replicas`, WAIT goes in the same round trip; raises ReplicasBehind when it fell
        short after a write."""
        if order_id is None:
            order_id = keys.new_order_id(event_id)
        elif keys.order_bucket(order_id) != keys.bucket(event_id):
            raise ValueError(f"order id {order_id!r} does not name the bucket of {event_id!r}")
        lookup = keys.order_event_key(order_id)
        doc, cells = paid_order(order_id, zone, row_index, column, ticket, buyer, currency)
        script_keys = [
            *keys.zone_keys(event_id, zone.zone_id),
            keys.owners_key(event_id, zone.zone_id),
            keys.outbox_stream(keys.bucket(event_id)),
            keys.buyers_key(event_id),
            keys.rate_key(event_id, buyer),
            keys.order_key(event_id, order_id),
            lookup,
        ]
        args = [
            cells[0][1],
            row_label(row_index),
            json.dumps(ticket),
            ticket["ticketId"],
            request_id,
            buyer,
            limits.seats_per_buyer,
            *limits.rate_args(),
            json.dumps(doc),
            json.dumps(cells),
            canonical_amount(doc["total"]),
            event_id,
        ]
        if record_key is not None:
            script_keys.append(record_key)
            args += [fingerprint, IDEMPOTENCY_TTL_SECONDS]
        if wait.replicas <= 0:
            return self._sale(self._purchase(keys=script_keys, args=args), order_id)
        reply, acknowledged = self._with_wait(script_keys, args, wait)
        sale = self._sale(reply, order_id)
        if sale.outcome in ("OK", "REPLAY") and acknowledged < wait.replicas:
            raise ReplicasBehind(sale, acknowledged)
        return sale

    @staticmethod
    def _sale(reply: list, order_id: str) -> Sale:
        if reply[0] == "OK":
            return Sale("OK", order_id=order_id)
        return Sale(*reply)

    def _with_wait(self, script_keys: list, args: list, wait: Wait) -> tuple[list, int]:
        """EVALSHA and WAIT pipelined in one round trip on the node of the keys' slot."""
        node = node_for(self.redis, script_keys[0])

        def send() -> list:
            pipe = node.pipeline(transaction=False)
            pipe.evalsha(self._purchase.sha, len(script_keys), *script_keys, *args)
            pipe.execute_command("WAIT", wait.replicas, wait.timeout_ms)
            return pipe.execute(raise_on_error=False)

        reply, acknowledged = send()
        if isinstance(reply, redis.exceptions.NoScriptError):  # the script did not run
            node.script_load(PURCHASE_LUA)
            reply, acknowledged = send()
        for result in (reply, acknowledged):
            if isinstance(result, Exception):
                raise result
        return reply, int(acknowledged)

    def zone_state(self, event_id: str, zone: ZoneSpec) -> tuple[list[str], dict[str, int]] | None:
        """One row string per row ('1' = sold) and the seats-left hash; None if not loaded."""
        reply = self._zone_state(keys=keys.zone_keys(event_id, zone.zone_id))
        if reply == "NOT_LOADED":
            return None
        hex_bitmap, flat = reply
        bits = "".join(f"{b:08b}" for b in bytes.fromhex(hex_bitmap))
        bits = bits.ljust(zone.rows * zone.columns, "0")
        grid = [bits[i * zone.columns : (i + 1) * zone.columns] for i in range(zone.rows)]
        return grid, {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}

    def availability(self, event_id: str, zone_ids: list[int]) -> dict[int, int] | None:
        """Seats left per zone of an event in one call; None if its seat state is not loaded."""
        script_keys = [keys.event_key(event_id)] + [
            keys.zone_keys(event_id, z)[1] for z in zone_ids
        ]
        reply = self._availability(keys=script_keys)
        if reply == "NOT_LOADED":
            return None
        return {z: int(n) for z, n in zip(zone_ids, reply, strict=True)}

    def initialise(self, event: EventSpec, zone: ZoneSpec) -> None:
        """Create the counters of one (event, zone) that are missing."""
        _, left, event_hash = keys.zone_keys(event.event_id, zone.zone_id)
        rows = [row_label(i) for i in range(zone.rows)]
        self._initialise(
            keys=[left, event_hash],
            args=[zone.capacity, zone.row_capacity, event.capacity, *rows],
        )

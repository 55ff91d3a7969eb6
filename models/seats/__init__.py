"""Seat state in Redis: the one home of the scripts, keys and outbox that web/ and the relay use.

The seed's model, per (event, zone): a bitmap of sold seats (bit = rowIndex × columns +
colIndex), seats left per row and for the zone, who owns each sold seat; per event, sold vs
capacity; per bucket of events, the outbox stream. Modules:

- `keys`: key names, bucket tags and outbox streams (one Redis Cluster slot per script);
- `connection`: the client, and what a failed call tells (`nothing_was_sent`);
- `scripts`: the Lua scripts (purchase + outbox entry in one call, WAIT pipelined);
- `loading`: catalog load, disabling and rebuilding an event's state;
- `outbox`: reading the outbox's depth and age (the relay and the health checks);
- `orders` (Python API) and `order_scripts` (Lua): orders held, confirmed, cancelled, refunded,
  expired and swept, each one call with its event; `lua_lib`: the Lua the scripts share;
- `order_state`: an event's order keys written back from the stored orders (the rebuild).
"""

from __future__ import annotations

from functools import cache

from models.seats.connection import Client, client, connect, node_for, nothing_was_sent, ping
from models.seats.keys import (
    buyers_key,
    event_key,
    idempotency_key,
    owners_key,
    rate_key,
    zone_keys,
)
from models.seats.loading import (
    CATALOG_KEY,
    disable_event,
    event_loaded,
    has_seat_state,
    load_catalog,
    publish_catalog,
    read_catalog,
    rebuild_event,
)
from models.seats.orders import Order, OrderResult, OrderScripts
from models.seats.scripts import (
    DECIDE_LUA,
    IDEMPOTENCY_TTL_SECONDS,
    Limits,
    ReplicasBehind,
    Sale,
    SeatScripts,
    Wait,
    seat_bit,
)

__all__ = [
    "CATALOG_KEY",
    "DECIDE_LUA",
    "IDEMPOTENCY_TTL_SECONDS",
    "Client",
    "Limits",
    "Order",
    "OrderResult",
    "OrderScripts",
    "ReplicasBehind",
    "Sale",
    "SeatScripts",
    "Wait",
    "buyers_key",
    "client",
    "connect",
    "disable_event",
    "event_key",
    "event_loaded",
    "has_seat_state",
    "idempotency_key",
    "load_catalog",
    "node_for",
    "nothing_was_sent",
    "orders_for",
    "owners_key",
    "ping",
    "publish_catalog",
    "rate_key",
    "read_catalog",
    "rebuild_event",
    "scripts_for",
    "seat_bit",
    "zone_keys",
]


@cache
def scripts_for(r: Client) -> SeatScripts:
    """The scripts bound to a client, registered once per client."""
    return SeatScripts(r)


@cache
def orders_for(r: Client) -> OrderScripts:
    """The order scripts bound to a client, registered once per client."""
    return OrderScripts(r)

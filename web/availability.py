"""Seat availability on the purchase side, read from Redis (the seat state the sale decides on).

GET /purchase/api/v1/events/{eventId}/availability            seats left per zone
GET /purchase/api/v1/events/{eventId}/zones/{zoneId}/seats    a zone's seat map

Routes of the purchase blueprint (`web.purchase.bp`); `create_app` imports this module first.

Both answers are kept per process for SEAT_MAP_CACHE_MS (`plumbing.read_cache`): however many
buyers watch a hot event, each process asks its Redis shard, the one that decides the event's
sales, at most once per answer and period, and concurrent misses share one call. Answers lag
the sales by at most that period.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import redis
from flask import Response, jsonify

from models import seats
from models.catalog import Catalog, EventSpec, ZoneSpec, is_id, row_label
from plumbing import settings
from plumbing.read_cache import ReadCache
from web.access import Access, allow
from web.openapi import documented
from web.problems import Problem, unavailable
from web.purchase import bp
from web.sales import catalog, retry_after
from web.schemas import AvailabilitySchema, SeatMapSchema

_CATALOG_PROBLEMS = ("UNKNOWN_EVENT", "SERVICE_UNAVAILABLE")
_KEPT = {
    "Cache-Control": {
        "description": "max-age=N: the answer is kept by the server for SEAT_MAP_CACHE_MS "
        "(default 250 ms), so it may lag the sales by that much; N is that period in whole "
        "seconds, rounded down (0 by default).",
        "schema": {"type": "string"},
    }
}


@cache
def read_cache() -> ReadCache:
    """This process's cache of availability and seat-map answers (JSON bodies)."""
    s = settings.get()
    return ReadCache(s.seat_map_cache_seconds, s.seat_map_cache_entries, s.seat_map_cache_bytes)


def forget_reads() -> None:
    """Drop the kept answers (tests, after changing the seat state behind the API's back)."""
    read_cache().clear()


def _cached(key: tuple, build: Callable[[], Response]) -> Response:
    """The JSON answer kept under `key`, or `build()`'s; with Cache-Control saying how long a
    client may keep it (whole seconds, rounded down: 0 below a second)."""
    kept = read_cache()
    body = kept.get(key, lambda: build().get_data())
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = f"max-age={int(kept.ttl)}"
    return response


def _event(event_id: str) -> tuple[Catalog, EventSpec]:
    """The catalog and the event, or 404 UNKNOWN_EVENT."""
    event = None
    if is_id(event_id):  # an id that cannot exist is answered without reading the catalog
        current = catalog()
        event = current.events.get(event_id)
    if event is None:
        raise Problem(404, "UNKNOWN_EVENT", f"No event {event_id!r}.")
    return current, event


@allow(Access.PUBLIC)
@bp.get("/api/v1/events/<event_id>/availability")
@documented({200: AvailabilitySchema}, problems=_CATALOG_PROBLEMS, response_headers=_KEPT)
def availability(event_id: str) -> Response:
    """Seats left in each zone of an event, read from Redis in one call."""
    current, event = _event(event_id)
    return _cached(("availability", event_id), lambda: _availability(current, event))


def _availability(current: Catalog, event: EventSpec) -> Response:
    event_id = event.event_id
    zones = current.venues[event.venue_id].zones
    try:
        left = seats.scripts_for(seats.client()).availability(event_id, list(zones))
    except redis.RedisError:
        raise unavailable("Seat state is unreachable; try again.", retry_after()) from None
    if left is None:
        raise unavailable("Seat state is not loaded yet; try again.", retry_after())
    return jsonify(
        {
            "eventId": event_id,
            "venueId": event.venue_id,
            "remaining": sum(left.values()),
            "zones": [
                {"zoneId": z.zone_id, "capacity": z.capacity, "remaining": left[z.zone_id]}
                for z in zones.values()
            ],
        }
    )


@allow(Access.PUBLIC)
@bp.get("/api/v1/events/<event_id>/zones/<positive:zone_id>/seats")
@documented(
    {200: SeatMapSchema}, problems=(*_CATALOG_PROBLEMS, "UNKNOWN_ZONE"), response_headers=_KEPT
)
def seat_map(event_id: str, zone_id: int) -> Response:
    """A zone's seats (a string per row: 0 free, h held, 1 sold) and seats left per row."""
    current, event = _event(event_id)
    zone = current.venues[event.venue_id].zones.get(zone_id)
    if zone is None:
        raise Problem(404, "UNKNOWN_ZONE", f"{event.venue_id} has no zone {zone_id}.")
    return _cached(("seats", event_id, zone_id), lambda: _seat_map(event_id, zone))


def _seat_map(event_id: str, zone: ZoneSpec) -> Response:
    zone_id = zone.zone_id
    try:
        r = seats.client()
        state = seats.scripts_for(r).zone_state(event_id, zone)
        # sold and held seats in one reply: a held seat is `h`, a sold one `1`
        grid = seats.orders_for(r).zone_map(event_id, zone) if state is not None else None
    except redis.RedisError:
        raise unavailable("Seat state is unreachable; try again.", retry_after()) from None
    if state is None or grid is None:
        raise unavailable("Seat state is not loaded yet; try again.", retry_after())
    left = state[1]
    labels = [row_label(i) for i in range(zone.rows)]
    return jsonify(
        {
            "eventId": event_id,
            "zoneId": zone_id,
            "rows": zone.rows,
            "columns": zone.columns,
            "remaining": {"zone": left["zone"], "rows": {r: left[r] for r in labels}},
            "seats": grid,
        }
    )

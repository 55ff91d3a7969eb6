"""Seat availability on the purchase side, read from Redis (the seat state the sale decides on).

GET /purchase/api/v1/events/{eventId}/availability            seats left per zone
GET /purchase/api/v1/events/{eventId}/zones/{zoneId}/seats    a zone's seat map

Routes of the purchase blueprint (`web.purchase.bp`); `create_app` imports this module first.
"""

from __future__ import annotations

import redis
from flask import Response, jsonify

from models import seats
from models.catalog import Catalog, EventSpec, is_id, row_label
from web.access import Access, allow
from web.openapi import documented
from web.problems import Problem, unavailable
from web.purchase import _catalog as catalog
from web.purchase import _retry_after as retry_after
from web.purchase import bp
from web.schemas import AvailabilitySchema, SeatMapSchema

_CATALOG_PROBLEMS = ("UNKNOWN_EVENT", "SERVICE_UNAVAILABLE")


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
@documented({200: AvailabilitySchema}, problems=_CATALOG_PROBLEMS)
def availability(event_id: str) -> Response:
    """Seats left in each zone of an event, read from Redis in one call."""
    current, event = _event(event_id)
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
@documented({200: SeatMapSchema}, problems=(*_CATALOG_PROBLEMS, "UNKNOWN_ZONE"))
def seat_map(event_id: str, zone_id: int) -> Response:
    """A zone's seats (one string per row, 1 = sold) and seats left per row and zone."""
    current, event = _event(event_id)
    zone = current.venues[event.venue_id].zones.get(zone_id)
    if zone is None:
        raise Problem(404, "UNKNOWN_ZONE", f"{event.venue_id} has no zone {zone_id}.")
    try:
        state = seats.scripts_for(seats.client()).zone_state(event_id, zone)
    except redis.RedisError:
        raise unavailable("Seat state is unreachable; try again.", retry_after()) from None
    if state is None:
        raise unavailable("Seat state is not loaded yet; try again.", retry_after())
    grid, left = state
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

"""Purchase API: the hot path, top to bottom — validate, decide in Redis, publish, answer.

POST /purchase/api/v1/tickets   sell one seat (201, or a problem+json code)
GET  /purchase/health           Redis and broker reachable?
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import redis
from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

import metrics
import settings
from models.catalog import Catalog, ZoneSpec, row_index, row_label
from models.tickets import SCHEMA_VERSION, TicketRecord
from web import publisher, seats
from web.problems import Problem, unavailable
from web.schemas import PurchaseRequestSchema

log = logging.getLogger(__name__)

bp = Blueprint("purchase", __name__, url_prefix="/purchase")

_request_schema = PurchaseRequestSchema()


@bp.post("/api/v1/tickets")
def purchase_ticket() -> Response:
    """Sell one seat: validate, mark it sold in one Redis call, publish the event, answer 201."""
    # 1. Parse and validate: nothing below runs for bad input.
    try:
        body = json.loads(request.get_data(cache=False))
    except (ValueError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise Problem(400, "MALFORMED_JSON", "The body must be a JSON object.")
    try:
        req = _request_schema.load(body)
    except ValidationError as exc:
        raise Problem(
            400, "VALIDATION_FAILED", "Some fields are invalid.", errors=exc.normalized_messages()
        ) from None
    row = req["row"].upper()

    # 2. The catalog (cached in this process): venue, event, zone, seat in range.
    catalog = _catalog()
    venue = catalog.venues.get(req["venueId"])
    if venue is None:
        raise Problem(404, "UNKNOWN_VENUE", f"No venue {req['venueId']!r}.")
    event = catalog.events.get(req["eventId"])
    if event is None:
        raise Problem(404, "UNKNOWN_EVENT", f"No event {req['eventId']!r}.")
    if event.venue_id != venue.venue_id:
        raise Problem(
            422,
            "EVENT_NOT_AT_VENUE",
            f"{event.event_id} is held at {event.venue_id}, not {venue.venue_id}.",
        )
    zone = venue.zones.get(req["zoneId"])
    if zone is None:
        raise Problem(404, "UNKNOWN_ZONE", f"{venue.venue_id} has no zone {req['zoneId']}.")
    r_index, column = row_index(row), int(req["column"])
    if r_index >= zone.rows or column > zone.columns:
        raise Problem(
            422,
            "SEAT_OUT_OF_RANGE",
            f"Zone {zone.zone_id} has rows A to {row_label(zone.rows - 1)} "
            f"and columns 1 to {zone.columns}.",
        )

    # 3. The decision: one EVALSHA checks the seat and every counter, and marks it sold.
    scripts = seats.scripts_for(seats.client())
    try:
        outcome = scripts.purchase(event.event_id, zone, r_index, column)
    except redis.RedisError as exc:
        # Outcome unknown (the script may have run): never release here; answer 503.
        log.warning(
            "purchase %s/%s/%s%s: Redis error %s", event.event_id, zone.zone_id, row, column, exc
        )
        raise unavailable("Seat state is unreachable; try again.", _retry_after()) from None
    if outcome == "NOT_LOADED":
        raise unavailable("Seat state is not loaded yet; try again.", _retry_after())
    if outcome != "OK":
        raise Problem(409, outcome, f"Seat {row}{column} in zone {zone.zone_id}: {outcome}.")

    # 4. The seat is ours: publish the event; if SNS does not take it, free the seat again.
    ticket = TicketRecord(
        ticket_id=str(uuid.uuid4()),
        venue_id=venue.venue_id,
        event_id=event.event_id,
        zone_id=zone.zone_id,
        row=row,
        column=column,
        price=zone.price,
        status="PAID",
        created_on=datetime.now(UTC),
    ).to_json()
    try:
        publisher.publish_ticket({**ticket, "schemaVersion": SCHEMA_VERSION})
    except publisher.PublishFailed as exc:
        _release(scripts, event.event_id, zone, r_index, column, ticket["ticketId"])
        log.error(
            "ticket %s not sold: %s",
            ticket["ticketId"],
            exc,
            extra={"ticketId": ticket["ticketId"], "outcome": "PUBLISH_FAILED"},
        )
        raise unavailable(
            "Could not record the purchase; the seat was not sold.", _retry_after()
        ) from None

    # 5. 201: the event is in SNS, the worker will make it readable.
    g.ticket_id = ticket["ticketId"]
    response = jsonify(ticket)
    response.status_code = 201
    response.headers["Location"] = f"/query/api/v1/tickets/{ticket['ticketId']}"
    return response


@bp.before_request
def _start_clock() -> None:
    g.started = time.perf_counter()


@bp.after_request
def _account_purchase(response: Response) -> Response:
    """One metric sample and one structured log line per purchase answer."""
    if request.endpoint == "purchase.purchase_ticket":
        code = "SOLD" if response.status_code == 201 else g.get("problem_code", "OTHER")
        seconds = time.perf_counter() - g.started
        metrics.PURCHASES.labels(code).inc()
        metrics.PURCHASE_SECONDS.observe(seconds)
        log.info(
            "purchase %s",
            code,
            extra={"outcome": code, "ticketId": g.get("ticket_id"), "ms": round(seconds * 1e3, 2)},
        )
    return response


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus metrics of this service's processes."""
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


@bp.get("/health")
def health() -> tuple[Response, int]:
    """UP when Redis answers and the SNS topic is reachable."""
    checks = {"redis": "UP", "broker": "UP"}
    try:
        seats.client().ping()
    except redis.RedisError:
        checks["redis"] = "DOWN"
    if not publisher.broker_reachable():
        checks["broker"] = "DOWN"
    up = all(v == "UP" for v in checks.values())
    return jsonify({"status": "UP" if up else "DOWN", "checks": checks}), 200 if up else 503


def _release(
    scripts: seats.SeatScripts,
    event_id: str,
    zone: ZoneSpec,
    r_index: int,
    column: int,
    ticket_id: str,
) -> None:
    try:
        scripts.release(event_id, zone, r_index, column)
    except redis.RedisError as exc:  # the seat stays sold without a ticket: reconcile it
        log.error(
            "ticket %s: seat %s/%s/%s/%s could not be released: %s",
            ticket_id,
            event_id,
            zone.zone_id,
            r_index,
            column,
            exc,
        )


def _retry_after() -> int:
    return settings.get().retry_after_seconds


_catalog_lock = threading.Lock()
_catalog_cache: tuple[float, Catalog] | None = None


def _catalog() -> Catalog:
    """The catalog from Redis, reread at most every CATALOG_CACHE_SECONDS by this process."""
    global _catalog_cache
    cached = _catalog_cache
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    with _catalog_lock:
        cached = _catalog_cache
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            catalog = seats.read_catalog(seats.client())
        except redis.RedisError as exc:
            if cached is not None:  # keep selling from the last copy; Redis decides anyway
                return cached[1]
            raise unavailable(f"Catalog is unreachable: {exc}", _retry_after()) from None
        if catalog is None:
            raise unavailable("The catalog is not loaded yet.", _retry_after())
        _catalog_cache = (time.monotonic() + settings.get().catalog_cache_seconds, catalog)
        return catalog


def forget_catalog() -> None:
    """Drop this process's cached catalog (after a reload, and in tests)."""
    global _catalog_cache
    _catalog_cache = None

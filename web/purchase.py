"""Purchase API: the hot path, top to bottom — validate, decide in Redis, answer.

POST /purchase/api/v1/tickets                                  sell one seat (201, or a problem)
GET  /purchase/api/v1/events/...                                seat availability (availability.py)
POST /purchase/api/v1/orders, GET/POST …/orders/{orderId}/…    the box office (orders.py,
                                                               order_payments.py)
GET  /purchase/health                                          the process answers (the ALB's probe)
GET  /purchase/health/deep                                     Redis reachable?

A sale is ONE Redis round trip: the purchase script marks the seat, records its owner, stores
the sale as an order of one seat paid at once, appends that order's event to the outbox stream
(the relay takes it to SNS; the worker makes the order and its ticket readable) and, with an
`Idempotency-Key`, stores the key's answer, all in one atomic call; `WAIT` for a replica is
pipelined with it when REDIS_WAIT_REPLICAS is set. The request builds no broker message and
never frees a seat.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime

import redis
from flask import Blueprint, Response, g, jsonify, request

from models import seats
from models.catalog import ZoneSpec
from models.tickets import SCHEMA_VERSION, TicketRecord
from plumbing import logs, metrics, settings
from web import sales
from web.access import Access, allow, current
from web.bodies import json_object
from web.openapi import documented
from web.problems import Problem, outcome_unknown, unavailable
from web.sales import forget_catalog  # noqa: F401 (tests and callers drop the copy through here)
from web.schemas import HealthSchema, LivenessSchema, PurchaseRequestSchema, TicketSchema

log = logging.getLogger(__name__)

bp = Blueprint("purchase", __name__, url_prefix="/purchase")

_request_schema = PurchaseRequestSchema()


@allow(Access.BUYER)
@bp.post("/api/v1/tickets")
@documented(
    {201: TicketSchema},
    body=PurchaseRequestSchema,
    problems=(
        "MALFORMED_JSON",
        "VALIDATION_FAILED",
        "UNKNOWN_VENUE",
        "UNKNOWN_EVENT",
        "UNKNOWN_ZONE",
        "EVENT_NOT_AT_VENUE",
        "SEAT_OUT_OF_RANGE",
        "IDEMPOTENCY_KEY_REUSED",
        "SEAT_TAKEN",
        "BUYER_LIMIT_REACHED",
        "RATE_LIMITED",
        "ROW_FULL",
        "ZONE_FULL",
        "EVENT_SOLD_OUT",
        "SALE_NOT_OPEN",
        "SALE_CLOSED",
        "PAYLOAD_TOO_LARGE",
        "SERVICE_UNAVAILABLE",
        "OUTCOME_UNKNOWN",
    ),
    headers={
        "Idempotency-Key": {
            "description": "1-255 visible ASCII characters, scoped to the buyer and the event; "
            "a repeat with the same body within 24 h answers the original 201 (no second seat, "
            "no second event), and it is the only way to learn the outcome after 503 "
            "OUTCOME_UNKNOWN. A refused request keeps no record of its key.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
        }
    },
    response_headers={
        "Location": {"description": "The ticket in the query API.", "schema": {"type": "string"}}
    },
)
def purchase_ticket() -> Response:
    """Sell one seat to the caller: validate, then one Redis call marks it sold and appends
    its event."""
    # 1. Parse and validate: nothing below runs for bad input (media type and size were
    #    checked before the view, see web.bodies).
    req = sales.validated(_request_schema, json_object(request.get_data()))
    row = req["row"].upper()
    idempotency_key = sales.idempotency_key(request.headers.get("Idempotency-Key"))
    buyer = current().subject  # verified before the view (web.access)

    # 2. The catalog (cached in this process): venue, event, zone, seat in range, and the
    #    event's sales window by this server's clock.
    venue, event = sales.venue_and_event(sales.catalog(), req["venueId"], req["eventId"])
    zone = sales.zone_of(venue, req["zoneId"])
    r_index, column = sales.seat_in_range(zone, row, req["column"])
    sales.check_sales_window(event)

    # 3. The decision, in one round trip: the script checks the buyer's attempt rate and seat
    #    count, the seat and every counter, marks it sold, counts it for the buyer, stores the
    #    sale as a PAID order of one seat and appends the order's event to the outbox; with an
    #    Idempotency-Key it stores the answer too, or answers a repeat from it. Its outcome is
    #    the answer (the body is the ticket, as the seed's; the order is the buyer's to list).
    ticket = _new_ticket(venue.venue_id, event.event_id, zone, row, column)
    record_key = fingerprint = None
    if idempotency_key is not None:
        fingerprint = sales.fingerprint({**req, "row": row})
        record_key = idempotency_record(event.event_id, buyer, idempotency_key)
    s = settings.get()
    try:
        sale = seats.scripts_for(seats.client()).purchase(
            event.event_id,
            zone,
            r_index,
            column,
            ticket={**ticket, "buyer": buyer, "schemaVersion": SCHEMA_VERSION},
            buyer=buyer,
            limits=seats.Limits(
                s.max_seats_per_buyer, s.rate_limit_burst, s.rate_limit_window_seconds
            ),
            currency=s.currency,
            request_id=logs.request_id.get() or "",
            record_key=record_key,
            fingerprint=fingerprint or "",
            wait=seats.Wait(s.redis_wait_replicas, s.redis_wait_timeout_ms),
        )
    except seats.ReplicasBehind as exc:
        # sold on the primary, not yet on a replica: a failover now could lose it
        log.warning("purchase %s: %s", ticket["ticketId"], exc, extra={"outcome": "UNKNOWN"})
        raise _unknown() from None
    except redis.RedisError as exc:
        # the script may have run: never undo anything here
        raise sales.redis_failed(
            exc, f"purchase {event.event_id}/{zone.zone_id}/{row}{column}", _UNKNOWN
        ) from None
    if sale.outcome == "REPLAY":
        return _replay(sale, fingerprint)
    if sale.outcome == "NOT_LOADED":
        raise unavailable("Seat state is not loaded yet; try again.", sales.retry_after())
    if sale.outcome == "RATE_LIMITED":
        raise sales.rate_limited(event.event_id, sale.wait_ms)
    if sale.outcome == "BUYER_LIMIT_REACHED":
        raise Problem(
            409,
            "BUYER_LIMIT_REACHED",
            f"A buyer may hold at most {s.max_seats_per_buyer} seats of {event.event_id}.",
        )
    if sale.outcome != "OK":
        raise Problem(
            409, sale.outcome, f"Seat {row}{column} in zone {zone.zone_id}: {sale.outcome}."
        )

    # 4. 201: the seat, its order and the order's event are in Redis; the relay takes the
    #    event to SNS, the worker makes the order and its ticket readable.
    g.ticket_id = ticket["ticketId"]
    return _created(ticket)


_UNKNOWN = "The sale may or may not have happened; retry with the same Idempotency-Key to learn it."


def _unknown() -> Problem:
    return outcome_unknown(_UNKNOWN, sales.retry_after())


def _new_ticket(venue_id: str, event_id: str, zone: ZoneSpec, row: str, column: int) -> dict:
    """The ticket JSON of a sale: a new id, the zone's price, now."""
    return TicketRecord(
        ticket_id=str(uuid.uuid4()),
        venue_id=venue_id,
        event_id=event_id,
        zone_id=zone.zone_id,
        row=row,
        column=column,
        price=zone.price,
        status="PAID",
        created_on=datetime.now(UTC),
    ).to_json()


def _created(ticket: dict) -> Response:
    response = jsonify(ticket)
    response.status_code = 201
    response.headers["Location"] = f"/query/api/v1/tickets/{ticket['ticketId']}"
    return response


def idempotency_record(event_id: str, buyer: str, key: str) -> str:
    """The Redis key of a buyer's Idempotency-Key on an event: another buyer sending the same
    key (and body) makes a purchase of its own, and never learns this buyer's answer."""
    return seats.idempotency_key(event_id, sales.sha256(f"{buyer}\n{key}"))


def _replay(sale: seats.Sale, fingerprint: str | None) -> Response:
    """The answer to a repeated key: the original 201, or 422 for another body."""
    if sale.fingerprint != fingerprint:
        raise Problem(
            422, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with another request."
        )
    ticket = json.loads(sale.ticket_json or "{}")
    ticket.pop("schemaVersion", None)
    ticket.pop("buyer", None)
    g.replayed = True
    g.ticket_id = ticket["ticketId"]
    response = _created(ticket)
    response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.before_request
def _start_clock() -> None:
    g.started = time.perf_counter()


@bp.after_request
def _account_purchase(response: Response) -> Response:
    """One metric sample and one structured log line per purchase answer."""
    if request.endpoint == "purchase.purchase_ticket":
        code = "SOLD" if response.status_code == 201 else g.get("problem_code", "OTHER")
        if g.get("replayed"):
            code = "REPLAYED"
        # a body refused before the blueprint's hooks ran (415, 413) has no start time
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.PURCHASES.labels(code).inc()
        metrics.PURCHASE_SECONDS.observe(seconds)
        log.info(
            "purchase %s",
            code,
            extra={"outcome": code, "ticketId": g.get("ticket_id"), "ms": round(seconds * 1e3, 2)},
        )
    return response


@allow(Access.PUBLIC)
@bp.get("/health")
@documented({200: LivenessSchema})
def health() -> tuple[Response, int]:
    """The process answers; no dependency is called (the load balancer's probe)."""
    # a slow SNS or Redis must not make the load balancer replace healthy tasks
    return jsonify({"status": "UP"}), 200


@allow(Access.INTERNAL)
@bp.get("/health/deep")
@documented({200: HealthSchema, 503: HealthSchema})
def health_deep() -> tuple[Response, int]:
    """UP when every Redis primary answers (the purchase path's only dependency)."""
    checks = {"redis": "UP"}
    reasons = []
    try:
        seats.ping(seats.client())
    except redis.RedisError:
        checks["redis"] = "DOWN"
        reasons.append("redis: no answer")
    body: dict = {"status": "DOWN" if reasons else "UP", "checks": checks}
    if reasons:
        body["reasons"] = reasons
    return jsonify(body), 503 if reasons else 200

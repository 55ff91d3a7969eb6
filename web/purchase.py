"""Purchase API: the hot path, top to bottom — validate, decide in Redis, publish, answer.

POST /purchase/api/v1/tickets                                  sell one seat (201, or a problem)
GET  /purchase/api/v1/events/...                                seat availability (availability.py)
GET  /purchase/health                                          the process answers (the ALB's probe)
GET  /purchase/health/deep                                     Redis and broker reachable?

Idempotency keys: with `Idempotency-Key`, the purchase script stores the key's record
(fingerprint of the body, state pending, the ticket) atomically with the seat, under the event's
hash tag; a repeat gets the stored answer without a second decision. See `_replay`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from datetime import UTC, datetime

import redis
from flask import Blueprint, Response, g, jsonify, request
from marshmallow import ValidationError

from messaging import publisher
from models import seats
from models.catalog import Catalog, ZoneSpec, row_index, row_label
from models.tickets import SCHEMA_VERSION, TicketRecord
from plumbing import metrics, settings
from web.bodies import json_object
from web.openapi import documented
from web.problems import Problem, unavailable
from web.schemas import HealthSchema, LivenessSchema, PurchaseRequestSchema, TicketSchema

log = logging.getLogger(__name__)

bp = Blueprint("purchase", __name__, url_prefix="/purchase")

_request_schema = PurchaseRequestSchema()
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}\Z")


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
        "ROW_FULL",
        "ZONE_FULL",
        "EVENT_SOLD_OUT",
        "IDEMPOTENCY_KEY_IN_PROGRESS",
        "PAYLOAD_TOO_LARGE",
        "SERVICE_UNAVAILABLE",
    ),
    headers={
        "Idempotency-Key": {
            "description": "1-255 visible ASCII characters; a repeat with the same body within "
            "24 h answers the original 201 (no second seat, no second message).",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
        }
    },
    response_headers={
        "Location": {"description": "The ticket in the query API.", "schema": {"type": "string"}}
    },
)
def purchase_ticket() -> Response:
    """Sell one seat: validate, mark it sold in one Redis call, publish the event, answer 201."""
    # 1. Parse and validate: nothing below runs for bad input (media type and size were
    #    checked before the view, see web.bodies).
    body = json_object(request.get_data())
    try:
        req = _request_schema.load(body)
    except ValidationError as exc:
        raise Problem(
            400, "VALIDATION_FAILED", "Some fields are invalid.", errors=exc.normalized_messages()
        ) from None
    row = req["row"].upper()
    idempotency_key = _idempotency_key()

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

    # 3. The decision: one EVALSHA checks the seat and every counter, and marks it sold; with
    #    an Idempotency-Key the same call answers a repeat from its record instead.
    ticket = (
        _new_ticket(venue.venue_id, event.event_id, zone, row, column) if idempotency_key else None
    )
    scripts = seats.scripts_for(seats.client())
    record_key = None
    try:
        if idempotency_key is None:
            outcome = scripts.purchase(event.event_id, zone, r_index, column)
        else:
            fingerprint = _fingerprint({**req, "row": row})
            _guard_key_reuse(idempotency_key, fingerprint)
            record_key = seats.idempotency_key(event.event_id, _sha256(idempotency_key))
            outcome, record = scripts.purchase_idempotent(
                event.event_id,
                zone,
                r_index,
                column,
                record_key=record_key,
                fingerprint=fingerprint,
                ticket_json=json.dumps(ticket),
            )
            if record is not None:
                return _replay(record, fingerprint)
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
    if ticket is None:  # built only for a sale: a rejection costs the one Redis call
        ticket = _new_ticket(venue.venue_id, event.event_id, zone, row, column)

    # 4. The seat is ours: publish the event; if SNS does not take it, free the seat again
    #    (and drop the idempotency record, so a retry with the key decides again).
    try:
        publisher.publish_ticket({**ticket, "schemaVersion": SCHEMA_VERSION})
    except publisher.PublishFailed as exc:
        _release(scripts, event.event_id, zone, r_index, column, ticket["ticketId"], record_key)
        log.error(
            "ticket %s not sold: %s",
            ticket["ticketId"],
            exc,
            extra={"ticketId": ticket["ticketId"], "outcome": "PUBLISH_FAILED"},
        )
        raise unavailable(
            "Could not record the purchase; the seat was not sold.", _retry_after()
        ) from None
    if record_key is not None:
        _mark_done(record_key, ticket["ticketId"])

    # 5. 201: the event is in SNS, the worker will make it readable.
    g.ticket_id = ticket["ticketId"]
    return _created(ticket)


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


def _idempotency_key() -> str | None:
    """The Idempotency-Key header, if sent: 1 to 255 visible ASCII characters."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise Problem(
            400,
            "VALIDATION_FAILED",
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            errors={"Idempotency-Key": ["1 to 255 visible ASCII characters."]},
        )
    return key


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _fingerprint(req: dict) -> str:
    """sha256 of the canonical JSON of the validated body (row in upper case)."""
    return _sha256(json.dumps(req, sort_keys=True, separators=(",", ":")))


def _guard_key_reuse(key: str, fingerprint: str) -> None:
    """422 if the key was used with another body, for any event, within 24 h.

    The per-event record lives in the event's slot, so a key reused for another event would
    find no record there. This global record catches that. It is not atomic with the seat,
    and needs not be: it only binds a key to one body (SET NX never overwrites), while the
    decision and the answer are held by the per-event record, written in the seat's script.
    """
    stored = seats.client().set(
        "idem:{" + _sha256(key) + "}",
        fingerprint,
        nx=True,
        ex=seats.IDEMPOTENCY_TTL_SECONDS,
        get=True,
    )
    if stored is not None and stored != fingerprint:
        raise Problem(
            422, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with another request."
        )


def _replay(record: dict[str, str], fingerprint: str) -> Response:
    """The answer to a repeated key: the original 201, or why there is none."""
    if record["fp"] != fingerprint:
        raise Problem(
            422, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with another request."
        )
    if record["state"] != "done":
        # the first request still publishes: answering 201 now could confirm a ticket whose
        # publish then fails (and whose seat is released)
        raise Problem(
            409,
            "IDEMPOTENCY_KEY_IN_PROGRESS",
            "A request with this Idempotency-Key is still in progress; retry shortly.",
            headers={"Retry-After": "1"},
        )
    g.replayed = True
    response = _created(json.loads(record["ticket"]))
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _mark_done(record_key: str, ticket_id: str) -> None:
    try:
        seats.client().hset(record_key, mapping={"state": "done", "status": 201})
    except redis.RedisError as exc:  # the ticket is sold; repeats answer IN_PROGRESS until TTL
        log.error("ticket %s: idempotency record not marked done: %s", ticket_id, exc)


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


@bp.get("/health")
@documented({200: LivenessSchema})
def health() -> tuple[Response, int]:
    """The process answers; no dependency is called (the load balancer's probe)."""
    # a slow SNS or Redis must not make the load balancer replace healthy tasks
    return jsonify({"status": "UP"}), 200


@bp.get("/health/deep")
@documented({200: HealthSchema, 503: HealthSchema})
def health_deep() -> tuple[Response, int]:
    """UP when every Redis primary answers and the SNS topic's attributes can be read."""
    checks = {"redis": "UP", "broker": "UP"}
    reasons = []
    try:
        seats.ping(seats.client())
    except redis.RedisError as exc:
        checks["redis"] = "DOWN"
        reasons.append(f"redis: {exc}")
    if not publisher.broker_reachable():
        checks["broker"] = "DOWN"
        reasons.append("broker: the SNS topic's attributes are unreadable")
    body: dict = {"status": "DOWN" if reasons else "UP", "checks": checks}
    if reasons:
        body["reasons"] = reasons
    return jsonify(body), 503 if reasons else 200


def _release(
    scripts: seats.SeatScripts,
    event_id: str,
    zone: ZoneSpec,
    r_index: int,
    column: int,
    ticket_id: str,
    record_key: str | None = None,
) -> None:
    try:
        scripts.release(event_id, zone, r_index, column, record_key)
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

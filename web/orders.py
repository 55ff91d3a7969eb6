"""The box office's order routes (purchase side): hold, read, confirm, cancel, refund.

POST /purchase/api/v1/orders                        hold chosen seats or the best N together (201)
GET  /purchase/api/v1/orders/{orderId}              the order's live state (owner or operator)
POST /purchase/api/v1/orders/{orderId}/cancel       the owner (or an operator) lets the hold go

Confirm and refund, the payment side, are in `web.order_payments`. Routes of the purchase
blueprint (`web.purchase.bp`); `create_app` imports this module. Each
change is ONE call of an order script (`models.seats.orders`), which checks, changes the seat
state and appends the order's event to the outbox atomically; the views validate, look the
catalog up and map the script's outcome to the contract's answer.

Idempotency-Key on `POST /orders`: the order id is derived from (buyer, key, event), uuid5 with
its last hex digit replaced by the event's bucket (`keys.new_order_id`'s layout). A repeat of the
key makes the hold script meet an order already stored under that id (EXISTS, nothing changed);
the order's snapshot carries the request's fingerprint (`requestHash`), so the same request is
answered 201 with the order as it stands and `Idempotent-Replayed: true`, another body 422
IDEMPOTENCY_KEY_REUSED. The key lives as long as the order.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from flask import Response, g, jsonify, request

from models import seats
from models.catalog import EventSpec, ZoneSpec, is_id
from models.seats import keys
from plumbing import logs, metrics, settings
from web import sales
from web.access import Access, allow, current, owns
from web.bodies import json_object
from web.openapi import documented
from web.problems import Problem, unavailable
from web.purchase import bp
from web.schemas import OrderRequestSchema, OrderSchema

log = logging.getLogger(__name__)

_hold_schema = OrderRequestSchema()

# The order JSON of the contract: the snapshot's other members (paymentId, updatedOn,
# requestHash, …) are the scripts' and the projection's business.
ORDER_FIELDS = (
    "orderId",
    "status",
    "venueId",
    "eventId",
    "buyer",
    "seats",
    "total",
    "currency",
    "createdOn",
    "expiresAt",
    "version",
)
# An order id namespace for Idempotency-Keys (any fixed uuid: it only has to never change).
_LOCATION = {
    "Location": {"description": "The order on the purchase side.", "schema": {"type": "string"}}
}
ORDER_PROBLEMS = ("ORDER_NOT_FOUND", "SERVICE_UNAVAILABLE", "OUTCOME_UNKNOWN")


@allow(Access.BUYER)
@bp.post("/api/v1/orders")
@documented(
    {201: OrderSchema},
    body=OrderRequestSchema,
    problems=(
        "MALFORMED_JSON",
        "VALIDATION_FAILED",
        "UNKNOWN_VENUE",
        "UNKNOWN_EVENT",
        "UNKNOWN_ZONE",
        "EVENT_NOT_AT_VENUE",
        "SEAT_OUT_OF_RANGE",
        "ORDER_TOO_LARGE",
        "IDEMPOTENCY_KEY_REUSED",
        "SEAT_TAKEN",
        "NOT_ENOUGH_ADJACENT_SEATS",
        "BUYER_LIMIT_REACHED",
        "ROW_FULL",
        "ZONE_FULL",
        "EVENT_SOLD_OUT",
        "SALE_NOT_OPEN",
        "SALE_CLOSED",
        "RATE_LIMITED",
        "SERVICE_UNAVAILABLE",
        "OUTCOME_UNKNOWN",
    ),
    headers={
        "Idempotency-Key": {
            "description": "1-255 visible ASCII characters, scoped to the buyer and the event; "
            "a repeat with the same body answers 201 with the order as it stands now and "
            "`Idempotent-Replayed: true` (no second hold), another body 422 "
            "IDEMPOTENCY_KEY_REUSED. The only way to learn the outcome after 503 "
            "OUTCOME_UNKNOWN. A refused request keeps no record of its key.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
        }
    },
    response_headers=_LOCATION,
)
def hold_order() -> Response:
    """Hold chosen seats, or the best N together, for HOLD_SECONDS: all or none.

    One Redis call decides, holds and appends the order's event."""
    # 1. Parse and validate (media type and size were checked before the view).
    req = sales.validated(_hold_schema, json_object(request.get_data()))
    key = sales.idempotency_key(request.headers.get("Idempotency-Key"))
    buyer = current().subject
    s = settings.get()
    count = len(req["seats"]) if "seats" in req else req["quantity"]
    if count > s.max_seats_per_order:
        raise Problem(
            422,
            "ORDER_TOO_LARGE",
            f"An order holds 1 to {s.max_seats_per_order} seats, not {count}.",
        )

    # 2. The catalog (cached in this process): venue, event, zones, seats in range, window.
    venue, event = sales.venue_and_event(sales.catalog(), req["venueId"], req["eventId"])
    chosen: list[tuple[ZoneSpec, int, int]] = []
    best: tuple[ZoneSpec, int] | None = None
    if "seats" in req:
        for seat in req["seats"]:
            zone = sales.zone_of(venue, seat["zoneId"])
            chosen.append((zone, *sales.seat_in_range(zone, seat["row"].upper(), seat["column"])))
    else:
        best = (sales.zone_of(venue, req["zoneId"]), req["quantity"])
    sales.check_sales_window(event)

    # 3. One script call holds every seat or none, counts them for the buyer and appends the
    #    order's event; with an Idempotency-Key, a repeat meets the order already stored.
    fingerprint = _fingerprint(req) if key is not None else ""
    order_id = _keyed_order_id(buyer, key, event) if key is not None else None
    try:
        held = seats.orders_for(seats.client()).hold(
            event.event_id,
            venue.venue_id,
            buyer=buyer,
            seats=chosen,
            best=best,
            limits=seats.Limits(
                s.max_seats_per_buyer, s.rate_limit_burst, s.rate_limit_window_seconds
            ),
            hold_seconds=s.hold_seconds,
            currency=s.currency,
            order_id=order_id,
            request_id=logs.request_id.get() or "",
            request_hash=fingerprint,
        )
    except redis.RedisError as exc:
        raise sales.redis_failed(
            exc,
            f"hold on {event.event_id}",
            "The hold may or may not have been made; retry with the same Idempotency-Key "
            "to learn it.",
        ) from None
    if held.order is None or held.outcome not in ("OK", "EXISTS"):
        raise _hold_refused(held, event, s.max_seats_per_buyer)
    if held.outcome == "EXISTS":
        if held.order.raw.get("requestHash") != fingerprint:
            raise Problem(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was used with another request.",
            )
        g.replayed = True
        response = _created(held.order)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    return _created(held.order)


def _hold_refused(held: seats.OrderResult, event: EventSpec, per_buyer: int) -> Problem:
    """The problem of a hold the script refused."""
    if held.outcome == "NOT_LOADED":
        return unavailable("Seat state is not loaded yet; try again.", sales.retry_after())
    if held.outcome == "RATE_LIMITED":
        return sales.rate_limited(event.event_id, held.wait_ms)
    if held.outcome == "BUYER_LIMIT_REACHED":
        return Problem(
            409,
            "BUYER_LIMIT_REACHED",
            f"A buyer may hold at most {per_buyer} seats of {event.event_id}.",
        )
    if held.outcome == "SEAT_TAKEN":
        taken = [{"zoneId": z, "row": r, "column": c} for z, r, c in held.taken]
        names = ", ".join(f"zone {z} {r}{c}" for z, r, c in held.taken)
        return Problem(409, "SEAT_TAKEN", f"Taken: {names}.", members={"seats": taken})
    return Problem(409, held.outcome, f"{event.event_id}: {held.outcome}.")


@allow(Access.BUYER)
@bp.get("/api/v1/orders/<order_id>")
@documented({200: OrderSchema}, problems=("ORDER_NOT_FOUND", "SERVICE_UNAVAILABLE"))
def get_order(order_id: str) -> Response:
    """The order's live state (the owner's or an operator's; 404 to anyone else).

    A hold that is due becomes EXPIRED here, with its event."""
    found = live_order(event_of_order(order_id), order_id)
    if found.order is None or not owns(found.order.buyer):
        raise not_found(order_id)
    return order_response(found.order)


@allow(Access.BUYER)
@bp.post("/api/v1/orders/<order_id>/cancel")
@documented({200: OrderSchema}, problems=("ORDER_PAID", "ORDER_CLOSED", *ORDER_PROBLEMS))
def cancel_order(order_id: str) -> Response:
    """Cancel a held order (its owner or an operator; no body): its seats are free at once."""
    event_id = event_of_order(order_id)
    identity = current()
    result = change_order(
        "cancel",
        order_id,
        lambda scripts: scripts.cancel(
            event_id,
            order_id,
            caller=identity.subject,
            operator=identity.is_operator,
            request_id=logs.request_id.get() or "",
        ),
    )
    return answer(result, order_id)


def live_order(event_id: str, order_id: str) -> seats.OrderResult:
    """The order's live state (`get`: a due hold expires), or 503 when Redis does not answer."""
    try:
        return seats.orders_for(seats.client()).get(event_id, order_id)
    except redis.RedisError as exc:
        log.warning("get order %s: Redis error %s", order_id, exc)
        raise unavailable("Seat state is unreachable; try again.", sales.retry_after()) from None


def event_of_order(order_id: str) -> str:
    """The event of an order (one GET in its bucket), or 404 ORDER_NOT_FOUND: a malformed id
    is answered without any lookup."""
    if keys.order_bucket(order_id) is None:
        raise not_found(order_id)
    try:
        event_id = seats.orders_for(seats.client()).event_of(order_id)
    except redis.RedisError as exc:
        log.warning("order %s: Redis error %s", order_id, exc)
        raise unavailable("Seat state is unreachable; try again.", sales.retry_after()) from None
    if event_id is None or not is_id(event_id):
        raise not_found(order_id)
    return event_id


def change_order(action: str, order_id: str, call: Any) -> seats.OrderResult:
    """Run one order script; a Redis failure is 503 (SERVICE_UNAVAILABLE when nothing was sent,
    else OUTCOME_UNKNOWN: the change may stand, and the same call again is harmless)."""
    try:
        return call(seats.orders_for(seats.client()))
    except redis.RedisError as exc:
        raise sales.redis_failed(
            exc,
            f"{action} order {order_id}",
            f"The {action} may or may not have been made; the same call again tells.",
        ) from None


def answer(result: seats.OrderResult, order_id: str) -> Response:
    """200 with the order for OK and NO_CHANGE, else the outcome's problem."""
    if result.ok and result.order is not None:
        return order_response(result.order)
    if result.outcome == "ORDER_NOT_FOUND":
        raise not_found(order_id)
    if result.outcome == "NOT_LOADED":
        raise unavailable("Seat state is not loaded yet; try again.", sales.retry_after())
    status = "" if result.order is None else f" (it is {result.order.status})"
    raise Problem(409, result.outcome, f"Order {order_id}: {result.outcome}{status}.")


def not_found(order_id: str) -> Problem:
    return Problem(404, "ORDER_NOT_FOUND", f"No order {order_id!r}.")


def order_json(order: seats.Order) -> dict[str, Any]:
    """The contract's order JSON of a script's snapshot."""
    return {name: order.raw[name] for name in ORDER_FIELDS if name in order.raw}


def order_response(order: seats.Order) -> Response:
    g.order_id = order.order_id
    return jsonify(order_json(order))


def _created(order: seats.Order) -> Response:
    response = order_response(order)
    response.status_code = 201
    response.headers["Location"] = f"/purchase/api/v1/orders/{order.order_id}"
    return response


def _keyed_order_id(buyer: str, key: str, event: EventSpec) -> str:
    """The order id of a buyer's Idempotency-Key on an event: the same for every repeat, with
    the event's bucket as its last hex digit (as `keys.new_order_id` makes them)."""
    return keys.new_order_id(event.event_id, json.dumps([buyer, key, event.event_id]))


def _fingerprint(req: dict[str, Any]) -> str:
    """The validated body's fingerprint, rows in upper case."""
    canonical = dict(req)
    if "seats" in canonical:
        canonical["seats"] = [{**seat, "row": seat["row"].upper()} for seat in req["seats"]]
    return sales.fingerprint(canonical)


_ACTIONS = {
    "purchase.hold_order": "hold",
    "purchase.get_order": "get",
    "purchase.confirm_order": "confirm",
    "purchase.cancel_order": "cancel",
    "purchase.refund_order": "refund",
}


@bp.after_request
def _account_order(response: Response) -> Response:
    """One metric sample and one structured log line per order answer."""
    action = _ACTIONS.get(request.endpoint or "")
    if action is not None:
        code = "OK" if response.status_code < 300 else g.get("problem_code", "OTHER")
        if g.get("replayed"):
            code = "REPLAYED"
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.ORDER_ANSWERS.labels(action, code).inc()
        log.info(
            "order %s %s",
            action,
            code,
            extra={"outcome": code, "orderId": g.get("order_id"), "ms": round(seconds * 1e3, 2)},
        )
    return response

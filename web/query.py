"""Query API: reads the ticket projection through the reader (`DATABASE_READ_URL`).

GET /query/api/v1/tickets                              newest first, filters, cursor pages
GET /query/api/v1/tickets/{ticketId}
GET /query/api/v1/tickets/count/{eventId}
GET /query/api/v1/tickets/revenue/{venueId}/{eventId}
GET /query/api/v1/orders/{orderId}                     an order as projected (its buyer's)
GET /query/api/v1/orders?eventId=&status=              orders, newest first (operators)
GET /query/api/v1/me/orders                            the caller's own orders, newest first
GET /query/api/v1/venues                               the catalog: venues, with capacity
GET /query/api/v1/venues/{venueId}                     zones with grid, capacity and price
GET /query/api/v1/events
GET /query/api/v1/events/{eventId}
GET /query/health                                      the process answers (the ALB's probe)
GET /query/health/deep                                 the read database answers?
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request
from marshmallow import Schema, ValidationError
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError

import models
from models import totals
from models.catalog import is_id
from models.orders import get_order, list_orders
from models.tables import Event, Venue, Zone
from models.tickets import get_ticket, is_ticket_id, list_tickets
from plumbing import settings
from web.access import Access, allow, current, owns
from web.openapi import documented
from web.problems import Problem, problem_response, unavailable
from web.schemas import (
    CountSchema,
    Cursor,
    EventSchema,
    HealthSchema,
    LivenessSchema,
    MyOrdersQuerySchema,
    OrderListQuerySchema,
    OrderSchema,
    RevenueSchema,
    TicketListQuerySchema,
    TicketSchema,
    VenueSchema,
    VenueSummarySchema,
)

log = logging.getLogger(__name__)

bp = Blueprint("query", __name__, url_prefix="/query")

_list_schema = TicketListQuerySchema()
_order_list_schema = OrderListQuerySchema()
_my_orders_schema = MyOrdersQuerySchema()
_DOWN = "SERVICE_UNAVAILABLE"  # every route here reads the database


@bp.errorhandler(SQLAlchemyError)
def _database_down(exc: SQLAlchemyError) -> Response:
    log.warning("read database error: %s", exc)
    return problem_response(
        unavailable(
            "The read database is unreachable; try again.", settings.get().retry_after_seconds
        )
    )


@allow(Access.OPERATOR)
@bp.get("/api/v1/tickets")
@documented(
    {200: TicketSchema(many=True)},
    query=TicketListQuerySchema,
    problems=("VALIDATION_FAILED", _DOWN),
    response_headers={
        "Link": {"description": '`<…>; rel="next"` when there is a next page.', "schema": {}}
    },
)
def list_all() -> Response:
    """Tickets, newest first; `eventId`, `venueId`, `zoneId` filters; `limit` and `cursor`."""
    try:
        args = _list_schema.load(request.args.to_dict())
    except ValidationError as exc:
        raise Problem(
            400,
            "VALIDATION_FAILED",
            "Some query parameters are invalid.",
            errors=exc.normalized_messages(),
        ) from None
    limit = args["limit"]
    with models.reader().connect() as conn:
        page = list_tickets(
            conn,
            limit=limit + 1,
            after=args.get("cursor"),
            event_id=args.get("eventId"),
            venue_id=args.get("venueId"),
            zone_id=args.get("zoneId"),
        )
    response = jsonify([t.to_json() for t in page[:limit]])
    if len(page) > limit:
        last = page[limit - 1]
        params = {k: v for k, v in request.args.items() if k != "cursor"}
        params["cursor"] = Cursor()._serialize((last.created_on, last.ticket_id), None, None)
        response.headers["Link"] = f'<{request.path}?{urlencode(params)}>; rel="next"'
    return response


@allow(Access.BUYER)
@bp.get("/api/v1/tickets/<ticket_id>")
@documented({200: TicketSchema}, problems=("TICKET_NOT_FOUND", _DOWN))
def get_one(ticket_id: str) -> Response:
    """One ticket by id: its buyer's or any for an operator; 404 TICKET_NOT_FOUND otherwise (a
    ticket of another buyer is not found, so ids of others' tickets tell nothing)."""
    ticket = None
    if is_ticket_id(ticket_id):
        with models.reader().connect() as conn:
            ticket = get_ticket(conn, ticket_id)
    if ticket is None or not owns(ticket.buyer):
        raise Problem(404, "TICKET_NOT_FOUND", f"No ticket {ticket_id!r}.")
    return jsonify(ticket.to_json())


@allow(Access.OPERATOR)
@bp.get("/api/v1/tickets/count/<event_id>")
@documented({200: CountSchema}, problems=("UNKNOWN_EVENT", _DOWN))
def count(event_id: str) -> Response:
    """PAID tickets of an event: the projection's totals, one primary-key read."""
    if not is_id(event_id):
        raise _unknown_event(event_id)
    with models.reader().connect() as conn:
        sold = totals.of_event(conn, event_id)
    if sold is None:
        raise _unknown_event(event_id)
    return jsonify({"eventId": event_id, "count": sold.tickets})


@allow(Access.OPERATOR)
@bp.get("/api/v1/tickets/revenue/<venue_id>/<event_id>")
@documented(
    {200: RevenueSchema},
    problems=("UNKNOWN_VENUE", "UNKNOWN_EVENT", "EVENT_NOT_AT_VENUE", _DOWN),
)
def revenue_of(venue_id: str, event_id: str) -> Response:
    """PAID tickets and revenue of an event at a venue (the projection's totals), the amount
    as a decimal string."""
    if not is_id(venue_id):
        raise _unknown_venue(venue_id)
    if not is_id(event_id):
        raise _unknown_event(event_id)
    with models.reader().connect() as conn:
        sold = totals.of_event(conn, event_id)
        if sold is None or sold.venue_id != venue_id:  # which problem: the venue's is first
            if conn.scalar(select(Venue.venue_id).where(Venue.venue_id == venue_id)) is None:
                raise _unknown_venue(venue_id)
            if sold is None:
                raise _unknown_event(event_id)
            raise Problem(
                422, "EVENT_NOT_AT_VENUE", f"{event_id} is held at {sold.venue_id}, not {venue_id}."
            )
    return jsonify(
        {
            "venueId": venue_id,
            "eventId": event_id,
            "ticketCount": sold.tickets,
            "revenue": f"{sold.revenue:.2f}",
            "currency": settings.get().currency,
        }
    )


def _query_args(schema: Schema) -> dict:
    try:
        return schema.load(request.args.to_dict())
    except ValidationError as exc:
        raise Problem(
            400,
            "VALIDATION_FAILED",
            "Some query parameters are invalid.",
            errors=exc.normalized_messages(),
        ) from None


@allow(Access.BUYER)
@bp.get("/api/v1/orders/<order_id>")
@documented({200: OrderSchema}, problems=("ORDER_NOT_FOUND", _DOWN))
def get_one_order(order_id: str) -> Response:
    """One order as projected: its buyer's or any for an operator; 404 ORDER_NOT_FOUND otherwise
    (an order of another buyer is not found)."""
    order = None
    if is_id(order_id):
        with models.reader().connect() as conn:
            order = get_order(conn, order_id)
    if order is None or not owns(order.buyer):
        raise Problem(404, "ORDER_NOT_FOUND", f"No order {order_id!r}.")
    return jsonify(order.to_json())


@allow(Access.OPERATOR)
@bp.get("/api/v1/orders")
@documented(
    {200: OrderSchema(many=True)},
    query=OrderListQuerySchema,
    problems=("VALIDATION_FAILED", _DOWN),
)
def list_all_orders() -> Response:
    """Orders newest first, filtered by `eventId` and `status`; at most `limit`."""
    args = _query_args(_order_list_schema)
    with models.reader().connect() as conn:
        orders = list_orders(
            conn, limit=args["limit"], event_id=args.get("eventId"), status=args.get("status")
        )
    return jsonify([o.to_json() for o in orders])


@allow(Access.BUYER)
@bp.get("/api/v1/me/orders")
@documented(
    {200: OrderSchema(many=True)},
    query=MyOrdersQuerySchema,
    problems=("VALIDATION_FAILED", _DOWN),
)
def my_orders() -> Response:
    """The caller's own orders, newest first (operators too see only their own here)."""
    args = _query_args(_my_orders_schema)
    with models.reader().connect() as conn:
        orders = list_orders(
            conn,
            limit=args["limit"],
            event_id=args.get("eventId"),
            status=args.get("status"),
            buyer=current().subject,
        )
    return jsonify([o.to_json() for o in orders])


@allow(Access.PUBLIC)
@bp.get("/api/v1/venues")
@documented({200: VenueSummarySchema(many=True)}, problems=(_DOWN,))
def list_venues() -> Response:
    """Every venue with its number of zones and seats."""
    zones = (
        select(
            Zone.venue_id,
            func.count().label("zone_count"),
            func.sum(Zone.capacity).label("capacity"),
        )
        .group_by(Zone.venue_id)
        .subquery()
    )
    stmt = (
        select(Venue.venue_id, Venue.name, zones.c.zone_count, zones.c.capacity)
        .outerjoin(zones, zones.c.venue_id == Venue.venue_id)
        .order_by(Venue.venue_id)
    )
    with models.reader().connect() as conn:
        rows = conn.execute(stmt).all()
    return jsonify(
        [
            {
                "venueId": r.venue_id,
                "name": r.name,
                "zoneCount": int(r.zone_count or 0),
                "capacity": int(r.capacity or 0),
            }
            for r in rows
        ]
    )


@allow(Access.PUBLIC)
@bp.get("/api/v1/venues/<venue_id>")
@documented({200: VenueSchema}, problems=("UNKNOWN_VENUE", _DOWN))
def get_venue(venue_id: str) -> Response:
    """One venue and its zones: grid, capacity and price (a decimal string)."""
    if not is_id(venue_id):
        raise _unknown_venue(venue_id)
    with models.reader().connect() as conn:
        name = conn.scalar(select(Venue.name).where(Venue.venue_id == venue_id))
        if name is None:
            raise _unknown_venue(venue_id)
        zones = conn.execute(
            select(Zone).where(Zone.venue_id == venue_id).order_by(Zone.zone_id)
        ).all()
    return jsonify(
        {
            "venueId": venue_id,
            "name": name,
            "capacity": sum(z.capacity for z in zones),
            "zones": [
                {
                    "zoneId": z.zone_id,
                    "rows": z.row_count,
                    "columns": z.column_count,
                    "capacity": z.capacity,
                    "rowCapacity": z.row_capacity,
                    "price": f"{z.price:.2f}",
                }
                for z in zones
            ],
        }
    )


@allow(Access.PUBLIC)
@bp.get("/api/v1/events")
@documented({200: EventSchema(many=True)}, problems=(_DOWN,))
def list_events() -> Response:
    """Every event, by date."""
    with models.reader().connect() as conn:
        events = conn.execute(select(Event).order_by(Event.event_date, Event.event_id)).all()
    return jsonify([_event_json(e) for e in events])


@allow(Access.PUBLIC)
@bp.get("/api/v1/events/<event_id>")
@documented({200: EventSchema}, problems=("UNKNOWN_EVENT", _DOWN))
def get_event(event_id: str) -> Response:
    """One event: its venue, name, type, date (UTC) and capacity."""
    if not is_id(event_id):
        raise _unknown_event(event_id)
    with models.reader().connect() as conn:
        event = conn.execute(select(Event).where(Event.event_id == event_id)).first()
    if event is None:
        raise _unknown_event(event_id)
    return jsonify(_event_json(event))


def _unknown_event(event_id: str) -> Problem:
    return Problem(404, "UNKNOWN_EVENT", f"No event {event_id!r}.")


def _unknown_venue(venue_id: str) -> Problem:
    return Problem(404, "UNKNOWN_VENUE", f"No venue {venue_id!r}.")


def _event_json(e: Event) -> dict:
    return {
        "eventId": e.event_id,
        "venueId": e.venue_id,
        "name": e.name,
        "type": e.type,
        "date": e.event_date.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "capacity": e.capacity,
        **{
            name: moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            for name, moment in (("salesStart", e.sales_start), ("salesEnd", e.sales_end))
            if moment is not None
        },
    }


@allow(Access.PUBLIC)
@bp.get("/health")
@documented({200: LivenessSchema})
def health() -> tuple[Response, int]:
    """The process answers; no dependency is called (the load balancer's probe)."""
    return jsonify({"status": "UP"}), 200


@allow(Access.INTERNAL)
@bp.get("/health/deep")
@documented({200: HealthSchema, 503: HealthSchema})
def health_deep() -> tuple[Response, int]:
    """UP when the read database answers."""
    try:
        with models.reader().connect() as conn:
            conn.execute(text("SELECT 1"))
        return jsonify({"status": "UP", "checks": {"database": "UP"}}), 200
    except SQLAlchemyError as exc:
        log.warning("query health: %s", exc)
        reason = "database: no answer"
        body = {"status": "DOWN", "checks": {"database": "DOWN"}, "reasons": [reason]}
        return jsonify(body), 503

"""marshmallow schemas of the HTTP API: what a request may carry, checked before anything runs."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from werkzeug.routing import IntegerConverter

from models.catalog import ID_PATTERN, ID_RULE

_ID = validate.Length(min=1, max=64)

# An integer outside a JSON body (query string, path) is spelled as JSON spells one: ASCII
# digits, no leading zeros, no "+", spaces or "_". Python's int() and werkzeug's \d would also
# take "1_0", " 1", "+5" and Devanagari or full-width digits.
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)\Z")


class QueryInteger(fields.Integer):
    """An integer parameter of a query string, spelled as in a JSON body."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not _INTEGER.match(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class PositiveIntConverter(IntegerConverter):
    """`<positive:name>` in a route: 1, 2, … in ASCII digits without leading zeros; any other
    spelling matches no route (404)."""

    regex = r"[1-9][0-9]*"


def id_field(*, example: str, **kwargs: Any) -> fields.String:
    """A venue or event id (the contract's `[A-Za-z0-9._-]{1,64}`)."""
    return fields.String(
        validate=[_ID, ID_RULE],
        metadata={"pattern": ID_PATTERN, "example": example},  # the spec's regex dialect
        **kwargs,
    )


class PurchaseRequestSchema(Schema):
    """`POST /purchase/api/v1/tickets` body; unknown fields are rejected."""

    class Meta:
        unknown = RAISE

    venueId = id_field(required=True, example="Venue1")
    eventId = id_field(required=True, example="Event1")
    zoneId = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=1), metadata={"example": 1}
    )
    row = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=16),
            validate.Regexp(r"^[A-Za-z]+\Z", error="Row must be letters, A to Z."),
        ],
        metadata={"pattern": "^[A-Za-z]+$", "example": "A"},  # the spec's regex dialect
    )
    column = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=9),
            validate.Regexp(
                r"^[1-9][0-9]*\Z", error='Column must be a positive integer string, e.g. "1".'
            ),
        ],
        metadata={"pattern": "^[1-9][0-9]*$", "example": "1"},
    )


def _zone_field(**kwargs: Any) -> fields.Integer:
    return fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=2**31 - 1),
        metadata={"example": 1},
        **kwargs,
    )


def _row_field() -> fields.String:
    return fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=16),
            validate.Regexp(r"^[A-Za-z]+\Z", error="Row must be letters, A to Z."),
        ],
        metadata={"pattern": "^[A-Za-z]+$", "example": "A"},
    )


def _column_field() -> fields.String:
    return fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=9),
            validate.Regexp(
                r"^[1-9][0-9]*\Z", error='Column must be a positive integer string, e.g. "1".'
            ),
        ],
        metadata={"pattern": "^[1-9][0-9]*$", "example": "1"},
    )


class OrderSeatRequestSchema(Schema):
    """One chosen seat of an order; unknown fields are rejected."""

    class Meta:
        unknown = RAISE

    zoneId = _zone_field(required=True)
    row = _row_field()
    column = _column_field()


class OrderRequestSchema(Schema):
    """`POST /purchase/api/v1/orders` body: `seats` (chosen seats, any zones of the event), or
    `zoneId` and `quantity` (best available); unknown fields are rejected. More seats than
    MAX_SEATS_PER_ORDER is 422 ORDER_TOO_LARGE, not a validation error."""

    class Meta:
        unknown = RAISE

    venueId = id_field(required=True, example="Venue1")
    eventId = id_field(required=True, example="Event1")
    seats = fields.List(fields.Nested(OrderSeatRequestSchema), validate=validate.Length(min=1))
    zoneId = _zone_field()
    quantity = fields.Integer(
        strict=True, validate=validate.Range(min=1, max=2**31 - 1), metadata={"example": 2}
    )

    @validates_schema
    def _one_way(self, data: dict, **_: Any) -> None:
        best = "zoneId" in data or "quantity" in data
        if "seats" in data and best:
            raise ValidationError("Give seats, or zoneId and quantity, not both.", "_schema")
        if "seats" not in data and not ("zoneId" in data and "quantity" in data):
            raise ValidationError("Give seats, or zoneId and quantity.", "_schema")
        seen = set()
        for i, seat in enumerate(data.get("seats", [])):
            place = (seat["zoneId"], seat["row"].upper(), seat["column"])
            if place in seen:
                raise ValidationError({i: ["This seat is given twice."]}, "seats")
            seen.add(place)


_PAYMENT_ID = validate.Regexp(r"^[\x21-\x7e]{1,255}\Z", error="1 to 255 visible ASCII characters.")


def _payment_id_field() -> fields.String:
    return fields.String(
        required=True,
        validate=_PAYMENT_ID,
        metadata={"pattern": "^[!-~]+$", "minLength": 1, "maxLength": 255, "example": "pay_123"},
    )


class ConfirmRequestSchema(Schema):
    """The payment provider's confirmation (signed); unknown fields are rejected."""

    class Meta:
        unknown = RAISE

    orderId = fields.String(required=True, validate=validate.Length(min=1, max=64))
    paymentId = _payment_id_field()
    amount = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[0-9]{1,15}(\.[0-9]{1,6})?\Z", error='A decimal string, e.g. "190.00".'
        ),
        metadata={"pattern": "^[0-9]+([.][0-9]+)?$", "example": "190.00"},
    )
    currency = fields.String(
        required=True,
        validate=validate.Regexp(r"^[A-Z]{3}\Z", error="An ISO 4217 code, e.g. USD."),
        metadata={"pattern": "^[A-Z]{3}$", "example": "USD"},
    )


class RefundRequestSchema(Schema):
    """A refund: the order and the payment that paid it; unknown fields are rejected."""

    class Meta:
        unknown = RAISE

    orderId = fields.String(required=True, validate=validate.Length(min=1, max=64))
    paymentId = _payment_id_field()


_CURSOR = re.compile(r"[A-Za-z0-9_-]+\Z")
_CURSOR_PATTERN = "^[A-Za-z0-9_-]+$"


class Cursor(fields.Field):
    """Opaque page cursor: base64url of the last (createdOn, ticketId) of the previous page.

    Only the server makes cursors (in `Link`): an empty one or one with characters outside
    base64url is a client bug, answered 400 rather than read as "first page" (a client loop
    that lost its cursor would page through page 1 forever).
    """

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        created, ticket_id = value
        raw = json.dumps([created.isoformat(), ticket_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not _CURSOR.match(value):
            raise ValidationError("Not a valid cursor: the cursor of a Link header, not empty.")
        try:
            padded = str(value) + "=" * (-len(str(value)) % 4)
            created, ticket_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
            return datetime.fromisoformat(created).replace(tzinfo=None), str(ticket_id)[:36]
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise ValidationError("Not a valid cursor.") from None


class TicketListQuerySchema(Schema):
    """`GET /query/api/v1/tickets` query string; unknown parameters are rejected."""

    class Meta:
        unknown = RAISE

    eventId = id_field(example="Event1")
    venueId = id_field(example="Venue1")
    zoneId = QueryInteger(validate=validate.Range(min=1, max=2**31 - 1))
    limit = QueryInteger(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = Cursor(metadata={"minLength": 1, "pattern": _CURSOR_PATTERN})


# Response bodies: documentation of what the views answer (the OpenAPI spec is built from
# them, and the schemathesis tests check every answer against it).

_DECIMAL = {"pattern": r"^-?[0-9]+\.[0-9]{2}$", "example": "100.00"}


class TicketSchema(Schema):
    """A sold ticket, as the purchase answers it and the query API reads it."""

    ticketId = fields.UUID(required=True)
    venueId = fields.String(required=True)
    eventId = fields.String(required=True)
    zoneId = fields.Integer(required=True)
    row = fields.String(required=True, metadata={"example": "A"})
    column = fields.String(required=True, metadata={"example": "1"})
    price = fields.String(required=True, metadata=_DECIMAL)
    status = fields.String(required=True, metadata={"example": "PAID"})
    createdOn = fields.DateTime(required=True)


ORDER_STATUSES = ["HELD", "PAID", "EXPIRED", "CANCELLED", "REFUNDED"]


class OrderListQuerySchema(Schema):
    """`GET /query/api/v1/orders` query string; unknown parameters are rejected."""

    class Meta:
        unknown = RAISE

    eventId = id_field(example="Event1")
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES))
    limit = QueryInteger(load_default=100, validate=validate.Range(min=1, max=1000))


class MyOrdersQuerySchema(Schema):
    """`GET /query/api/v1/me/orders` query string; unknown parameters are rejected."""

    class Meta:
        unknown = RAISE

    eventId = id_field(example="Event1")
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES))
    limit = QueryInteger(load_default=100, validate=validate.Range(min=1, max=1000))


class OrderSeatSchema(Schema):
    ticketId = fields.String(required=True)
    zoneId = fields.Integer(required=True)
    row = fields.String(required=True, metadata={"example": "A"})
    column = fields.String(required=True, metadata={"example": "1"})
    price = fields.String(required=True, metadata=_DECIMAL)


class OrderSchema(Schema):
    """An order: its live state on the purchase side, or as projected on the query side (the
    newest version that reached MySQL; only there with the `paymentId` that paid it)."""

    orderId = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(ORDER_STATUSES))
    venueId = fields.String(required=True)
    eventId = fields.String(required=True)
    buyer = fields.String(required=True)
    seats = fields.List(fields.Nested(OrderSeatSchema), required=True)
    total = fields.String(required=True, metadata=_DECIMAL)
    currency = fields.String(required=True, metadata={"example": "USD"})
    createdOn = fields.DateTime(required=True)
    expiresAt = fields.DateTime(required=True, allow_none=True)
    version = fields.Integer(required=True)
    paymentId = fields.String()


class ProblemSchema(Schema):
    """RFC 9457 problem details; `code` is stable, `errors` names each invalid field."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    code = fields.String(required=True)
    errors = fields.Dict()
    seats = fields.List(
        fields.Dict(),
        metadata={"description": "SEAT_TAKEN: the seats taken, as {zoneId, row, column}."},
    )


class LivenessSchema(Schema):
    """The process answers: always `UP` (what the load balancer probes)."""

    status = fields.String(required=True, validate=validate.OneOf(["UP"]))


class HealthSchema(Schema):
    """`UP` when every check is `UP`; `reasons` when DOWN."""

    status = fields.String(required=True, validate=validate.OneOf(["UP", "DOWN"]))
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    reasons = fields.List(fields.String())


class RelayHeartbeatSchema(Schema):
    """One relay's last heartbeat: how long ago, and the outbox entries it held then."""

    ageSeconds = fields.Float(required=True)
    held = fields.Integer(required=True)


class EventsHealthSchema(Schema):
    """Workers and relays alive, queue and outbox depths; `reasons` when DOWN."""

    status = fields.String(required=True, validate=validate.OneOf(["UP", "DOWN"]))
    workers = fields.Integer(required=True)
    queueDepth = fields.Integer(required=True, allow_none=True)
    inFlight = fields.Integer(required=True, allow_none=True)
    deadLetterDepth = fields.Integer(required=True, allow_none=True)
    lastHeartbeatAgeSeconds = fields.Float(allow_none=True)
    workerHeartbeatAges = fields.Dict(keys=fields.String(), values=fields.Float())
    lastPersistAgeSeconds = fields.Float(allow_none=True)
    projectionLagSeconds = fields.Float(allow_none=True)
    outboxDepth = fields.Integer(allow_none=True)
    outboxOldestAgeSeconds = fields.Float(allow_none=True)
    parkedDepth = fields.Integer(allow_none=True)
    relays = fields.Integer()
    relayHeartbeats = fields.Dict(keys=fields.String(), values=fields.Nested(RelayHeartbeatSchema))
    reasons = fields.List(fields.String())


class CountSchema(Schema):
    eventId = fields.String(required=True)
    count = fields.Integer(required=True)


class RevenueSchema(Schema):
    venueId = fields.String(required=True)
    eventId = fields.String(required=True)
    ticketCount = fields.Integer(required=True)
    revenue = fields.String(required=True, metadata=_DECIMAL)
    currency = fields.String(required=True, metadata={"example": "USD"})


class ZoneSchema(Schema):
    """A zone of a venue: its grid, how many seats may be sold, the price (decimal string)."""

    zoneId = fields.Integer(required=True)
    rows = fields.Integer(required=True)
    columns = fields.Integer(required=True)
    capacity = fields.Integer(required=True)
    rowCapacity = fields.Integer(required=True)
    price = fields.String(required=True, metadata=_DECIMAL)


class VenueSummarySchema(Schema):
    venueId = fields.String(required=True)
    name = fields.String(required=True)
    zoneCount = fields.Integer(required=True)
    capacity = fields.Integer(required=True)


class VenueSchema(Schema):
    venueId = fields.String(required=True)
    name = fields.String(required=True)
    capacity = fields.Integer(required=True)
    zones = fields.List(fields.Nested(ZoneSchema), required=True)


class EventSchema(Schema):
    eventId = fields.String(required=True)
    venueId = fields.String(required=True)
    name = fields.String(required=True)
    type = fields.String(required=True)
    date = fields.DateTime(required=True)
    capacity = fields.Integer(required=True)
    salesStart = fields.DateTime(metadata={"description": "Sales open (absent: no bound)."})
    salesEnd = fields.DateTime(metadata={"description": "Sales close (absent: no bound)."})


class RemainingSchema(Schema):
    zone = fields.Integer(required=True)
    rows = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        required=True,
        metadata={"example": {"A": 40}},
    )


class SeatMapSchema(Schema):
    """A zone's seats: `seats[i]` is row i (A, B, …), one character per column: `0` free, `h`
    held (by an order not paid yet), `1` sold."""

    eventId = fields.String(required=True)
    zoneId = fields.Integer(required=True)
    rows = fields.Integer(required=True)
    columns = fields.Integer(required=True)
    remaining = fields.Nested(RemainingSchema, required=True)
    seats = fields.List(
        fields.String(metadata={"example": "0h10", "pattern": "^[01h]*$"}), required=True
    )


class ZoneAvailabilitySchema(Schema):
    zoneId = fields.Integer(required=True)
    capacity = fields.Integer(required=True)
    remaining = fields.Integer(required=True)


class AvailabilitySchema(Schema):
    """Seats left per zone of an event (and in all)."""

    eventId = fields.String(required=True)
    venueId = fields.String(required=True)
    remaining = fields.Integer(required=True)
    zones = fields.List(fields.Nested(ZoneAvailabilitySchema), required=True)

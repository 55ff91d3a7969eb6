"""marshmallow schemas of the HTTP API: what a request may carry, checked before anything runs."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

_ID = validate.Length(min=1, max=64)


class PurchaseRequestSchema(Schema):
    """`POST /purchase/api/v1/tickets` body; unknown fields are rejected."""

    class Meta:
        unknown = RAISE

    venueId = fields.String(required=True, validate=_ID)
    eventId = fields.String(required=True, validate=_ID)
    zoneId = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    row = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=16),
            validate.Regexp(r"^[A-Za-z]+\Z", error="Row must be letters, A to Z."),
        ],
    )
    column = fields.String(
        required=True,
        validate=[
            validate.Length(min=1, max=9),
            validate.Regexp(
                r"^[1-9][0-9]*\Z", error='Column must be a positive integer string, e.g. "1".'
            ),
        ],
    )


class Cursor(fields.Field):
    """Opaque page cursor: base64url of the last (createdOn, ticketId) of the previous page."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        created, ticket_id = value
        raw = json.dumps([created.isoformat(), ticket_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
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

    eventId = fields.String(validate=_ID)
    venueId = fields.String(validate=_ID)
    zoneId = fields.Integer(validate=validate.Range(min=1, max=2**31 - 1))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    cursor = Cursor()

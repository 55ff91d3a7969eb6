"""Test support: data factories — the test catalog and ticket events."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from tests.support.processes import ROOT


def test_catalog_document() -> dict[str, Any]:
    """The default catalog plus a tiny venue whose caps reach every counter in a few sales."""
    with open(ROOT / "models" / "catalog.json", encoding="utf-8") as f:
        document = json.load(f)
    document["venues"].append(
        {
            "venueId": "TinyVenue",
            "name": "Tiny test venue",
            "zones": [
                # 2 rows × 3 seats, at most 2 sold per row
                {"zoneId": 1, "rows": 2, "columns": 3, "price": "10.50", "rowCapacity": 2},
                # 2 × 2 seats, at most 3 sold in the zone
                {"zoneId": 2, "rows": 2, "columns": 2, "price": "20.00", "capacity": 3},
                {"zoneId": 3, "rows": 3, "columns": 3, "price": "30.25"},
            ],
        }
    )
    document["events"] += [
        {
            "eventId": "TinyEvent",
            "venueId": "TinyVenue",
            "name": "Tiny",
            "type": "TEST",
            "date": "2027-01-01T20:00:00Z",
        },
        {
            "eventId": "TinyCapped",
            "venueId": "TinyVenue",
            "name": "Tiny, 2 seats",
            "type": "TEST",
            "date": "2027-01-02T20:00:00Z",
            "capacity": 2,
        },
    ]
    return document


def ticket_message(**overrides: Any) -> dict[str, Any]:
    """A valid ticket event (Venue1/Event1 zone 1), with fields replaced by `overrides`."""
    ticket = {
        "ticketId": str(uuid.uuid4()),
        "venueId": "Venue1",
        "eventId": "Event1",
        "zoneId": 1,
        "row": "A",
        "column": "1",
        "price": "100.00",
        "status": "PAID",
        "createdOn": "2026-11-26T12:00:00.000Z",
        "schemaVersion": 1,
    }
    ticket.update(overrides)
    return ticket


def order_message(
    *,
    status: str = "HELD",
    version: int = 1,
    seats: list[tuple[str, str]] | None = None,
    order_id: str | None = None,
    buyer: str = "buyer-a",
    event_id: str = "Event1",
    venue_id: str = "Venue1",
    zone_id: int = 1,
    price: str = "100.00",
    payment_id: str | None = None,
) -> dict[str, Any]:
    """An order event's snapshot (the outbox's `order` field, parsed): seats as (row, column)
    of one zone, each with a fresh ticket id."""
    seats = seats or [("A", "1")]
    order: dict[str, Any] = {
        "orderId": order_id or str(uuid.uuid4()),
        "status": status,
        "venueId": venue_id,
        "eventId": event_id,
        "buyer": buyer,
        "seats": [
            {
                "ticketId": str(uuid.uuid4()),
                "zoneId": zone_id,
                "row": row,
                "column": column,
                "price": price,
            }
            for row, column in seats
        ],
        "total": f"{Decimal(price) * len(seats):.2f}",
        "currency": "USD",
        "createdOn": "2026-11-26T12:00:00.000Z",
        "expiresAt": "2026-11-26T12:10:00.000Z",
        "version": version,
    }
    if payment_id is not None:
        order["paymentId"] = payment_id
    return order


def next_version(order: dict[str, Any], status: str, **changes: Any) -> dict[str, Any]:
    """The same order one transition later: `status`, version + 1, the same seats."""
    return {**order, "status": status, "version": order["version"] + 1, **changes}


def late_payment_message(order: dict[str, Any], payment_id: str) -> dict[str, Any]:
    """A LATE_PAYMENT_REJECTED event's payment for `order` (the outbox's `payment` field)."""
    return {
        "orderId": order["orderId"],
        "eventId": order["eventId"],
        "paymentId": payment_id,
        "amount": order["total"],
        "currency": order["currency"],
        "rejectedOn": "2026-11-26T12:11:00.000Z",
    }


def clear_tickets(conn: Any) -> None:
    """Empty the projection: tickets, orders and their seats, recorded conflicts and the
    per-event totals that count the tickets (one transaction, the caller's)."""
    from sqlalchemy import text

    conn.execute(text("DELETE FROM ticket_conflict"))
    conn.execute(text("DELETE FROM ticket"))
    conn.execute(text("DELETE FROM order_seat"))
    conn.execute(text("DELETE FROM orders"))
    conn.execute(text("DELETE FROM late_payment"))
    conn.execute(text("DELETE FROM event_totals"))


def sell(scripts: Any, event_id: str, zone: Any, row_index: int, column: int, **kw: Any) -> str:
    """Sell a seat through the purchase script with a fresh ticket, as the purchase view does;
    return the outcome (OK, SEAT_TAKEN, …). By default to one buyer without limits."""
    from models.catalog import row_label
    from models.seats import Limits

    kw.setdefault("buyer", "buyer-a")
    kw.setdefault("limits", Limits(10**9, 10**9))
    ticket = ticket_message(
        eventId=event_id, zoneId=zone.zone_id, row=row_label(row_index), column=column
    )
    return scripts.purchase(event_id, zone, row_index, column, ticket=ticket, **kw).outcome

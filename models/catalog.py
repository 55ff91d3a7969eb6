"""The catalog: venues with zones (grid, capacity, price) and events, read from a data file.

`Catalog.from_dict` validates a catalog document; `upsert` writes it to MySQL in one transaction.
Redis gets the seat counters and a copy of the catalog from `models.seats.load_catalog`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.mysql import insert

from models.tables import Event, Ticket, Venue, Zone

MAX_ROWS = 18278  # A … ZZZ
MAX_COLUMNS = 100_000

# Venue and event ids: compared byte for byte everywhere, so only characters that every layer
# (URLs, Redis hash tags, MySQL, logs) spells one way. The spec states it in its own dialect.
ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
ID_PATTERN = "^[A-Za-z0-9._-]+$"
ID_RULE = validate.Regexp(ID_RE, error="1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'.")


def is_id(value: str) -> bool:
    """Whether `value` is a well-formed venue or event id."""
    return ID_RE.match(value) is not None


def row_label(index: int) -> str:
    """Row label of a 0-based row index: 0 → A, 25 → Z, 26 → AA (bijective base 26)."""
    label = ""
    n = index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


def row_index(label: str) -> int:
    """0-based row index of a row label of uppercase letters: A → 0, AA → 26."""
    n = 0
    for ch in label:
        n = n * 26 + (ord(ch) - ord("A") + 1)
    return n - 1


@dataclass(frozen=True)
class ZoneSpec:
    zone_id: int
    rows: int
    columns: int
    price: Decimal
    capacity: int
    row_capacity: int


@dataclass(frozen=True)
class VenueSpec:
    venue_id: str
    name: str
    zones: dict[int, ZoneSpec]

    @property
    def capacity(self) -> int:
        return sum(z.capacity for z in self.zones.values())


@dataclass(frozen=True)
class EventSpec:
    event_id: str
    venue_id: str
    name: str
    type: str
    date: datetime
    capacity: int
    # the sales window (UTC): purchases before `sales_start` or from `sales_end` on are refused
    # (by the purchase API's clock); None = no bound
    sales_start: datetime | None = None
    sales_end: datetime | None = None


class _ZoneSchema(Schema):
    class Meta:
        unknown = RAISE

    zoneId = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    rows = fields.Integer(strict=True, required=True, validate=validate.Range(1, MAX_ROWS))
    columns = fields.Integer(strict=True, required=True, validate=validate.Range(1, MAX_COLUMNS))
    price = fields.Decimal(required=True, places=2, validate=validate.Range(min=0))
    capacity = fields.Integer(strict=True, validate=validate.Range(min=0))
    rowCapacity = fields.Integer(strict=True, validate=validate.Range(min=0))


class _VenueSchema(Schema):
    class Meta:
        unknown = RAISE

    venueId = fields.String(required=True, validate=ID_RULE)
    name = fields.String(required=True, validate=validate.Length(1, 200))
    zones = fields.List(fields.Nested(_ZoneSchema), required=True, validate=validate.Length(min=1))


class _EventSchema(Schema):
    class Meta:
        unknown = RAISE

    eventId = fields.String(required=True, validate=ID_RULE)
    venueId = fields.String(required=True, validate=ID_RULE)
    name = fields.String(required=True, validate=validate.Length(1, 200))
    type = fields.String(required=True, validate=validate.Length(1, 50))
    date = fields.AwareDateTime(required=True)
    capacity = fields.Integer(strict=True, validate=validate.Range(min=0))
    salesStart = fields.AwareDateTime(allow_none=True)
    salesEnd = fields.AwareDateTime(allow_none=True)

    @validates_schema
    def _window(self, data: dict, **_: Any) -> None:
        start, end = data.get("salesStart"), data.get("salesEnd")
        if start is not None and end is not None and end <= start:
            raise ValidationError("salesEnd must be after salesStart", "salesEnd")


class _CatalogSchema(Schema):
    class Meta:
        unknown = RAISE

    venues = fields.List(fields.Nested(_VenueSchema), required=True)
    events = fields.List(fields.Nested(_EventSchema), required=True)

    @validates_schema
    def _references(self, data: dict, **_: Any) -> None:
        venue_ids = [v["venueId"] for v in data["venues"]]
        if len(set(venue_ids)) != len(venue_ids):
            raise ValidationError("duplicate venueId", "venues")
        for venue in data["venues"]:
            zone_ids = [z["zoneId"] for z in venue["zones"]]
            if len(set(zone_ids)) != len(zone_ids):
                raise ValidationError(f"duplicate zoneId in {venue['venueId']}", "venues")
        event_ids = [e["eventId"] for e in data["events"]]
        if len(set(event_ids)) != len(event_ids):
            raise ValidationError("duplicate eventId", "events")
        for event in data["events"]:
            if event["venueId"] not in venue_ids:
                raise ValidationError(f"{event['eventId']}: unknown venue", "events")


@dataclass(frozen=True)
class Catalog:
    venues: dict[str, VenueSpec]
    events: dict[str, EventSpec]

    @classmethod
    def from_dict(cls, document: dict) -> Catalog:
        """Validate a catalog document (camelCase, as in the data file)."""
        data = _CatalogSchema().load(document)
        venues = {}
        for v in data["venues"]:
            zones = {}
            for z in v["zones"]:
                grid = z["rows"] * z["columns"]
                zones[z["zoneId"]] = ZoneSpec(
                    zone_id=z["zoneId"],
                    rows=z["rows"],
                    columns=z["columns"],
                    price=z["price"],
                    capacity=min(z.get("capacity", grid), grid),
                    row_capacity=min(z.get("rowCapacity", z["columns"]), z["columns"]),
                )
            venues[v["venueId"]] = VenueSpec(v["venueId"], v["name"], zones)
        events = {}
        for e in data["events"]:
            venue_capacity = venues[e["venueId"]].capacity
            events[e["eventId"]] = EventSpec(
                event_id=e["eventId"],
                venue_id=e["venueId"],
                name=e["name"],
                type=e["type"],
                date=e["date"].astimezone(UTC),
                capacity=min(e.get("capacity", venue_capacity), venue_capacity),
                sales_start=_utc(e.get("salesStart")),
                sales_end=_utc(e.get("salesEnd")),
            )
        return cls(venues, events)

    @classmethod
    def from_file(cls, path: Path) -> Catalog:
        """Read and validate a catalog data file."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict:
        """The catalog as a document that `from_dict` reads back unchanged."""
        return {
            "venues": [
                {
                    "venueId": v.venue_id,
                    "name": v.name,
                    "zones": [
                        {
                            "zoneId": z.zone_id,
                            "rows": z.rows,
                            "columns": z.columns,
                            "price": str(z.price),
                            "capacity": z.capacity,
                            "rowCapacity": z.row_capacity,
                        }
                        for z in v.zones.values()
                    ],
                }
                for v in self.venues.values()
            ],
            "events": [
                {
                    "eventId": e.event_id,
                    "venueId": e.venue_id,
                    "name": e.name,
                    "type": e.type,
                    "date": e.date.isoformat(),
                    "capacity": e.capacity,
                    **_window_fields(e),
                }
                for e in self.events.values()
            ],
        }


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def _window_fields(e: EventSpec) -> dict[str, str]:
    """`salesStart`/`salesEnd` of the document, only where the event sets them."""
    window = {"salesStart": e.sales_start, "salesEnd": e.sales_end}
    return {name: moment.isoformat() for name, moment in window.items() if moment is not None}


@dataclass(frozen=True)
class GridChange:
    """A change to what fixes an event's seats: where each bit is, how many may be sold."""

    event_id: str
    field: str
    old: Any
    new: Any

    def __str__(self) -> str:
        return f"{self.event_id}: {self.field} {self.old} -> {self.new}"


# A seat's bit is rowIndex × columns + colIndex, and the counters start from the capacities:
# changing any of these under sold seats would move them (sold seats look free and sell again)
# or make the counters disagree with the bitmap. Name, type, date and price stay free: a sale
# copies the price into its ticket, so a new price applies to later sales only.
_FROZEN_ZONE_FIELDS = (
    ("rows", "rows"),
    ("columns", "columns"),
    ("capacity", "capacity"),
    ("rowCapacity", "row_capacity"),
)


def grid_changes(old: Catalog, new: Catalog, events: Iterable[str]) -> list[GridChange]:
    """What `new` changes in the grid of each of `events` as `old` has it: the event's venue
    and capacity, its venue's set of zones, and each zone's rows, columns and capacities."""
    changes: list[GridChange] = []
    for event_id in sorted(events):
        before = old.events.get(event_id)
        if before is None:
            continue
        after = new.events.get(event_id)
        if after is not None and after.venue_id != before.venue_id:
            changes.append(GridChange(event_id, "venueId", before.venue_id, after.venue_id))
            continue
        if after is not None and after.capacity != before.capacity:
            changes.append(GridChange(event_id, "capacity", before.capacity, after.capacity))
        # an event left out of the file stays in MySQL with its venue: that venue's zones
        # still hold its seats
        if before.venue_id not in new.venues:
            continue  # neither in the file: left as it is (loading never deletes)
        zones_before = old.venues[before.venue_id].zones
        zones_after = new.venues[before.venue_id].zones
        if zones_before.keys() != zones_after.keys():
            changes.append(GridChange(event_id, "zones", sorted(zones_before), sorted(zones_after)))
        for zone_id in sorted(zones_before.keys() & zones_after.keys()):
            for name, attr in _FROZEN_ZONE_FIELDS:
                was = getattr(zones_before[zone_id], attr)
                now = getattr(zones_after[zone_id], attr)
                if was != now:
                    changes.append(GridChange(event_id, f"zone {zone_id} {name}", was, now))
    return changes


def upsert(conn: Connection, catalog: Catalog) -> None:
    """Insert or update every venue, zone and event; the caller owns the transaction."""
    for venue in catalog.venues.values():
        stmt = insert(Venue).values(venue_id=venue.venue_id, name=venue.name)
        conn.execute(stmt.on_duplicate_key_update(name=stmt.inserted.name))
        for z in venue.zones.values():
            stmt = insert(Zone).values(
                venue_id=venue.venue_id,
                zone_id=z.zone_id,
                row_count=z.rows,
                column_count=z.columns,
                capacity=z.capacity,
                row_capacity=z.row_capacity,
                price=z.price,
            )
            conn.execute(
                stmt.on_duplicate_key_update(
                    {
                        c: stmt.inserted[c]
                        for c in ("row_count", "column_count", "capacity", "row_capacity", "price")
                    }
                )
            )
    for e in catalog.events.values():
        stmt = insert(Event).values(
            event_id=e.event_id,
            venue_id=e.venue_id,
            name=e.name,
            type=e.type,
            event_date=e.date.replace(tzinfo=None),
            capacity=e.capacity,
            sales_start=_naive(e.sales_start),
            sales_end=_naive(e.sales_end),
        )
        conn.execute(
            stmt.on_duplicate_key_update(
                {
                    c: stmt.inserted[c]
                    for c in (
                        "venue_id",
                        "name",
                        "type",
                        "event_date",
                        "capacity",
                        "sales_start",
                        "sales_end",
                    )
                }
            )
        )


def _naive(moment: datetime | None) -> datetime | None:
    """A UTC moment as MySQL's DATETIME holds it."""
    return None if moment is None else moment.astimezone(UTC).replace(tzinfo=None)


def mark_seat_state_created(conn: Connection, event_ids: list[str]) -> None:
    """Record that these events' seat state exists, or is about to be written (kept once set)."""
    if event_ids:
        conn.execute(
            update(Event)
            .where(Event.event_id.in_(event_ids), Event.seat_state_created_on.is_(None))
            .values(seat_state_created_on=func.now(6))
        )


def had_seat_state(conn: Connection, event_ids: list[str]) -> set[str]:
    """Those of `event_ids` that ever had seat state in Redis, or have a ticket."""
    if not event_ids:
        return set()
    marked = select(Event.event_id).where(
        Event.event_id.in_(event_ids), Event.seat_state_created_on.is_not(None)
    )
    sold = select(Ticket.event_id).where(Ticket.event_id.in_(event_ids)).distinct()
    return set(conn.scalars(marked)) | set(conn.scalars(sold))


def from_database(conn: Connection) -> Catalog:
    """The catalog as MySQL holds it (the source of truth once loaded)."""
    venues: dict[str, VenueSpec] = {}
    names: dict[str, str] = {v: n for v, n in conn.execute(select(Venue.venue_id, Venue.name))}
    zones: dict[str, dict[int, ZoneSpec]] = {venue_id: {} for venue_id in names}
    for z in conn.execute(select(Zone).order_by(Zone.venue_id, Zone.zone_id)):
        zones[z.venue_id][z.zone_id] = ZoneSpec(
            zone_id=z.zone_id,
            rows=z.row_count,
            columns=z.column_count,
            price=z.price,
            capacity=z.capacity,
            row_capacity=z.row_capacity,
        )
    for venue_id, name in names.items():
        venues[venue_id] = VenueSpec(venue_id, name, zones[venue_id])
    events = {
        e.event_id: EventSpec(
            event_id=e.event_id,
            venue_id=e.venue_id,
            name=e.name,
            type=e.type,
            date=e.event_date.replace(tzinfo=UTC),
            capacity=e.capacity,
            sales_start=e.sales_start and e.sales_start.replace(tzinfo=UTC),
            sales_end=e.sales_end and e.sales_end.replace(tzinfo=UTC),
        )
        for e in conn.execute(select(Event).order_by(Event.event_id))
    }
    return Catalog(venues, events)

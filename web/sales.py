"""What the purchase side's selling routes share (`POST /tickets`, the order routes): the catalog
copy and its lookups, the sales window, the Idempotency-Key header, and what a Redis failure
means for the answer.

Everything here answers from this process's catalog copy or the request alone: no Redis call
except the catalog's reread every CATALOG_CACHE_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis
from marshmallow import Schema, ValidationError

from models import seats
from models.catalog import Catalog, EventSpec, VenueSpec, ZoneSpec, row_index, row_label
from plumbing import settings
from web.problems import Problem, outcome_unknown, unavailable

log = logging.getLogger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}\Z")


def validated(schema: Schema, body: dict[str, Any]) -> dict[str, Any]:
    """The body loaded by `schema`, or 400 VALIDATION_FAILED naming each invalid field."""
    try:
        return schema.load(body)
    except ValidationError as exc:
        raise Problem(
            400, "VALIDATION_FAILED", "Some fields are invalid.", errors=exc.normalized_messages()
        ) from None


def idempotency_key(header: str | None) -> str | None:
    """The Idempotency-Key header, if sent: 1 to 255 visible ASCII characters."""
    if header is not None and not _IDEMPOTENCY_KEY.match(header):
        raise Problem(
            400,
            "VALIDATION_FAILED",
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            errors={"Idempotency-Key": ["1 to 255 visible ASCII characters."]},
        )
    return header


def venue_and_event(current: Catalog, venue_id: str, event_id: str) -> tuple[VenueSpec, EventSpec]:
    """The venue and the event held there: 404 UNKNOWN_VENUE/UNKNOWN_EVENT, 422
    EVENT_NOT_AT_VENUE."""
    venue = current.venues.get(venue_id)
    if venue is None:
        raise Problem(404, "UNKNOWN_VENUE", f"No venue {venue_id!r}.")
    event = current.events.get(event_id)
    if event is None:
        raise Problem(404, "UNKNOWN_EVENT", f"No event {event_id!r}.")
    if event.venue_id != venue.venue_id:
        raise Problem(
            422,
            "EVENT_NOT_AT_VENUE",
            f"{event.event_id} is held at {event.venue_id}, not {venue.venue_id}.",
        )
    return venue, event


def zone_of(venue: VenueSpec, zone_id: int) -> ZoneSpec:
    """The venue's zone, or 404 UNKNOWN_ZONE."""
    zone = venue.zones.get(zone_id)
    if zone is None:
        raise Problem(404, "UNKNOWN_ZONE", f"{venue.venue_id} has no zone {zone_id}.")
    return zone


def seat_in_range(zone: ZoneSpec, row: str, column: str) -> tuple[int, int]:
    """(row index, column) of a seat given as letters (upper case) and digits, or 422
    SEAT_OUT_OF_RANGE."""
    r_index, col = row_index(row), int(column)
    if r_index >= zone.rows or col > zone.columns:
        raise Problem(
            422,
            "SEAT_OUT_OF_RANGE",
            f"Zone {zone.zone_id} has rows A to {row_label(zone.rows - 1)} "
            f"and columns 1 to {zone.columns}.",
        )
    return r_index, col


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(req: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a validated body: an Idempotency-Key's repeat must carry
    the same one."""
    return sha256(json.dumps(req, sort_keys=True, separators=(",", ":")))


def check_sales_window(event: EventSpec, now: datetime | None = None) -> None:
    """409 SALE_NOT_OPEN before the event's `salesStart`, SALE_CLOSED from its `salesEnd` on,
    by this server's clock (an event without them is always on sale)."""
    now = now or datetime.now(UTC)
    if event.sales_start is not None and now < event.sales_start:
        raise Problem(
            409,
            "SALE_NOT_OPEN",
            f"Sales for {event.event_id} open at {_iso(event.sales_start)}.",
        )
    if event.sales_end is not None and now >= event.sales_end:
        raise Problem(
            409, "SALE_CLOSED", f"Sales for {event.event_id} closed at {_iso(event.sales_end)}."
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_after() -> int:
    """The Retry-After of a 503, in seconds."""
    return settings.get().retry_after_seconds


def rate_limited(event_id: str, wait_ms: int) -> Problem:
    """429 RATE_LIMITED with the seconds until the buyer's next attempt may pass."""
    return Problem(
        429,
        "RATE_LIMITED",
        f"Too many purchase attempts for {event_id}; try again later.",
        headers={"Retry-After": str(max(1, -(-wait_ms // 1000)))},
    )


def redis_failed(exc: redis.RedisError, what: str, unknown: str) -> Problem:
    """The answer to a Redis call that raised: 503 SERVICE_UNAVAILABLE when the call certainly
    never ran (nothing changed), else 503 OUTCOME_UNKNOWN with `unknown` as its detail (the
    script may have run: never undo anything)."""
    log.warning("%s: Redis error %s", what, exc)
    if seats.nothing_was_sent(exc):
        return unavailable("Seat state is unreachable; nothing was changed.", retry_after())
    return outcome_unknown(unknown, retry_after())


_catalog_lock = threading.Lock()
_catalog_cache: tuple[float, Catalog] | None = None


def catalog() -> Catalog:
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
            current = seats.read_catalog(seats.client())
        except redis.RedisError as exc:
            if cached is not None:  # keep selling from the last copy; Redis decides anyway
                return cached[1]
            log.warning("catalog unreadable: %s", exc)
            raise unavailable("The catalog is unreachable.", retry_after()) from None
        if current is None:
            raise unavailable("The catalog is not loaded yet.", retry_after())
        _catalog_cache = (time.monotonic() + settings.get().catalog_cache_seconds, current)
        return current


def forget_catalog() -> None:
    """Drop this process's cached catalog (after a reload, and in tests)."""
    global _catalog_cache
    _catalog_cache = None

"""Repairing the seat state in Redis from MySQL, the source of truth for sold tickets.

* `rebuild`: after Redis lost data (a flush, a restart without persistence, a failover that
  dropped writes). Each event is made unsellable first (purchases answer 503), then the queue
  must drain, so that tickets still in flight are in MySQL, then its state is written from the
  tickets table, the event counter last.
* `reconcile`: frees seats that Redis has as sold but that have no ticket in MySQL, no message
  in the DLQ, and no message that could still be in flight: a purchase process that died between
  the seat decision and the publish leaves exactly that.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import models
from messaging import dead_letters, queues
from models import catalog as catalog_model
from models import seats
from models.catalog import Catalog, row_index, row_label
from models.tickets import sold_seats
from plumbing import settings

log = logging.getLogger(__name__)


class QueueNotDrained(RuntimeError):
    """The ticket queue did not drain in time: in-flight tickets could be missed."""


def settle_seconds() -> float:
    """Longest a purchase can still be publishing after its seat decision (two attempts)."""
    s = settings.get()
    return 2 * (s.broker_connect_timeout + s.broker_read_timeout)


def rebuild(
    r: seats.Client,
    catalog: Catalog | None = None,
    *,
    events: list[str] | None = None,
    drain_timeout: float = 300,
    settle: float | None = None,
) -> dict[str, int]:
    """Rebuild the seat state of `events` (default: every event) from MySQL.

    Returns {event_id: seats sold}. Raises QueueNotDrained, leaving those events unsellable.
    """
    if catalog is None:
        with models.writer().connect() as conn:
            catalog = catalog_model.from_database(conn)
    chosen = events if events is not None else list(catalog.events)
    for event_id in chosen:
        seats.disable_event(r, event_id)
    time.sleep(settle_seconds() if settle is None else settle)
    if not queues.wait_for_drain(settings.get().queue_url, drain_timeout):
        raise QueueNotDrained(f"queue not drained within {drain_timeout:g}s; events stay closed")
    with models.writer().begin() as conn:  # before the state: see catalog load
        catalog_model.mark_seat_state_created(conn, chosen)
    sold: dict[str, int] = {}
    for event_id in chosen:
        event = catalog.events[event_id]
        with models.writer().connect() as conn:  # the writer: a reader may lag behind
            tickets = sold_seats(conn, event_id)
        sold[event_id] = seats.rebuild_event(
            r, event, catalog.venues[event.venue_id].zones, tickets
        )
        log.info("seat state of %s rebuilt: %d sold", event_id, sold[event_id])
    seats.publish_catalog(r, catalog)
    return sold


def _redis_sold(raw: seats.Client, event_id: str, zone: catalog_model.ZoneSpec) -> set[tuple]:
    data = raw.get(seats.zone_keys(event_id, zone.zone_id)[0]) or b""
    found = set()
    for byte_index, byte in enumerate(data):
        if not byte:
            continue
        for bit_in_byte in range(8):
            if byte & (0x80 >> bit_in_byte):
                bit = byte_index * 8 + bit_in_byte
                row, col = divmod(bit, zone.columns)
                if row < zone.rows:
                    found.add((row_label(row), col + 1))
    return found


def _raw_client() -> seats.Client:
    """Bytes replies (bitmaps are binary) and a patient timeout; a cluster client on a cluster,
    or a bitmap on another shard would answer MOVED."""
    s = settings.get()
    return seats.connect(
        s.redis_url,
        cluster=s.redis_cluster,
        timeout=max(5.0, s.redis_socket_timeout),
        decode_responses=False,
    )


@dataclass
class Reconciliation:
    """What a reconcile run found and did."""

    suspects: list[str] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    kept_dead_letter: list[str] = field(default_factory=list)
    skipped_reason: str | None = None


def _suspects(raw: seats.Client, catalog: Catalog) -> set[tuple[str, int, str, int]]:
    found = set()
    for event in catalog.events.values():
        if not seats.event_loaded(raw, event.event_id):
            continue
        with models.writer().connect() as conn:
            persisted = sold_seats(conn, event.event_id)
        for zone in catalog.venues[event.venue_id].zones.values():
            in_mysql = set(persisted.get(zone.zone_id, []))
            for row, column in _redis_sold(raw, event.event_id, zone) - in_mysql:
                found.add((event.event_id, zone.zone_id, row, column))
    return found


def reconcile(grace: float = 60, dry_run: bool = False) -> Reconciliation:
    """Free seats sold in Redis with no ticket in MySQL, none in the DLQ, and a queue that was
    empty throughout a grace period (so no message for them can still be in flight)."""
    report = Reconciliation()
    raw = _raw_client()
    with models.writer().connect() as conn:
        catalog = catalog_model.from_database(conn)
    first = _suspects(raw, catalog)
    report.suspects = [f"{e}/{z}/{r}{c}" for e, z, r, c in sorted(first)]
    if not first:
        return report
    queue_url = settings.get().queue_url
    if not queues.is_drained(queue_url):
        report.skipped_reason = "the ticket queue is not empty: tickets may be in flight"
        return report
    time.sleep(grace)
    if not queues.is_drained(queue_url):
        report.skipped_reason = "the ticket queue received messages during the grace period"
        return report
    in_dlq = {
        (t.get("eventId"), int(t.get("zoneId", 0)), str(t.get("row")), int(t.get("column", 0)))
        for t in (d.ticket for d in dead_letters.peek_dead_letters(limit=10_000))
        if t
    }
    still = first & _suspects(raw, catalog)
    scripts = seats.scripts_for(seats.client())
    for event_id, zone_id, row, column in sorted(still):
        name = f"{event_id}/{zone_id}/{row}{column}"
        if (event_id, zone_id, row, column) in in_dlq:
            report.kept_dead_letter.append(name)
            continue
        zone = catalog.venues[catalog.events[event_id].venue_id].zones[zone_id]
        if not dry_run and scripts.release(event_id, zone, row_index(row), column):
            log.warning(
                "reconcile: freed seat %s (sold in Redis, no ticket, nothing in flight)", name
            )
        report.freed.append(name)
    return report

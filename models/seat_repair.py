"""Repairing and checking the seat state in Redis against MySQL, the record of sold tickets.

* `rebuild`: after Redis lost data (a flush, a restart without persistence, a failover that
  dropped writes). Each event is made unsellable first (purchases answer 503); then every event
  of its sales still on its way must have landed in MySQL: no outbox entry of the event left in
  Redis (tickets, orders, refused late payments), none in a relay's hands
  (`relays_hold_nothing`), and the queue drained. Then its state is written from the tickets
  table (single seats and paid orders' seats) and the orders (each order's keys, HELD orders'
  seats held: `models.seats.order_state`), the event counter last.
* `reconcile`: a read-only report of disagreements between Redis (sold bits and owners), the
  outbox (events not yet relayed) and MySQL (tickets). It frees nothing: with the outbox, a sold
  seat without its event cannot exist, so a disagreement is a bug or a data loss to look at.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import models
from messaging import queues
from models import catalog as catalog_model
from models import seats
from models.catalog import Catalog, row_index, row_label
from models.orders import event_orders, refused_payments
from models.seats import keys, outbox
from models.tickets import seats_per_buyer, sold_seats
from plumbing import heartbeats, settings
from plumbing.waiting import until_steady

log = logging.getLogger(__name__)


class QueueNotDrained(RuntimeError):
    """Events of the sale were still on their way in time: in-flight tickets could be missed."""


def _seats_of_entry(fields: dict[str, str]) -> list[dict]:
    try:
        if fields.get(outbox.KIND) == outbox.KIND_ORDER:
            order = json.loads(fields[outbox.ORDER])
            return [{**seat, "eventId": order["eventId"]} for seat in order["seats"]]
        return [json.loads(fields[outbox.TICKET])]
    except (KeyError, TypeError, ValueError):
        return []  # not a seat's event: the relay parks it


def outbox_tickets(r: seats.Client, event_ids: set[str]) -> list[dict]:
    """The tickets of `event_ids` whose events are still in the outbox (not yet relayed): each
    `kind=ticket` entry's ticket, and each seat of a `kind=order` entry's order (the one-seat
    sale's and the box office's), as {ticketId, eventId, zoneId, row, column}."""
    found = []
    for bucket in sorted({keys.bucket(e) for e in event_ids}):
        for entry in outbox.waiting(r, bucket):
            for ticket in _seats_of_entry(entry.fields):
                if ticket.get("eventId") in event_ids:
                    found.append(ticket)
    return found


def _event_of(entry: outbox.Entry) -> str | None:
    """The event an outbox entry is about: a ticket's, an order's, a refused late payment's."""
    for name in (outbox.TICKET, "order", "payment"):
        if name in entry.fields:
            try:
                found = json.loads(entry.fields[name]).get("eventId")
            except (ValueError, AttributeError):
                return None  # unreadable: the relay parks it
            return found if isinstance(found, str) else None
    return None


def outbox_pending(r: seats.Client, event_ids: set[str]) -> int:
    """How many entries of `event_ids` (tickets, orders, late payments) wait in the outbox."""
    return sum(
        1
        for bucket in sorted({keys.bucket(e) for e in event_ids})
        for entry in outbox.waiting(r, bucket)
        if _event_of(entry) in event_ids
    )


def relays_emptied_hands_since(started: float) -> Callable[[], bool]:
    """A check: every live relay has reported, after `started`, that it holds no entry.

    An entry a relay read before Redis lost its data is only in that relay's memory: it will
    still be published, and its ticket must be in MySQL before the state is written from MySQL
    (else its seat would sell again). A relay reports what it holds with each heartbeat.
    """
    s = settings.get()

    def check() -> bool:
        relays = heartbeats.alive_relays(heartbeats.monitor_redis(), s.relay_alive_seconds)
        now = time.time()
        return all(r["held"] == 0 and now - r["ageSeconds"] >= started for r in relays.values())

    return check


def rebuild(
    r: seats.Client,
    catalog: Catalog | None = None,
    *,
    events: list[str] | None = None,
    drain_timeout: float = 300,
    relays_hold_nothing: Callable[[], bool] | None = None,
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
    # No new sale of these events can start now; the ones decided before are in the outbox,
    # in a relay's hands, or in the queue: wait for all three to be empty of them.
    outbox_empty = lambda: not outbox_pending(r, set(chosen))  # noqa: E731
    if not until_steady(outbox_empty, drain_timeout):
        raise QueueNotDrained(f"outbox not relayed within {drain_timeout:g}s; events stay closed")
    if relays_hold_nothing is None:
        relays_hold_nothing = relays_emptied_hands_since(time.time())
    if not until_steady(relays_hold_nothing, drain_timeout):
        raise QueueNotDrained(f"relays still hold entries after {drain_timeout:g}s")
    if not queues.wait_for_drain(settings.get().queue_url, drain_timeout):
        raise QueueNotDrained(f"queue not drained within {drain_timeout:g}s; events stay closed")
    with models.writer().begin() as conn:  # before the state: see catalog load
        catalog_model.mark_seat_state_created(conn, chosen)
    sold: dict[str, int] = {}
    for event_id in chosen:
        sold[event_id] = write_event(r, catalog, event_id)
        log.info("seat state of %s rebuilt: %d sold", event_id, sold[event_id])
    seats.publish_catalog(r, catalog)
    return sold


def write_event(r: seats.Client, catalog: Catalog, event_id: str) -> int:
    """Write one event's seat state from what MySQL holds now (tickets, orders, refused late
    payments); returns the seats taken. No wait: `rebuild` first makes sure that nothing of the
    event is still on its way to MySQL."""
    event = catalog.events[event_id]
    with models.writer().connect() as conn:  # the writer: a reader may lag behind
        tickets = sold_seats(conn, event_id)
        buyers = seats_per_buyer(conn, event_id)
        orders = [o.to_json() for o in event_orders(conn, event_id)]
        rejected = refused_payments(conn, event_id)
    return seats.rebuild_event(
        r, event, catalog.venues[event.venue_id].zones, tickets, buyers, orders, rejected
    )


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
    """Disagreements between Redis, the outbox and MySQL, seat by seat (event/zone/seat)."""

    sold_without_ticket: list[str] = field(default_factory=list)
    in_outbox: list[str] = field(default_factory=list)
    ticket_on_free_seat: list[str] = field(default_factory=list)
    owner_mismatch: list[str] = field(default_factory=list)

    @property
    def disagreements(self) -> int:
        """Seats that disagree (entries still in the outbox are on their way: not counted)."""
        return (
            len(self.sold_without_ticket) + len(self.ticket_on_free_seat) + len(self.owner_mismatch)
        )


def reconcile(catalog: Catalog | None = None) -> Reconciliation:
    """Compare every loaded event's seats in Redis with its tickets in MySQL; change nothing."""
    report = Reconciliation()
    raw = _raw_client()
    if catalog is None:
        with models.writer().connect() as conn:
            catalog = catalog_model.from_database(conn)
    for event in catalog.events.values():
        event_id = event.event_id
        if not seats.event_loaded(raw, event_id):
            continue
        pending = {
            (int(t["zoneId"]), str(t["row"]), int(t["column"])): t.get("ticketId")
            for t in outbox_tickets(raw, {event_id})
        }
        with models.writer().connect() as conn:
            persisted = sold_seats(conn, event_id)
        for zone in catalog.venues[event.venue_id].zones.values():
            in_mysql = {(row, col): tid for row, col, tid in persisted.get(zone.zone_id, [])}
            in_redis = _redis_sold(raw, event_id, zone)
            owners = {
                int(bit): tid.decode()
                for bit, tid in raw.hgetall(keys.owners_key(event_id, zone.zone_id)).items()
            }
            for row, col in sorted(in_redis):
                name = f"{event_id}/{zone.zone_id}/{row}{col}"
                owner = owners.get(seats.seat_bit(zone, row_index(row), col))
                if (row, col) in in_mysql:
                    if owner is not None and owner != in_mysql[(row, col)]:
                        report.owner_mismatch.append(name)
                elif (zone.zone_id, row, col) in pending:
                    report.in_outbox.append(name)
                else:
                    report.sold_without_ticket.append(name)
            for row, col in sorted(set(in_mysql) - in_redis):
                report.ticket_on_free_seat.append(f"{event_id}/{zone.zone_id}/{row}{col}")
    return report

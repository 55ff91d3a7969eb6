"""`flask --app web catalog load`: venues, zones and events into MySQL, then the seat state."""

from __future__ import annotations

from pathlib import Path

import click
from marshmallow import ValidationError

import models
from models import catalog as catalog_model
from models import seats
from models.catalog import (
    Catalog,
    EventSpec,
    GridChange,
    grid_changes,
    had_seat_state,
    mark_seat_state_created,
    upsert,
)
from plumbing import settings


@click.group("catalog")
def catalog_group() -> None:
    """Venues, zones and events."""


class EventsNeedRebuild(click.ClickException):
    """Events lost their seat state: only `seats rebuild` (which waits for the queue) may restore
    it. A distinct exit status, so that scripts can tell it from a bad catalog file."""

    exit_code = 3


@catalog_group.command("load")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Catalog data file (default: CATALOG_FILE).",
)
def load_command(path: Path | None) -> None:
    """Load the catalog into MySQL, then initialise Redis; never un-sells a seat.

    Needs MySQL and Redis only, no SQS: an event that never had seat state has nothing in
    flight, so it starts empty at once. An event whose seat state Redis lost is left unsellable
    and named: `seats rebuild` restores it once the ticket queue has drained.
    """
    path = path or settings.get().catalog_file
    try:
        catalog = Catalog.from_file(path)
    except ValidationError as exc:
        raise click.ClickException(f"{path}: {exc.normalized_messages()}") from None
    r = seats.client()
    changes = _frozen_grid_changes(r, catalog)
    if changes:  # checked before writing anything: neither MySQL nor Redis is half-updated
        listed = "\n".join(f"  {change}" for change in changes)
        raise click.ClickException(
            f"{path}: refused, nothing was written. These events have seat state, and their "
            f"seat grid is frozen:\n{listed}"
        )
    with models.writer().begin() as conn:
        upsert(conn, catalog)
    missing = [e for e in catalog.events if not seats.event_loaded(r, e)]
    with models.writer().begin() as conn:
        mark_seat_state_created(conn, [e for e in catalog.events if e not in missing])
        lost = had_seat_state(conn, missing)
        new = [e for e in missing if e not in lost]
        # recorded before the state is written: a crash in between leaves an event that is
        # rebuilt (from no tickets) rather than one that could later be taken for new
        mark_seat_state_created(conn, new)
    for event_id in new:
        event = catalog.events[event_id]
        seats.rebuild_event(r, event, catalog.venues[event.venue_id].zones, {})
    seats.load_catalog(r, catalog)
    zones = sum(len(catalog.venues[e.venue_id].zones) for e in catalog.events.values())
    click.echo(
        f"catalog loaded from {path}: {len(catalog.venues)} venues, "
        f"{len(catalog.events)} events ({len(new)} new), {zones} event zones"
    )
    if lost:
        names = sorted(lost)
        raise EventsNeedRebuild(
            f"{len(names)} events had seat state that Redis no longer has: {', '.join(names)}. "
            "They stay unsellable (purchases answer 503) until rebuilt from MySQL, once the "
            "tickets still in flight are persisted: run "
            f"`flask --app web seats rebuild {' '.join('--event ' + e for e in names)}` "
            "(on AWS in the ops task: ops/scripts/ops-task.sh)."
        )


def _frozen_grid_changes(r: seats.Client, catalog: Catalog) -> list[GridChange]:
    """The grid changes `catalog` would make to events that have seat state.

    An event has seat state when Redis holds any of its seat keys, or MySQL records that its
    state was created or holds one of its tickets (`had_seat_state`): a Redis that lost its
    data is rebuilt from those tickets, at their row and column, and tickets may still be in
    flight, so they pin the grid as much as the bitmap does. The grid is compared with both the
    catalog in MySQL and the copy the purchase API sells from (they differ if a load stopped
    between the two), so neither can change under sold seats.
    """
    with models.writer().connect() as conn:
        current = [catalog_model.from_database(conn)]
        published = seats.read_catalog(r)
        if published is not None:
            current.append(published)
        recorded = had_seat_state(conn, sorted({e for c in current for e in c.events}))
    changes: list[GridChange] = []
    for old in current:
        live = {
            e.event_id
            for e in old.events.values()
            if e.event_id in recorded
            or seats.has_seat_state(r, e.event_id, _zone_ids(e, old, catalog))
        }
        changes += [c for c in grid_changes(old, catalog, live) if c not in changes]
    return changes


def _zone_ids(event: EventSpec, old: Catalog, new: Catalog) -> set[int]:
    """The zones an event's seat keys may exist for: its venue's, before and after."""
    zone_ids = set(old.venues[event.venue_id].zones)
    if event.event_id in new.events:
        zone_ids |= set(new.venues[new.events[event.event_id].venue_id].zones)
    return zone_ids

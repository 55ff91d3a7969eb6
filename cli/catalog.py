"""`flask --app web catalog load`: venues, zones and events into MySQL, then the seat state."""

from __future__ import annotations

from pathlib import Path

import click
from marshmallow import ValidationError

import models
from models import seats
from models.catalog import Catalog, had_seat_state, mark_seat_state_created, upsert
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
    with models.writer().begin() as conn:
        upsert(conn, catalog)
    r = seats.client()
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

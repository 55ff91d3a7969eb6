"""`flask --app web catalog load`: venues, zones and events into MySQL, then the seat state."""

from __future__ import annotations

from pathlib import Path

import click
from marshmallow import ValidationError

import models
from cli.seats import rebuild
from models import seats
from models.catalog import Catalog, upsert
from plumbing import settings


@click.group("catalog")
def catalog_group() -> None:
    """Venues, zones and events."""


@catalog_group.command("load")
@click.option(
    "--file",
    "path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Catalog data file (default: CATALOG_FILE).",
)
def load_command(path: Path | None) -> None:
    """Load the catalog into MySQL, then initialise Redis; never un-sells a seat."""
    path = path or settings.get().catalog_file
    try:
        catalog = Catalog.from_file(path)
    except ValidationError as exc:
        raise click.ClickException(f"{path}: {exc.normalized_messages()}") from None
    with models.writer().begin() as conn:
        upsert(conn, catalog)
    r = seats.client()
    seats.load_catalog(r, catalog)
    missing = [e for e in catalog.events if not seats.event_loaded(r, e)]
    if missing:  # new events, or Redis lost them: built from MySQL, never as empty
        click.echo(f"building seat state from MySQL for {len(missing)} events")
        rebuild(catalog, missing, settle=0 if _fresh(catalog, missing) else None)
    zones = sum(len(catalog.venues[e.venue_id].zones) for e in catalog.events.values())
    click.echo(
        f"catalog loaded from {path}: {len(catalog.venues)} venues, "
        f"{len(catalog.events)} events, {zones} event zones"
    )


def _fresh(catalog: Catalog, events: list[str]) -> bool:
    """No ticket of these events exists yet: nothing can be in flight for them either,
    unless Redis was lost mid-sale, which the queue check in `rebuild` still covers."""
    from models.tickets import count_tickets

    with models.writer().connect() as conn:
        return all(count_tickets(conn, e) == 0 for e in events)

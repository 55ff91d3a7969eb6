"""Flask CLI commands: `flask --app web catalog load`."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from marshmallow import ValidationError

import models
import settings
from models.catalog import Catalog, upsert
from web import seats


def register_commands(app: Flask) -> None:
    """Add the `catalog` command group."""
    app.cli.add_command(catalog_group)


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
    seats.load_catalog(seats.client(), catalog)
    zones = sum(len(catalog.venues[e.venue_id].zones) for e in catalog.events.values())
    click.echo(
        f"catalog loaded from {path}: {len(catalog.venues)} venues, "
        f"{len(catalog.events)} events, {zones} event zones"
    )

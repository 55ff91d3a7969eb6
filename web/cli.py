"""Flask CLI commands (`flask --app web …`): catalog load; seats rebuild and reconcile; dlq
list and redrive."""

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
    """Add the `catalog`, `seats` and `dlq` command groups."""
    app.cli.add_command(catalog_group)
    app.cli.add_command(seats_group)
    app.cli.add_command(dlq_group)


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
        _rebuild(catalog, missing, settle=0 if _fresh(catalog, missing) else None)
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


def _rebuild(
    catalog: Catalog | None,
    events: list[str] | None,
    settle: float | None = None,
    drain_timeout: float = 300,
) -> dict[str, int]:
    from web import seat_repair

    try:
        return seat_repair.rebuild(
            seats.client(), catalog, events=events, settle=settle, drain_timeout=drain_timeout
        )
    except seat_repair.QueueNotDrained as exc:
        raise click.ClickException(str(exc)) from None


@click.group("seats")
def seats_group() -> None:
    """Seat state in Redis."""


@seats_group.command("rebuild")
@click.option("--event", "events", multiple=True, help="Only these events (repeatable).")
@click.option(
    "--drain-timeout",
    default=300.0,
    show_default=True,
    help="Seconds to wait for the ticket queue to drain.",
)
def rebuild_command(events: tuple[str, ...], drain_timeout: float) -> None:
    """Rebuild seat state from MySQL after Redis lost data; sales pause meanwhile (503)."""
    sold = _rebuild(None, list(events) or None, drain_timeout=drain_timeout)
    for event_id, n in sold.items():
        click.echo(f"{event_id}: {n} seats sold")


@seats_group.command("reconcile")
@click.option(
    "--grace",
    default=60.0,
    show_default=True,
    help="Seconds the queue must stay empty before a seat is freed.",
)
@click.option("--dry-run", is_flag=True, help="Report, free nothing.")
def reconcile_command(grace: float, dry_run: bool) -> None:
    """Free seats sold in Redis that have no ticket and nothing in flight; report them."""
    from web import seat_repair

    report = seat_repair.reconcile(grace=grace, dry_run=dry_run)
    click.echo(f"suspects (sold in Redis, no ticket): {len(report.suspects)}")
    if report.skipped_reason:
        click.echo(f"nothing freed: {report.skipped_reason}")
    for name in report.kept_dead_letter:
        click.echo(f"kept {name}: its ticket is in the DLQ (redrive it)")
    for name in report.freed:
        click.echo(f"{'would free' if dry_run else 'freed'} {name}")


@click.group("dlq")
def dlq_group() -> None:
    """The dead-letter queue."""


@dlq_group.command("list")
@click.option("--limit", default=100, show_default=True)
def dlq_list_command(limit: int) -> None:
    """List dead-lettered messages (they stay in the DLQ)."""
    from tasks import queues

    letters = queues.peek_dead_letters(limit)
    for letter in letters:
        click.echo(letter.summary())
    click.echo(f"{len(letters)} messages")


@dlq_group.command("redrive")
@click.option("--limit", default=1000, show_default=True)
def dlq_redrive_command(limit: int) -> None:
    """Move dead-lettered messages back to the ticket queue."""
    from tasks import queues

    method, moved = queues.redrive(limit)
    click.echo(f"redrive ({method}): {moved} messages")

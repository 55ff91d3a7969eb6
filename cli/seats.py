"""`flask --app web seats rebuild|reconcile`: repair the seat state in Redis from MySQL."""

from __future__ import annotations

import click

from models import seat_repair, seats
from models.catalog import Catalog


def rebuild(
    catalog: Catalog | None,
    events: list[str] | None,
    settle: float | None = None,
    drain_timeout: float = 300,
) -> dict[str, int]:
    """`seat_repair.rebuild` for a command: a queue that does not drain is a clean CLI error."""
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
    sold = rebuild(None, list(events) or None, drain_timeout=drain_timeout)
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
    report = seat_repair.reconcile(grace=grace, dry_run=dry_run)
    click.echo(f"suspects (sold in Redis, no ticket): {len(report.suspects)}")
    if report.skipped_reason:
        click.echo(f"nothing freed: {report.skipped_reason}")
    for name in report.kept_dead_letter:
        click.echo(f"kept {name}: its ticket is in the DLQ (redrive it)")
    for name in report.freed:
        click.echo(f"{'would free' if dry_run else 'freed'} {name}")

"""`flask --app web seats rebuild|reconcile`: rebuild the seat state in Redis from MySQL, or
report where Redis, the outbox and MySQL disagree."""

from __future__ import annotations

import click

from messaging import queues
from models import seat_repair, seats
from models.catalog import Catalog
from plumbing import settings


def rebuild(
    catalog: Catalog | None, events: list[str] | None, drain_timeout: float = 300
) -> dict[str, int]:
    """`seat_repair.rebuild` for a command: events still on their way are a clean CLI error."""
    try:
        return seat_repair.rebuild(
            seats.client(), catalog, events=events, drain_timeout=drain_timeout
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
    help="Seconds to wait for the outbox, the relays and the ticket queue to drain.",
)
def rebuild_command(events: tuple[str, ...], drain_timeout: float) -> None:
    """Rebuild seat state from MySQL after Redis lost data; sales pause meanwhile (503)."""
    sold = rebuild(None, list(events) or None, drain_timeout=drain_timeout)
    for event_id, n in sold.items():
        click.echo(f"{event_id}: {n} seats sold")
    dead = sum(queues.depths(settings.get().dead_letter_queue_url).values())
    if dead:
        click.echo(
            f"warning: the dead-letter queue holds {dead} messages: the rebuilt state lacks any "
            "of these events' among them (MySQL never applied it); see `dlq list` and "
            "docs/operations.md",
            err=True,
        )


@seats_group.command("reconcile")
def reconcile_command() -> None:
    """Report seats where Redis, the outbox and MySQL disagree; change nothing. Exit 1 if any."""
    report = seat_repair.reconcile()
    sections = (
        ("sold in Redis, no ticket, no outbox entry", report.sold_without_ticket),
        ("ticket in MySQL, seat free in Redis", report.ticket_on_free_seat),
        ("owner in Redis is not the ticket in MySQL", report.owner_mismatch),
        ("sold, event still in the outbox (on its way)", report.in_outbox),
    )
    for title, names in sections:
        click.echo(f"{title}: {len(names)}")
        for name in names:
            click.echo(f"  {name}")
    if report.disagreements:
        raise SystemExit(1)

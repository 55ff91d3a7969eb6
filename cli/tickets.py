"""`flask --app web tickets recount`: the per-event totals recomputed from the tickets."""

from __future__ import annotations

import click
from sqlalchemy import select

import models
from models import totals
from models.tables import Event


@click.group("tickets")
def tickets_group() -> None:
    """The ticket projection in MySQL."""


@tickets_group.command("recount")
@click.option("--event", "events", multiple=True, help="Only these events (repeatable).")
def recount_command(events: tuple[str, ...]) -> None:
    """Recompute the per-event totals (count, revenue) from the tickets; safe while the worker
    writes."""
    with models.writer().connect() as conn:
        chosen = list(events) or list(conn.scalars(select(Event.event_id).order_by(Event.event_id)))
        conn.rollback()
        for event_id in chosen:
            found = totals.recount(conn, event_id)
            if found is None:
                raise click.ClickException(f"no event {event_id!r}")
            click.echo(f"{event_id}: {found.tickets} tickets, {found.revenue:.2f}")

"""`flask --app web dlq list|redrive`: the dead-letter queue."""

from __future__ import annotations

import click

from messaging import dead_letters


@click.group("dlq")
def dlq_group() -> None:
    """The dead-letter queue."""


@dlq_group.command("list")
@click.option("--limit", default=100, show_default=True)
def dlq_list_command(limit: int) -> None:
    """List dead-lettered messages (they stay in the DLQ)."""
    letters = dead_letters.peek_dead_letters(limit)
    for letter in letters:
        click.echo(letter.summary())
    click.echo(f"{len(letters)} messages")


@dlq_group.command("redrive")
@click.option("--limit", default=1000, show_default=True)
def dlq_redrive_command(limit: int) -> None:
    """Move dead-lettered messages back to the ticket queue."""
    method, moved = dead_letters.redrive(limit)
    click.echo(f"redrive ({method}): {moved} messages")

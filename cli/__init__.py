"""Operator commands, run as `flask --app web <group> <command>` with the services' environment:
`catalog load`; `seats rebuild` and `seats reconcile`; `dlq list` and `dlq redrive`; `tickets
recount`; `database users`; `token buyer|operator NAME` (development tokens); `pay ORDER_ID`
(the development test payment provider)."""

from __future__ import annotations

from flask import Flask


def register_commands(app: Flask) -> None:
    """Add the `catalog`, `seats`, `dlq`, `tickets`, `database` and `token` command groups and
    the `pay` command."""
    from cli.catalog import catalog_group
    from cli.database import database_group
    from cli.dlq import dlq_group
    from cli.payments import pay_command
    from cli.seats import seats_group
    from cli.tickets import tickets_group
    from cli.tokens import token_group

    app.cli.add_command(catalog_group)
    app.cli.add_command(seats_group)
    app.cli.add_command(dlq_group)
    app.cli.add_command(tickets_group)
    app.cli.add_command(database_group)
    app.cli.add_command(token_group)
    app.cli.add_command(pay_command)

"""The relay against real Redis, moto's SNS, the real worker and MariaDB: outbox entries become
the stock Celery messages, in full PublishBatch calls, deleted only once SNS took them."""

from __future__ import annotations

import uuid

import models
from models.tickets import SCHEMA_VERSION
from tests.support.factories import ticket_message
from tests.support.outbox import add_ticket, stream_lengths
from tests.support.processes import wait_until


def persisted(ticket_ids: list[str]) -> int:
    from sqlalchemy import bindparam, text

    query = text("SELECT COUNT(*) FROM ticket WHERE ticket_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    with models.writer().connect() as conn:
        return conn.execute(query, {"ids": ticket_ids}).scalar_one()


def fresh_tickets(count: int, **changes) -> list[dict]:
    event = "Event1"
    return [
        ticket_message(
            ticketId=str(uuid.uuid4()),
            eventId=event,
            row="ABCDEFGH"[n // 40],
            column=str(n % 40 + 1),
            schemaVersion=SCHEMA_VERSION,
            **changes,
        )
        for n in range(count)
    ]


def test_outbox_entries_reach_mysql_through_the_real_worker(
    redis_client, clean_tickets, pipeline_worker, pipeline_relay
):
    tickets = fresh_tickets(5)
    for t in tickets:
        add_ticket(redis_client, t, request_id="rid-1")
    ids = [t["ticketId"] for t in tickets]
    wait_until(lambda: persisted(ids) == len(ids), 60, "the tickets in MySQL")
    wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")

"""`flask --app web catalog load` on a Redis that lost its state: the seat state is built from
MySQL's tickets, never initialised as empty (which would sell every seat again)."""

from __future__ import annotations

import os
import subprocess
import uuid

from aws_resources import create_messaging

import models
from models import seats
from models.catalog import Catalog
from models.tickets import TicketRecord, persist_ticket
from tests.conftest import TEST_CATALOG
from tests.support.factories import ticket_message
from tests.support.processes import BIN, ROOT


def test_catalog_load_rebuilds_lost_events_from_mysql(redis_client, clean_tickets):
    with models.writer().begin() as conn:
        persist_ticket(conn, TicketRecord.from_json(ticket_message(row="B", column="3")))
    redis_client.flushdb()  # Redis lost everything; MySQL has the ticket
    messaging = create_messaging(f"c{uuid.uuid4().hex[:8]}")  # an empty queue: nothing in flight
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "web", "catalog", "load"],
        cwd=ROOT,
        env={**os.environ, **messaging.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "building seat state from MySQL" in done.stdout
    catalog = Catalog.from_dict(TEST_CATALOG)
    zone = catalog.venues["Venue1"].zones[1]
    scripts = seats.scripts_for(redis_client)
    assert scripts.purchase("Event1", zone, 1, 3) == "SEAT_TAKEN"
    _, left, event = seats.zone_keys("Event1", 1)
    assert redis_client.hget(left, "zone") == str(zone.capacity - 1)
    assert redis_client.hget(left, "B") == str(zone.row_capacity - 1)
    assert redis_client.hget(event, "sold") == "1"
    assert scripts.purchase("Event1", zone, 1, 4) == "OK"
    assert seats.read_catalog(redis_client) == catalog


def test_catalog_load_refuses_while_tickets_may_be_in_flight(
    redis_client, clean_tickets, session_settings
):
    """The session queue holds published tickets nobody consumed: loading must not guess."""
    import boto3

    boto3.client("sqs").send_message(QueueUrl=session_settings.queue_url, MessageBody="x")
    with models.writer().begin() as conn:
        persist_ticket(conn, TicketRecord.from_json(ticket_message(row="C", column="3")))
    redis_client.flushdb()
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "web", "seats", "rebuild", "--drain-timeout", "2"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "queue not drained" in done.stderr
    assert not seats.event_loaded(redis_client, "Event1")  # still closed: purchases answer 503

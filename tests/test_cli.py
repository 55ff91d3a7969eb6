"""`flask --app web catalog load` and `seats rebuild`: an event that never had seat state starts
empty without asking SQS anything; one whose state Redis lost is refused by catalog load and
rebuilt from MySQL's tickets by `seats rebuild`, never initialised as empty (which would sell
every seat again)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from aws_resources import create_messaging
from sqlalchemy import select, text

import models
from models import seats
from models.catalog import Catalog
from models.tickets import TicketRecord, persist_ticket
from tests.conftest import TEST_CATALOG
from tests.support.factories import sell, ticket_message
from tests.support.processes import BIN, ROOT, free_port

CATALOG = Catalog.from_dict(TEST_CATALOG)


def flask(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`flask --app web …` as an operator runs it, with `env` over this process's environment."""
    return subprocess.run(
        [str(BIN / "flask"), "--app", "web", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def no_sqs() -> dict[str, str]:
    """An environment whose SQS endpoint refuses every connection."""
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}


@pytest.fixture
def never_loaded(database, clean_tickets, redis_client) -> None:
    """Events as a first deploy finds them: in MySQL, never given seat state, nothing sold."""
    with models.writer().begin() as conn:
        conn.execute(text("UPDATE event SET seat_state_created_on = NULL"))


def test_catalog_load_starts_never_sold_events_empty_without_sqs(never_loaded, redis_client):
    done = flask("catalog", "load", env=no_sqs())
    assert done.returncode == 0, done.stderr
    assert f"{len(CATALOG.events)} events ({len(CATALOG.events)} new)" in done.stdout
    zone = CATALOG.venues["Venue1"].zones[1]
    assert sell(seats.scripts_for(redis_client), "Event1", zone, 1, 3) == "OK"
    assert seats.read_catalog(redis_client) == CATALOG
    with models.writer().connect() as conn:
        unmarked = conn.scalar(
            text("SELECT COUNT(*) FROM event WHERE seat_state_created_on IS NULL")
        )
    assert unmarked == 0
    again = flask("catalog", "load", env=no_sqs())  # a reload keeps the sale
    assert again.returncode == 0, again.stderr
    assert "(0 new)" in again.stdout
    assert sell(seats.scripts_for(redis_client), "Event1", zone, 1, 3) == "SEAT_TAKEN"


def test_catalog_load_refuses_an_event_whose_state_redis_lost(never_loaded, redis_client):
    """Even with no ticket in MySQL yet (all still in flight): it had seat state, so it is lost,
    not new. catalog load names it, leaves it unsellable and points at `seats rebuild`."""
    assert flask("catalog", "load", env=no_sqs()).returncode == 0
    redis_client.flushdb()  # Redis lost everything; the sold tickets are still in the queue
    done = flask("catalog", "load", env=no_sqs())
    assert done.returncode == 3, done.stderr
    assert "had seat state that Redis no longer has: Event1" in done.stderr
    assert "flask --app web seats rebuild --event Event1 --event" in done.stderr
    assert "Traceback" not in done.stderr
    for event_id in CATALOG.events:
        assert not seats.event_loaded(redis_client, event_id), event_id  # purchases answer 503
    assert seats.read_catalog(redis_client) == CATALOG


def test_catalog_load_refuses_an_unmarked_event_that_has_tickets(never_loaded, redis_client):
    """Tickets in MySQL mean it was sold, whatever the marker says (a store from before it)."""
    with models.writer().begin() as conn:
        persist_ticket(conn, TicketRecord.from_json(ticket_message(row="B", column="3")))
    done = flask("catalog", "load", env=no_sqs())
    assert done.returncode == 3, done.stderr
    assert "no longer has: Event1." in done.stderr
    assert not seats.event_loaded(redis_client, "Event1")
    assert seats.event_loaded(redis_client, "Event2")  # never sold: started empty


def test_seats_rebuild_restores_a_lost_event_from_mysql(redis_client, clean_tickets):
    with models.writer().begin() as conn:
        persist_ticket(conn, TicketRecord.from_json(ticket_message(row="B", column="3")))
    redis_client.flushdb()  # Redis lost everything; MySQL has the ticket
    messaging = create_messaging(f"c{uuid.uuid4().hex[:8]}")  # an empty queue: nothing in flight
    assert flask("catalog", "load", env=messaging.env()).returncode == 3
    done = flask("seats", "rebuild", "--event", "Event1", env=messaging.env())
    assert done.returncode == 0, done.stderr
    assert "Event1: 1 seats sold" in done.stdout
    zone = CATALOG.venues["Venue1"].zones[1]
    scripts = seats.scripts_for(redis_client)
    assert sell(scripts, "Event1", zone, 1, 3) == "SEAT_TAKEN"
    _, left, event = seats.zone_keys("Event1", 1)
    assert redis_client.hget(left, "zone") == str(zone.capacity - 1)
    assert redis_client.hget(left, "B") == str(zone.row_capacity - 1)
    assert redis_client.hget(event, "sold") == "1"
    assert sell(scripts, "Event1", zone, 1, 4) == "OK"
    assert seats.read_catalog(redis_client) == CATALOG


def test_seats_rebuild_warns_of_dead_letters(redis_client, clean_tickets):
    """A dead-lettered event never reached MySQL, so the rebuilt state lacks it: the rebuild
    says so (the runbook has the dead letters looked at before a rebuild)."""
    import boto3

    messaging = create_messaging(f"c{uuid.uuid4().hex[:8]}")
    done = flask("seats", "rebuild", "--event", "Event1", env=messaging.env())
    assert done.returncode == 0, done.stderr
    assert "dead-letter" not in done.stderr
    boto3.client("sqs").send_message(QueueUrl=messaging.dead_letter_queue_url, MessageBody="x")
    done = flask("seats", "rebuild", "--event", "Event1", env=messaging.env())
    assert done.returncode == 0, done.stderr
    assert "warning: the dead-letter queue holds 1 messages" in done.stderr


def test_the_cli_needs_no_monitoring_plane(never_loaded):
    """The release and ops tasks run with REDIS_CLUSTER=true and no MONITOR_BROKER_URL; the
    app the commands build must not insist on it (a serving events process still does)."""
    env = {**os.environ, "REDIS_CLUSTER": "true"}
    env.pop("MONITOR_BROKER_URL")
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "web", "dlq", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    served = subprocess.run(
        [str(BIN / "python"), "-c", "import web; web.create_app('events')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode != 0
    assert "MONITOR_BROKER_URL must be set" in served.stderr


def test_catalog_load_refuses_while_tickets_may_be_in_flight(redis_client, clean_tickets):
    """The queue holds a message nobody consumed: loading must not guess. A queue of its own:
    in the session queue, the session worker would meet that message for minutes (it is no
    task: redelivered until the DLQ), and later tests wait for that queue to be idle."""
    import boto3

    messaging = create_messaging(f"c{uuid.uuid4().hex[:8]}")
    boto3.client("sqs").send_message(QueueUrl=messaging.queue_url, MessageBody="x")
    with models.writer().begin() as conn:
        persist_ticket(conn, TicketRecord.from_json(ticket_message(row="C", column="3")))
    redis_client.flushdb()
    done = flask("seats", "rebuild", "--drain-timeout", "2", env=messaging.env())
    assert done.returncode != 0
    assert "queue not drained" in done.stderr
    assert not seats.event_loaded(redis_client, "Event1")  # still closed: purchases answer 503


def test_token_commands_mint_what_the_services_accept(app, clean_tickets):
    """`token buyer NAME` and `token operator NAME`: a buyer is refused the back office, the
    operator is not; a plain shell (no JWT_* set) mints for `make run`'s development values."""
    buyer = flask("token", "buyer", "alice", env={"JWT_SECRET": "", "JWT_ISSUER": ""})
    ops = flask("token", "operator", "ops")
    assert buyer.returncode == 0 and ops.returncode == 0, buyer.stderr + ops.stderr
    client = app.test_client()
    back_office = "/query/api/v1/tickets"
    as_buyer = {"Authorization": f"Bearer {buyer.stdout.strip()}"}
    assert client.get(back_office, headers=as_buyer).status_code == 403
    as_operator = {"Authorization": f"Bearer {ops.stdout.strip()}"}
    assert client.get(back_office, headers=as_operator).status_code == 200


def test_tokens_are_not_minted_outside_development(monkeypatch):
    import dataclasses

    import click

    from cli.tokens import development_token
    from plumbing import settings

    production = dataclasses.replace(settings.get(), app_env="production")
    monkeypatch.setattr(settings, "get", lambda: production)
    with pytest.raises(click.ClickException, match="only with APP_ENV=development"):
        development_token("alice")


def test_seats_rebuild_restores_a_one_seat_sale_whose_ticket_names_its_order(
    no_session_relay, clean_tickets, loaded_seats
):
    """A one-seat sale reaches MySQL as its PAID order's ticket (with an order id): `seats
    rebuild` waits while the order's event is still in the outbox (its seat would sell twice),
    then restores the seat, its owner and the buyer's count from that ticket."""
    from models import seat_repair
    from models.orders import OrderSnapshot, apply_order
    from models.seats import keys
    from models.tables import Ticket

    zone = CATALOG.venues["Venue1"].zones[1]
    scripts = seats.scripts_for(loaded_seats)
    ticket = ticket_message(row="C", column="5")
    sale = scripts.purchase(
        "Event1", zone, 2, 5, ticket=ticket, buyer="buyer-r", limits=seats.Limits(10**6, 10**6)
    )
    assert sale.outcome == "OK"
    [entry] = seat_repair.outbox_tickets(loaded_seats, {"Event1"})
    assert (entry["ticketId"], entry["row"], entry["column"]) == (ticket["ticketId"], "C", "5")
    with pytest.raises(seat_repair.QueueNotDrained, match="outbox not relayed"):
        seat_repair.rebuild(
            loaded_seats,
            CATALOG,
            events=["Event1"],
            drain_timeout=1,
            relays_hold_nothing=lambda: True,
        )
    [(entry_id, fields)] = loaded_seats.xrange(keys.outbox_stream(keys.bucket("Event1")))
    with models.writer().begin() as conn:  # the worker applies it; the relay deleted it
        apply_order(conn, OrderSnapshot.from_json(json.loads(fields["order"])))
    loaded_seats.xdel(keys.outbox_stream(keys.bucket("Event1")), entry_id)
    with models.reader().connect() as conn:
        row = conn.execute(select(Ticket.order_id, Ticket.buyer)).one()
    assert tuple(row) == (sale.order_id, "buyer-r")
    loaded_seats.flushdb()  # Redis lost everything; MySQL has the order and its ticket
    messaging = create_messaging(f"c{uuid.uuid4().hex[:8]}")  # an empty queue: nothing in flight
    done = flask("seats", "rebuild", "--event", "Event1", env=messaging.env())
    assert done.returncode == 0, done.stderr
    assert "Event1: 1 seats sold" in done.stdout
    assert sell(scripts, "Event1", zone, 2, 5) == "SEAT_TAKEN"
    bit = seats.seat_bit(zone, 2, 5)
    assert loaded_seats.hget(keys.owners_key("Event1", 1), bit) == ticket["ticketId"]
    assert loaded_seats.hgetall(keys.buyers_key("Event1")) == {"buyer-r": "1"}

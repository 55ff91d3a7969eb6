"""Ids compare exactly on the query side: case, accents and trailing spaces, in MariaDB itself and
at every endpoint; an id that cannot exist is answered before any lookup."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, select

import models
from models import totals
from models.tables import Event, Ticket, Venue, Zone
from models.tickets import TicketRecord, get_ticket, persist_ticket
from tests.support.factories import ticket_message
from tests.support.processes import free_port
from tests.test_purchase_api import assert_problem

Q = "/query/api/v1"
# Spellings MariaDB's default collation (utf8mb4_general_ci: case- and accent-insensitive, PAD
# SPACE) and even utf8mb4_bin (PAD SPACE) take for "Event1".
EVENT1_LOOKALIKES = ["EVENT1", "event1", "Évent1", "Event1 ", "Event1   "]
VENUE1_LOOKALIKES = ["VENUE1", "venue1", "Vénue1", "Venue1 "]


@pytest.fixture
def sold(client) -> dict:
    """One ticket of Event1 (Venue1), persisted the way the worker does it."""
    message = ticket_message()
    with models.writer().begin() as conn:
        persist_ticket(conn, TicketRecord.from_json(message))
    return message


@pytest.mark.parametrize("spelling", EVENT1_LOOKALIKES)
def test_the_database_compares_event_ids_exactly(sold, spelling):
    with models.reader().connect() as conn:
        assert conn.scalar(select(Event.event_id).where(Event.event_id == spelling)) is None
        assert conn.scalar(select(Ticket.ticket_id).where(Ticket.event_id == spelling)) is None
        assert totals.of_event(conn, spelling) is None
        assert conn.scalar(select(Event.event_id).where(Event.event_id == "Event1")) == "Event1"


@pytest.mark.parametrize("spelling", VENUE1_LOOKALIKES)
def test_the_database_compares_venue_ids_exactly(sold, spelling):
    with models.reader().connect() as conn:
        assert conn.scalar(select(Venue.name).where(Venue.venue_id == spelling)) is None
        assert conn.scalar(select(Zone.zone_id).where(Zone.venue_id == spelling)) is None
        assert conn.scalar(select(Event.event_id).where(Event.venue_id == spelling)) is None
        assert conn.scalar(select(Ticket.ticket_id).where(Ticket.venue_id == spelling)) is None


def test_the_database_compares_ticket_ids_exactly(sold):
    ticket_id = sold["ticketId"]
    with models.reader().connect() as conn:
        assert get_ticket(conn, ticket_id) is not None
        assert get_ticket(conn, ticket_id.upper()) is None
        assert get_ticket(conn, ticket_id + " ") is None


@pytest.mark.parametrize("spelling", EVENT1_LOOKALIKES)
def test_count_is_404_for_any_other_spelling(sold, client, spelling):
    assert client.get(f"{Q}/tickets/count/Event1").get_json() == {"eventId": "Event1", "count": 1}
    assert_problem(client.get(f"{Q}/tickets/count/{quote(spelling)}"), 404, "UNKNOWN_EVENT")


@pytest.mark.parametrize("spelling", VENUE1_LOOKALIKES)
def test_revenue_is_404_for_any_other_venue_spelling(sold, client, spelling):
    assert client.get(f"{Q}/tickets/revenue/Venue1/Event1").status_code == 200
    answer = client.get(f"{Q}/tickets/revenue/{quote(spelling)}/Event1")
    assert_problem(answer, 404, "UNKNOWN_VENUE")


@pytest.mark.parametrize("spelling", EVENT1_LOOKALIKES)
def test_revenue_is_404_for_any_other_event_spelling(sold, client, spelling):
    assert_problem(
        client.get(f"{Q}/tickets/revenue/Venue1/{quote(spelling)}"), 404, "UNKNOWN_EVENT"
    )


def test_revenue_no_longer_contradicts_itself(sold, client):
    """It used to answer 422 "event1 is held at Venue1, not venue1"."""
    assert_problem(client.get(f"{Q}/tickets/revenue/venue1/event1"), 404, "UNKNOWN_VENUE")


@pytest.mark.parametrize("spelling", EVENT1_LOOKALIKES)
def test_event_is_404_for_any_other_spelling(client, spelling):
    assert client.get(f"{Q}/events/Event1").get_json()["eventId"] == "Event1"
    assert_problem(client.get(f"{Q}/events/{quote(spelling)}"), 404, "UNKNOWN_EVENT")


@pytest.mark.parametrize("spelling", VENUE1_LOOKALIKES)
def test_venue_is_404_for_any_other_spelling(client, spelling):
    assert client.get(f"{Q}/venues/Venue1").get_json()["venueId"] == "Venue1"
    assert_problem(client.get(f"{Q}/venues/{quote(spelling)}"), 404, "UNKNOWN_VENUE")


def test_ticket_is_404_for_any_other_spelling(sold, client):
    ticket_id = sold["ticketId"]
    assert client.get(f"{Q}/tickets/{ticket_id}").get_json()["ticketId"] == ticket_id
    for spelling in (ticket_id.upper(), ticket_id + " ", " " + ticket_id):
        assert_problem(client.get(f"{Q}/tickets/{quote(spelling)}"), 404, "TICKET_NOT_FOUND")


@pytest.mark.parametrize(("name", "value"), [("eventId", "EVENT1"), ("eventId", "event1")])
def test_list_filter_on_event_matches_only_the_exact_id(sold, client, name, value):
    assert len(client.get(f"{Q}/tickets?eventId=Event1").get_json()) == 1
    answer = client.get(f"{Q}/tickets?{name}={value}")
    assert answer.status_code == 200
    assert answer.get_json() == []


@pytest.mark.parametrize("value", ["VENUE1", "venue1"])
def test_list_filter_on_venue_matches_only_the_exact_id(sold, client, value):
    assert len(client.get(f"{Q}/tickets?venueId=Venue1").get_json()) == 1
    answer = client.get(f"{Q}/tickets?venueId={value}")
    assert answer.status_code == 200
    assert answer.get_json() == []


@pytest.mark.parametrize("name", ["eventId", "venueId"])
@pytest.mark.parametrize("value", ["Event1 ", "Évent1", "a/b", "x" * 65, "", "Event 1", "a\n"])
def test_list_filter_that_cannot_be_an_id_is_400(client, name, value):
    assert_problem(client.get(f"{Q}/tickets?{name}={quote(value)}"), 400, "VALIDATION_FAILED")


@pytest.fixture
def dead_database(client, monkeypatch):
    """The reader points at a closed port: any lookup would answer 503."""
    dead = create_engine(f"mysql+pymysql://root@127.0.0.1:{free_port()}/x")
    monkeypatch.setattr(models, "reader", lambda: dead)


CANNOT_EXIST = ["Event1 ", "Évent1", "x" * 65, "a b", "a:b", "%00", "Event1%0A"]


@pytest.mark.parametrize("bad", CANNOT_EXIST)
def test_ids_that_cannot_exist_are_answered_without_a_lookup(dead_database, client, bad):
    """404 with the endpoint's code, not 503: the database was never asked."""
    path = quote(bad, safe="%")
    assert_problem(client.get(f"{Q}/tickets/count/{path}"), 404, "UNKNOWN_EVENT")
    assert_problem(client.get(f"{Q}/tickets/revenue/{path}/Event1"), 404, "UNKNOWN_VENUE")
    assert_problem(client.get(f"{Q}/tickets/revenue/Venue1/{path}"), 404, "UNKNOWN_EVENT")
    assert_problem(client.get(f"{Q}/events/{path}"), 404, "UNKNOWN_EVENT")
    assert_problem(client.get(f"{Q}/venues/{path}"), 404, "UNKNOWN_VENUE")
    assert_problem(client.get(f"{Q}/tickets/{path}"), 404, "TICKET_NOT_FOUND")
    assert_problem(client.get(f"{Q}/tickets?eventId={path}"), 400, "VALIDATION_FAILED")
    assert_problem(client.get(f"{Q}/tickets?venueId={path}"), 400, "VALIDATION_FAILED")


@pytest.mark.parametrize(
    "bad",
    [
        "5B15A8A4-1F84-44DD-8F3D-9AE9DE6E6D1B",  # a uuid, but never the spelling we issue
        "5b15a8a41f8444dd8f3d9ae9de6e6d1b",
        "{5b15a8a4-1f84-44dd-8f3d-9ae9de6e6d1b}",
        "not-a-uuid",
        "Event1",
    ],
)
def test_ticket_ids_that_cannot_exist_are_answered_without_a_lookup(dead_database, client, bad):
    assert_problem(client.get(f"{Q}/tickets/{bad}"), 404, "TICKET_NOT_FOUND")

"""The query API on real MariaDB: list order, filters, cursor pages, count, revenue, 404s."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

import models
from models.tickets import TicketRecord, persist_ticket
from tests.support.factories import ticket_message
from tests.test_purchase_api import assert_problem

BASE = "/query/api/v1/tickets"


@pytest.fixture
def tickets(client) -> list[dict]:
    """Seven tickets, a second apart, across two events and two zones; newest last."""
    start = datetime(2026, 11, 1, 12, tzinfo=UTC)
    specs = [
        ("Event1", 1, "100.00"),
        ("Event1", 1, "100.00"),
        ("Event1", 2, "100.00"),
        ("Event2", 1, "100.00"),
        ("Event1", 3, "95.00"),
        ("Event2", 2, "100.00"),
        ("Event1", 1, "100.00"),
    ]
    made = []
    with models.writer().begin() as conn:
        for n, (event, zone, price) in enumerate(specs):
            created = (start + timedelta(seconds=n)).isoformat(timespec="milliseconds")
            message = ticket_message(
                eventId=event,
                zoneId=zone,
                price=price,
                column=str(n + 1),
                createdOn=created.replace("+00:00", "Z"),
            )
            persist_ticket(conn, TicketRecord.from_json(message))
            made.append({k: v for k, v in message.items() if k != "schemaVersion"})
    return made


def test_list_is_newest_first_and_matches_the_contract(client, tickets):
    response = client.get(BASE)
    assert response.status_code == 200
    assert response.get_json() == list(reversed(tickets))
    assert "Link" not in response.headers


def test_cursor_pages_cover_everything_once(client, tickets):
    seen, url, pages = [], f"{BASE}?limit=3&eventId=Event1", 0
    while url:
        response = client.get(url)
        assert response.status_code == 200
        page = response.get_json()
        assert len(page) <= 3
        seen += [t["ticketId"] for t in page]
        link = response.headers.get("Link")
        url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None
        pages += 1
    expected = [t["ticketId"] for t in reversed(tickets) if t["eventId"] == "Event1"]
    assert seen == expected
    assert pages == 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("eventId=Event2", 2),
        ("venueId=Venue1", 7),
        ("venueId=Venue2", 0),
        ("eventId=Event1&zoneId=1", 3),
        ("zoneId=2", 2),
        ("limit=1", 1),
    ],
)
def test_filters(client, tickets, query, expected):
    assert len(client.get(f"{BASE}?{query}").get_json()) == expected


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=x",
        "cursor=!!!",
        "cursor=e30",
        "zoneId=-1",
        "colour=red",
        # integers spelled as in a JSON body: int() would take every one of these
        "limit=1_0",
        "limit=%E0%A5%A7%E0%A5%A6",  # Devanagari 10
        "limit=%EF%BC%91%EF%BC%90",  # full-width 10
        "limit=%2B5",
        "limit=+5",  # "+" is a space in a query string
        "limit=%205",
        "limit=5%20",
        "limit=05",
        "limit=5%0A",
        "limit=",
        "zoneId=1_0",
        "zoneId=%2B1",
        "zoneId=%D9%A1",  # Arabic-Indic 1
        "zoneId=01",
        # the spec says a cursor is the one of a Link header, never empty
        "cursor=",
    ],
)
def test_bad_list_parameters(client, query):
    assert_problem(client.get(f"{BASE}?{query}"), 400, "VALIDATION_FAILED")


def test_a_cursor_is_taken_exactly_as_the_link_gave_it(client, tickets):
    """base64 decoding skips characters outside its alphabet; the cursor may not have any."""
    link = client.get(f"{BASE}?limit=3").headers["Link"]
    cursor = re.search(r"cursor=([^&>]+)", link).group(1)
    assert client.get(f"{BASE}?limit=3&cursor={cursor}").status_code == 200
    for spoiled in (
        f"{cursor}%21",
        f"%20{cursor}",
        f"{cursor}%3D%3D",
        f"{cursor[:4]}.{cursor[4:]}",
    ):
        assert_problem(client.get(f"{BASE}?cursor={spoiled}"), 400, "VALIDATION_FAILED")


def test_get_one_and_not_found(client, tickets):
    assert client.get(f"{BASE}/{tickets[0]['ticketId']}").get_json() == tickets[0]
    assert_problem(
        client.get(f"{BASE}/00000000-0000-0000-0000-000000000000"), 404, "TICKET_NOT_FOUND"
    )
    assert_problem(client.get(f"{BASE}/not-a-uuid"), 404, "TICKET_NOT_FOUND")


def test_count(client, tickets):
    assert client.get(f"{BASE}/count/Event1").get_json() == {"eventId": "Event1", "count": 5}
    assert client.get(f"{BASE}/count/Event3").get_json() == {"eventId": "Event3", "count": 0}
    assert_problem(client.get(f"{BASE}/count/Nope"), 404, "UNKNOWN_EVENT")


def test_revenue_is_a_decimal_string(client, tickets):
    body = client.get(f"{BASE}/revenue/Venue1/Event1").get_json()
    assert body == {
        "venueId": "Venue1",
        "eventId": "Event1",
        "ticketCount": 5,
        "revenue": "495.00",
        "currency": "USD",
    }
    empty = client.get(f"{BASE}/revenue/Venue2/Event3").get_json()
    assert (empty["ticketCount"], empty["revenue"]) == (0, "0.00")
    assert_problem(client.get(f"{BASE}/revenue/Nope/Event1"), 404, "UNKNOWN_VENUE")
    assert_problem(client.get(f"{BASE}/revenue/Venue1/Nope"), 404, "UNKNOWN_EVENT")
    assert_problem(client.get(f"{BASE}/revenue/Venue2/Event1"), 422, "EVENT_NOT_AT_VENUE")


def test_revenue_is_in_the_configured_currency(client, tickets, monkeypatch):
    import dataclasses

    from plumbing import settings

    euros = dataclasses.replace(settings.get(), currency="EUR")
    monkeypatch.setattr(settings, "get", lambda: euros)
    assert client.get(f"{BASE}/revenue/Venue1/Event1").get_json()["currency"] == "EUR"


@pytest.mark.parametrize("code", ["usd", "EURO", "€", "U1D"])
def test_a_currency_that_is_not_an_iso_code_is_refused(monkeypatch, code):
    from plumbing import settings

    monkeypatch.setenv("CURRENCY", code)
    with pytest.raises(settings.SettingsError, match="CURRENCY"):
        settings.load()


def test_health(client):
    assert client.get("/query/health").get_json() == {"status": "UP"}
    assert client.get("/query/health/deep").get_json() == {
        "status": "UP",
        "checks": {"database": "UP"},
    }


def test_reader_unreachable_is_503(client, monkeypatch):
    from sqlalchemy import create_engine

    from tests.support.processes import free_port

    dead = create_engine(f"mysql+pymysql://root@127.0.0.1:{free_port()}/x")
    monkeypatch.setattr(models, "reader", lambda: dead)
    assert_problem(client.get(BASE), 503, "SERVICE_UNAVAILABLE")
    deep = client.get("/query/health/deep")
    assert deep.status_code == 503
    assert deep.get_json()["checks"] == {"database": "DOWN"}
    assert deep.get_json()["reasons"] == ["database: no answer"]  # no exception text
    assert client.get("/query/health").get_json() == {"status": "UP"}  # the ALB keeps the task

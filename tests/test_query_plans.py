"""Every read of the query API is shaped for reading: over 100,000 tickets, MariaDB's own account
of the statements the views send (ANALYZE FORMAT=JSON: the plan it chose and the rows it read)
shows no full scan, no filesort, and a page that reads about one page of rows."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, text

import models
from models.catalog import Catalog
from models.tickets import TicketRecord, persist_tickets
from tests.conftest import TEST_CATALOG
from tests.support.factories import clear_tickets
from tests.support.tokens import operator

SEEDED = 100_000
PAGE = 50
BASE = "/query/api/v1/tickets"


def _seed_records() -> Iterator[TicketRecord]:
    """SEEDED tickets over the test catalog's seven seed events and their zones, a millisecond
    apart, two by two on the same instant (the cursor's tie-breaker is exercised)."""
    catalog = Catalog.from_dict(TEST_CATALOG)
    events = [e for e in catalog.events.values() if e.event_id.startswith("Event")]
    start = datetime(2026, 1, 1)
    for n in range(SEEDED):
        e = events[n % len(events)]
        zones = sorted(catalog.venues[e.venue_id].zones)
        yield TicketRecord(
            ticket_id=str(uuid.uuid4()),
            venue_id=e.venue_id,
            event_id=e.event_id,
            zone_id=zones[(n // len(events)) % len(zones)],
            row="A",
            column=n + 1,
            price=Decimal("100.00"),
            status="PAID",
            created_on=start + timedelta(milliseconds=n // 2),
        )


@pytest.fixture(scope="module")
def seeded(database: None) -> Iterator[None]:
    """SEEDED tickets, written by the projection in multi-row batches, and fresh statistics."""
    with models.writer().begin() as conn:
        clear_tickets(conn)
    batch: list[TicketRecord] = []
    for record in _seed_records():
        batch.append(record)
        if len(batch) == 5_000:
            with models.writer().begin() as conn:
                persist_tickets(conn, batch)
            batch = []
    with models.writer().connect() as conn:
        conn.exec_driver_sql("ANALYZE TABLE ticket").all()
    yield
    with models.writer().begin() as conn:
        clear_tickets(conn)


@contextmanager
def statements_sent() -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of every cursor execution on the reader, as the driver gets them."""
    seen: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, parameters))

    engine = models.reader()
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def analyze(statement: str, parameters: Any) -> dict:
    """MariaDB's ANALYZE FORMAT=JSON of the statement: it runs it and reports what it read."""
    raw = models.reader().raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("ANALYZE FORMAT=JSON " + statement, parameters)
            return json.loads(cur.fetchone()[0])
    finally:
        raw.close()


def nodes(plan: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of the plan, depth first."""
    if isinstance(plan, dict):
        for key, value in plan.items():
            yield key, value
            yield from nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from nodes(item)


def tables(plan: dict) -> list[dict]:
    return [v for k, v in nodes(plan) if k == "table" and isinstance(v, dict)]


def assert_shaped_for_reading(plan: dict, max_rows: int) -> None:
    """No full scan, no sort, no temporary table, and at most `max_rows` rows read per table."""
    shown = json.dumps(plan, indent=1)
    keys = {k for k, _ in nodes(plan)}
    assert not keys & {"filesort", "read_sorted_file"}, f"sorts:\n{shown}"
    assert "temporary_table" not in keys, f"temporary table:\n{shown}"
    for table in tables(plan):
        assert table["access_type"] not in ("ALL", "index_merge"), f"full scan:\n{shown}"
        assert table.get("key"), f"no index:\n{shown}"
        read = (table.get("r_rows") or 0) * (table.get("r_loops") or 1)
        assert read <= max_rows, f"{read} rows read for at most {max_rows}:\n{shown}"


def ticket_selects(sent: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(s, p) for s, p in sent if re.search(r"\bFROM ticket\b", s)]


LIST_FILTERS = [
    "",
    "eventId=Event1",
    "venueId=Venue1",
    "zoneId=3",
    "eventId=Event3&zoneId=2",
    "venueId=Venue2&zoneId=2",
    "eventId=Event1&venueId=Venue1",
    "eventId=Event1&venueId=Venue1&zoneId=4",
]


@pytest.mark.parametrize("filters", LIST_FILTERS)
@pytest.mark.parametrize("page", ["first", "next"])
def test_every_list_page_reads_one_page_through_an_index(app, seeded, filters, page):
    client = operator_client(app)
    url = f"{BASE}?limit={PAGE}&{filters}"
    if page == "next":  # a cursor from the middle of the result
        for _ in range(3):
            link = client.get(url).headers["Link"]
            url = re.match(r"<([^>]+)>", link).group(1)
    with statements_sent() as sent:
        answer = client.get(url)
    assert answer.status_code == 200 and len(answer.get_json()) == PAGE
    selects = ticket_selects(sent)
    assert len(selects) == 1, selects
    # limit + 1 rows (is there a next page?); after a cursor also the rows at the cursor's own
    # instant (the seed puts two tickets on each), which the range starts from
    slack = 0 if page == "first" else 2
    assert_shaped_for_reading(analyze(*selects[0]), max_rows=PAGE + 1 + slack)


def test_a_venue_that_is_not_the_events_reads_no_ticket(app, seeded):
    with statements_sent() as sent:
        answer = operator_client(app).get(f"{BASE}?eventId=Event1&venueId=Venue2")
    assert answer.status_code == 200 and answer.get_json() == []
    assert ticket_selects(sent) == []


def test_the_page_is_the_same_as_a_sort_of_everything(app, seeded):
    """The index order is the contract's order: newest first, ties by ticket id descending."""
    with models.reader().connect() as conn:
        expected = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT CAST(ticket_id AS CHAR) FROM ticket WHERE venue_id = 'Venue2'"
                    " AND zone_id = 2 ORDER BY created_on DESC, ticket_id DESC LIMIT 200"
                )
            )
        ]
    seen, url = [], f"{BASE}?limit={PAGE}&venueId=Venue2&zoneId=2"
    while len(seen) < 200:
        answer = operator_client(app).get(url)
        seen += [t["ticketId"] for t in answer.get_json()]
        url = re.match(r"<([^>]+)>", answer.headers["Link"]).group(1)
    assert seen == expected


@pytest.mark.parametrize(
    "path", ["/query/api/v1/tickets/count/Event1", "/query/api/v1/tickets/revenue/Venue1/Event1"]
)
def test_count_and_revenue_are_one_primary_key_read(app, seeded, path):
    """The event's row and its totals row: one statement, each table read by its key, one row;
    the answer is what the tickets add up to."""
    with statements_sent() as sent:
        answer = operator_client(app).get(path)
    assert answer.status_code == 200
    selects = [(s, p) for s, p in sent if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, selects
    plan = analyze(*selects[0])
    for table in tables(plan):
        assert table["access_type"] in ("const", "eq_ref", "system"), json.dumps(plan, indent=1)
        assert table.get("key") == "PRIMARY", json.dumps(plan, indent=1)
    assert_shaped_for_reading(plan, max_rows=1)
    with models.reader().connect() as conn:
        n, total = conn.execute(
            text("SELECT COUNT(*), SUM(price) FROM ticket WHERE event_id = 'Event1'")
        ).one()
    body = answer.get_json()
    assert body.get("count", body.get("ticketCount")) == n == SEEDED // 7 + 1
    if "revenue" in body:
        assert Decimal(body["revenue"]) == total


def operator_client(app):
    """The back office's reads need an operator."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = operator()["Authorization"]
    return client

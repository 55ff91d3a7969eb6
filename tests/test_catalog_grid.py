"""`flask --app web catalog load` (through click's CliRunner on the app, real Redis and
MariaDB): the seat grid of an event with seat state is frozen, anything else may change, and a
refused load writes nothing."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
import redis
from sqlalchemy import bindparam, text

import models
from models import catalog as catalog_model
from models import seats
from models.catalog import Catalog, upsert
from models.seats import keys
from models.tickets import TicketRecord, persist_ticket
from plumbing import settings
from tests.conftest import TEST_CATALOG
from tests.support.factories import sell, ticket_message
from web import purchase

Edit = Callable[[dict], None]


def venue(document: dict, venue_id: str) -> dict:
    return next(v for v in document["venues"] if v["venueId"] == venue_id)


def event(document: dict, event_id: str) -> dict:
    return next(e for e in document["events"] if e["eventId"] == event_id)


def zone(document: dict, venue_id: str, zone_id: int) -> dict:
    return next(z for z in venue(document, venue_id)["zones"] if z["zoneId"] == zone_id)


def mark_seat_state(event_ids: list[str] | None, created: bool) -> None:
    """Set or clear `event.seat_state_created_on` (of every event when `event_ids` is None)."""
    value = "NOW(6)" if created else "NULL"
    where = "" if event_ids is None else " WHERE event_id IN :ids"
    with models.writer().begin() as conn:
        statement = text(f"UPDATE event SET seat_state_created_on = {value}{where}")
        if event_ids is not None:
            statement = statement.bindparams(bindparam("ids", expanding=True))
        conn.execute(statement, {"ids": event_ids} if event_ids is not None else {})


@pytest.fixture
def load(app, tmp_path) -> Iterator[Callable[[dict], tuple[int, str]]]:
    """Run `catalog load --file` on a document; (exit code, output). The test catalog and the
    seat state marks are put back in MySQL afterwards (a permitted load changes them)."""
    runner = app.test_cli_runner()
    with models.writer().connect() as conn:
        marks = dict(conn.execute(text("SELECT event_id, seat_state_created_on FROM event")).all())

    def run(document: dict) -> tuple[int, str]:
        path = tmp_path / f"catalog-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(document))
        result = runner.invoke(args=["catalog", "load", "--file", str(path)])
        return result.exit_code, result.output

    yield run
    with models.writer().begin() as conn:
        upsert(conn, Catalog.from_dict(TEST_CATALOG))
        for event_id, created_on in marks.items():
            conn.execute(
                text("UPDATE event SET seat_state_created_on = :c WHERE event_id = :e"),
                {"c": created_on, "e": event_id},
            )
    purchase.forget_catalog()


def mysql_catalog() -> Catalog:
    with models.writer().connect() as conn:
        return catalog_model.from_database(conn)


def redis_snapshot() -> dict[bytes, bytes]:
    """Every key of the test Redis database, serialized (DUMP): what "nothing written" means."""
    raw = redis.Redis.from_url(settings.get().redis_url)
    try:
        return {key: raw.dump(key) for key in raw.scan_iter()}
    finally:
        raw.close()


def sell_a1(redis_client, event_id: str = "Event1") -> None:
    zone_1 = Catalog.from_dict(TEST_CATALOG).venues["Venue1"].zones[1]
    assert sell(seats.scripts_for(redis_client), event_id, zone_1, 0, 1) == "OK"


def _set(path: Callable[[dict], dict], field: str, value: object) -> Edit:
    return lambda document: path(document).__setitem__(field, value)


FROZEN: list[tuple[str, Edit, str]] = [
    ("columns", _set(lambda d: zone(d, "Venue1", 1), "columns", 41), "zone 1 columns 40 -> 41"),
    ("rows", _set(lambda d: zone(d, "Venue1", 1), "rows", 29), "zone 1 rows 30 -> 29"),
    ("capacity", _set(lambda d: zone(d, "Venue1", 1), "capacity", 100), "zone 1 capacity"),
    ("row capacity", _set(lambda d: zone(d, "Venue1", 1), "rowCapacity", 20), "rowCapacity"),
    ("event capacity", _set(lambda d: event(d, "Event1"), "capacity", 10), "capacity"),
    ("venue", _set(lambda d: event(d, "Event1"), "venueId", "Venue2"), "venueId Venue1 -> Venue2"),
    ("zone removed", lambda d: venue(d, "Venue1")["zones"].pop(), "zones"),
    (
        "zone added",
        lambda d: venue(d, "Venue1")["zones"].append(
            {"zoneId": 51, "rows": 1, "columns": 1, "price": "1.00"}
        ),
        "zones",
    ),
]


@pytest.mark.parametrize(("change", "edit", "named"), FROZEN, ids=[f[0] for f in FROZEN])
def test_a_grid_change_under_sold_seats_is_refused_and_nothing_is_written(
    load, loaded_seats, clean_tickets, change, edit, named
):
    sell_a1(loaded_seats)
    before_mysql, before_redis = mysql_catalog(), redis_snapshot()
    document = copy.deepcopy(TEST_CATALOG)
    edit(document)

    code, output = load(document)

    assert code != 0
    assert "Event1" in output and named in output, output
    assert "nothing was written" in output
    assert mysql_catalog() == before_mysql
    assert redis_snapshot() == before_redis


def test_the_change_is_refused_for_every_live_event_of_the_venue(load, loaded_seats, clean_tickets):
    """Event1 and Event2 are both held at Venue1, and both have seat state."""
    document = copy.deepcopy(TEST_CATALOG)
    zone(document, "Venue1", 3)["columns"] = 39
    code, output = load(document)
    assert code != 0
    assert "Event1: zone 3 columns 40 -> 39" in output
    assert "Event2: zone 3 columns 40 -> 39" in output


def test_tickets_in_mysql_pin_the_grid_when_redis_lost_its_state(load, redis_client, clean_tickets):
    """Redis was flushed (and no event is marked): the tickets are what the seat state will be
    rebuilt from."""
    mark_seat_state(None, created=False)
    with models.writer().begin() as conn:
        persist_ticket(conn, TicketRecord.from_json(ticket_message(row="B", column="40")))
    redis_client.flushdb()
    before_mysql = mysql_catalog()
    document = copy.deepcopy(TEST_CATALOG)
    zone(document, "Venue1", 1)["columns"] = 39  # B40 would be off the grid

    code, output = load(document)

    assert code != 0
    assert "Event1: zone 1 columns 40 -> 39" in output
    assert "Event2" not in output  # same venue, but no seat state anywhere
    assert mysql_catalog() == before_mysql
    assert redis_snapshot() == {}


def test_a_recorded_seat_state_pins_the_grid_when_redis_lost_it(load, redis_client, clean_tickets):
    """No ticket in MySQL yet, Redis flushed, but MySQL records that Event1's seat state was
    created: its sales may still be in flight, at positions of the old grid."""
    mark_seat_state(None, created=False)
    mark_seat_state(["Event1"], created=True)
    document = copy.deepcopy(TEST_CATALOG)
    zone(document, "Venue1", 1)["columns"] = 39
    code, output = load(document)
    assert code != 0
    assert "Event1: zone 1 columns 40 -> 39" in output
    assert "Event2" not in output
    assert redis_snapshot() == {}


def test_zone_keys_without_the_event_hash_are_seat_state(load, loaded_seats, clean_tickets):
    """A rebuild under way (or stopped by a queue that did not drain) has removed the event
    hash and left the zones' bitmaps: the grid is still pinned."""
    sell_a1(loaded_seats)
    loaded_seats.delete(seats.event_key("Event1"))
    document = copy.deepcopy(TEST_CATALOG)
    zone(document, "Venue1", 1)["columns"] = 41
    code, output = load(document)
    assert code != 0
    assert "Event1: zone 1 columns 40 -> 41" in output


def test_the_published_copy_pins_the_grid_too(load, loaded_seats, clean_tickets):
    """A load that stopped after MySQL and before Redis: Redis sells from its own copy."""
    sell_a1(loaded_seats)
    document = copy.deepcopy(TEST_CATALOG)
    zone(document, "Venue1", 1)["columns"] = 41
    with models.writer().begin() as conn:  # MySQL already has the new grid, Redis the old
        upsert(conn, Catalog.from_dict(document))
    code, output = load(document)
    assert code != 0
    assert "Event1: zone 1 columns 40 -> 41" in output


def test_names_dates_and_prices_may_change_under_sold_seats(load, loaded_seats, clean_tickets):
    """A sale copies the zone's price into its ticket: a new price applies to later sales."""
    sell_a1(loaded_seats)
    seat_state = {k: v for k, v in redis_snapshot().items() if k.startswith(b"seats:")}
    document = copy.deepcopy(TEST_CATALOG)
    zone(document, "Venue1", 1)["price"] = "120.50"
    event(document, "Event1").update(name="Renamed", type="FESTIVAL", date="2027-06-13T19:30:00Z")
    venue(document, "Venue1")["name"] = "Renamed venue"

    code, output = load(document)

    assert code == 0, output
    loaded = mysql_catalog()
    assert loaded.venues["Venue1"].zones[1].price == Decimal("120.50")
    assert loaded.events["Event1"].name == "Renamed"
    assert seats.read_catalog(loaded_seats) == Catalog.from_dict(document)
    after = {k: v for k, v in redis_snapshot().items() if k.startswith(b"seats:")}
    assert after == seat_state  # A1 still sold, every counter as it was
    zone_1 = loaded.venues["Venue1"].zones[1]
    assert sell(seats.scripts_for(loaded_seats), "Event1", zone_1, 0, 1) == "SEAT_TAKEN"


def test_an_event_without_seat_state_may_change_its_grid(load, loaded_seats, clean_tickets):
    """In MySQL but never given seat state (no key in Redis, no mark, no ticket): nothing to
    move. The load starts it empty on the new grid."""
    mark_seat_state(["TinyEvent", "TinyCapped"], created=False)
    for event_id in ("TinyEvent", "TinyCapped"):  # TinyVenue's events
        for key in loaded_seats.scan_iter("seats:" + keys.tag(event_id) + ":" + event_id + ":*"):
            loaded_seats.delete(key)
    document = copy.deepcopy(TEST_CATALOG)
    zone(document, "TinyVenue", 3)["columns"] = 4

    code, output = load(document)

    assert code == 0, output
    assert mysql_catalog().venues["TinyVenue"].zones[3].columns == 4
    new_zone = Catalog.from_dict(document).venues["TinyVenue"].zones[3]
    grid, left = seats.scripts_for(loaded_seats).zone_state("TinyEvent", new_zone)
    assert grid == ["0000"] * 3 and left["zone"] == 12


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set(lambda d: venue(d, "TinyVenue"), "venueId", "Tiny Venue"), "venueId"),
        (_set(lambda d: event(d, "TinyEvent"), "eventId", "TinyEvent "), "eventId"),
        (_set(lambda d: event(d, "TinyEvent"), "eventId", "Tiny{Event}"), "eventId"),
        (_set(lambda d: event(d, "TinyEvent"), "eventId", "Éclair"), "eventId"),
    ],
)
def test_a_catalog_with_a_malformed_id_is_refused(load, loaded_seats, clean_tickets, edit, field):
    before_mysql, before_redis = mysql_catalog(), redis_snapshot()
    document = copy.deepcopy(TEST_CATALOG)
    edit(document)
    code, output = load(document)
    assert code != 0
    assert field in output and "A-Z, a-z, 0-9" in output, output
    assert mysql_catalog() == before_mysql
    assert redis_snapshot() == before_redis

"""Catalog reads (query side, MariaDB) and seat availability (purchase side, Redis)."""

from __future__ import annotations

import pytest

from tests.test_purchase_api import assert_problem, buy

Q = "/query/api/v1"
P = "/purchase/api/v1"


def test_venues_list_and_one_venue(client):
    venues = client.get(f"{Q}/venues").get_json()
    ids = [v["venueId"] for v in venues]
    assert ids == sorted(ids) and {"Venue1", "Venue5", "TinyVenue"} <= set(ids)
    venue1 = next(v for v in venues if v["venueId"] == "Venue1")
    assert (venue1["zoneCount"], venue1["capacity"]) == (50, 50 * 30 * 40)

    tiny = client.get(f"{Q}/venues/TinyVenue").get_json()
    assert tiny["capacity"] == 2 * 3 + 3 + 9
    assert tiny["zones"][0] == {
        "zoneId": 1,
        "rows": 2,
        "columns": 3,
        "capacity": 6,
        "rowCapacity": 2,
        "price": "10.50",
    }
    assert [z["price"] for z in tiny["zones"]] == ["10.50", "20.00", "30.25"]
    assert_problem(client.get(f"{Q}/venues/Nowhere"), 404, "UNKNOWN_VENUE")


def test_events_list_and_one_event(client):
    events = client.get(f"{Q}/events").get_json()
    assert {f"Event{n}" for n in range(1, 8)} <= {e["eventId"] for e in events}
    dates = [e["date"] for e in events]
    assert dates == sorted(dates)
    tiny = client.get(f"{Q}/events/TinyCapped").get_json()
    assert tiny == {
        "eventId": "TinyCapped",
        "venueId": "TinyVenue",
        "name": "Tiny, 2 seats",
        "type": "TEST",
        "date": "2027-01-02T20:00:00Z",
        "capacity": 2,
    }
    assert_problem(client.get(f"{Q}/events/Nope"), 404, "UNKNOWN_EVENT")


def test_seat_map_shows_sold_seats_and_counters(client):
    tiny = {"venueId": "TinyVenue", "eventId": "TinyEvent", "zoneId": 1}
    assert buy(client, **tiny, row="A", column="2").status_code == 201
    assert buy(client, **tiny, row="B", column="3").status_code == 201
    body = client.get(f"{P}/events/TinyEvent/zones/1/seats").get_json()
    assert body == {
        "eventId": "TinyEvent",
        "zoneId": 1,
        "rows": 2,
        "columns": 3,
        "remaining": {"zone": 4, "rows": {"A": 1, "B": 1}},  # rowCapacity 2
        "seats": ["010", "001"],
    }


def test_seat_map_of_a_large_zone_is_exact(client):
    assert buy(client, row="AD", column="40").status_code == 201
    body = client.get(f"{P}/events/Event1/zones/1/seats").get_json()
    assert (body["rows"], body["columns"], len(body["seats"])) == (30, 40, 30)
    assert body["seats"][-1] == "0" * 39 + "1"
    assert all(row == "0" * 40 for row in body["seats"][:-1])
    assert body["remaining"]["zone"] == 30 * 40 - 1
    assert body["remaining"]["rows"]["AD"] == 39


def test_availability_per_zone(client):
    tiny = {"venueId": "TinyVenue", "eventId": "TinyEvent"}
    assert buy(client, **tiny, zoneId=2, row="A", column="1").status_code == 201
    body = client.get(f"{P}/events/TinyEvent/availability").get_json()
    assert body == {
        "eventId": "TinyEvent",
        "venueId": "TinyVenue",
        "remaining": 6 + 2 + 9,
        "zones": [
            {"zoneId": 1, "capacity": 6, "remaining": 6},
            {"zoneId": 2, "capacity": 3, "remaining": 2},
            {"zoneId": 3, "capacity": 9, "remaining": 9},
        ],
    }


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"{P}/events/Nope/availability", 404, "UNKNOWN_EVENT"),
        (f"{P}/events/Nope/zones/1/seats", 404, "UNKNOWN_EVENT"),
        (f"{P}/events/Event1/zones/51/seats", 404, "UNKNOWN_ZONE"),
        (f"{P}/events/Event1/zones/0/seats", 404, "NOT_FOUND"),  # zones are 1, 2, …
        (f"{P}/events/Event1/zones/-1/seats", 404, "NOT_FOUND"),
        (f"{P}/events/Event1/zones/{10**30}/seats", 404, "UNKNOWN_ZONE"),
        # a zone id is spelled 1, 2, … in ASCII digits, as in a JSON body
        (f"{P}/events/Event1/zones/01/seats", 404, "NOT_FOUND"),
        (f"{P}/events/Event1/zones/%E0%A5%A7/seats", 404, "NOT_FOUND"),  # Devanagari 1
        (f"{P}/events/Event1/zones/%EF%BC%91/seats", 404, "NOT_FOUND"),  # full-width 1
        (f"{P}/events/Event1/zones/%D9%A1/seats", 404, "NOT_FOUND"),  # Arabic-Indic 1
        (f"{P}/events/Event1/zones/+1/seats", 404, "NOT_FOUND"),
    ],
)
def test_availability_not_found(client, path, status, code):
    assert_problem(client.get(path), status, code)


BAD_IDS = ["Event1%20", "%C3%89vent1", "Ev%20ent1", "Event1%0A", "Event1%7D", "E" * 65, "%00"]


@pytest.mark.parametrize("event_id", BAD_IDS)
@pytest.mark.parametrize("tail", ["availability", "zones/1/seats"])
def test_an_id_that_cannot_exist_is_unknown_without_asking_redis(
    client, monkeypatch, event_id, tail
):
    """Redis is unreachable: a well-formed id is a 503 (it was asked), a malformed one a 404."""
    from models import seats
    from tests.support.processes import free_port
    from web import purchase

    dead = seats.client(f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(seats, "client", lambda url=None: dead)
    purchase.forget_catalog()
    assert_problem(client.get(f"{P}/events/Event1/{tail}"), 503, "SERVICE_UNAVAILABLE")
    assert_problem(client.get(f"{P}/events/{event_id}/{tail}"), 404, "UNKNOWN_EVENT")


def test_seat_state_not_loaded_is_503(client, redis_client):
    from models import seats

    redis_client.delete(seats.event_key("Event2"))
    for path in (f"{P}/events/Event2/availability", f"{P}/events/Event2/zones/1/seats"):
        response = client.get(path)
        assert_problem(response, 503, "SERVICE_UNAVAILABLE")
        assert response.headers["Retry-After"]

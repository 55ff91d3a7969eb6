"""Limits decided in the purchase script, against real Redis: seats per buyer per event, and
purchase attempts per buyer per event; and idempotency records written only by sales.

The race runs against gunicorn with two worker processes of eight threads each: the limit holds
across processes because one Redis script counts and sells."""

from __future__ import annotations

import dataclasses
import threading
import uuid

import pytest
import requests

from models.seats import keys
from plumbing import settings
from tests.support.processes import gunicorn
from tests.support.tokens import bearer
from tests.test_purchase_api import GOOD, URL, assert_problem, sold_bits


@pytest.fixture
def limits(monkeypatch):
    """Set the limits of this process's app: limits(seats=…, burst=…, window=…)."""

    def apply(seats: int = 10**6, burst: int = 10**6, window: float = 10.0) -> None:
        changed = dataclasses.replace(
            settings.get(),
            max_seats_per_buyer=seats,
            rate_limit_burst=burst,
            rate_limit_window_seconds=window,
        )
        monkeypatch.setattr(settings, "get", lambda: changed)

    return apply


def seat(n: int) -> dict:
    """The n-th seat of zone 1 (10 columns a row)."""
    return {**GOOD, "row": "ABCDEFGHIJ"[n // 10], "column": str(n % 10 + 1)}


def test_one_buyer_racing_50_purchases_gets_exactly_the_limit(clean_tickets, loaded_seats):
    """50 concurrent purchases of distinct free seats by one buyer, over two processes: exactly
    MAX_SEATS_PER_BUYER are sold, the rest are 409 BUYER_LIMIT_REACHED; another buyer still
    buys."""
    env = {"MAX_SEATS_PER_BUYER": "8", "RATE_LIMIT_BURST": "1000", "GUNICORN_WORKERS": "2"}
    with gunicorn(env) as base:
        token = bearer("racer")
        barrier = threading.Barrier(50)
        statuses: list[tuple[int, str]] = []
        lock = threading.Lock()

        def attempt(n: int) -> None:
            session = requests.Session()
            session.get(f"{base}/purchase/health", timeout=10)  # connected before the race
            barrier.wait()
            response = session.post(f"{base}{URL}", json=seat(n), headers=token, timeout=30)
            with lock:
                statuses.append((response.status_code, response.json().get("code", "")))

        threads = [threading.Thread(target=attempt, args=(n,)) for n in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses).count((201, "")) == 8, statuses
        assert statuses.count((409, "BUYER_LIMIT_REACHED")) == 42, statuses
        assert sold_bits(loaded_seats) == 8
        assert loaded_seats.hget(keys.buyers_key("Event1"), "racer") == "8"
        other = requests.post(f"{base}{URL}", json=seat(60), headers=bearer("other"), timeout=30)
        assert other.status_code == 201


def test_the_limit_is_per_event(client, limits):
    limits(seats=1)
    assert client.post(URL, json=seat(0)).status_code == 201
    assert_problem(client.post(URL, json=seat(1)), 409, "BUYER_LIMIT_REACHED")
    other_event = {**seat(0), "eventId": "Event2", "venueId": "Venue1"}
    assert client.post(URL, json=other_event).status_code == 201


def test_attempts_beyond_the_burst_are_429_with_retry_after(client, limits, loaded_seats):
    """30 attempts pass (refused ones count too), the 31st is RATE_LIMITED and decides nothing;
    another buyer and another event are not limited."""
    limits(burst=30, window=10)
    assert client.post(URL, json=seat(0)).status_code == 201
    for _ in range(29):  # the same seat again: refused, but each is an attempt
        assert_problem(client.post(URL, json=seat(0)), 409, "SEAT_TAKEN")
    limited = client.post(URL, json=seat(1))
    assert_problem(limited, 429, "RATE_LIMITED")
    assert 1 <= int(limited.headers["Retry-After"]) <= 10
    assert sold_bits(loaded_seats) == 1  # the limited attempt sold nothing
    assert client.post(URL, json=seat(1), headers=bearer("another")).status_code == 201
    other_event = {**seat(0), "eventId": "Event2"}
    assert client.post(URL, json=other_event).status_code == 201


def test_the_rate_refills_after_the_interval(client, limits):
    """burst 2 per 0.4 s: the third at once is limited; 0.25 s later (one interval is 0.2 s)
    one more passes. Waiting longer only helps, so this cannot flake by being slow."""
    import time

    limits(burst=2, window=0.4)
    assert client.post(URL, json=seat(0)).status_code == 201
    assert client.post(URL, json=seat(1)).status_code == 201
    assert_problem(client.post(URL, json=seat(2)), 429, "RATE_LIMITED")
    time.sleep(0.25)
    assert client.post(URL, json=seat(2)).status_code == 201


def idempotency_records(r) -> set[str]:
    return set(r.scan_iter("seats:*:idem:*", count=1000))


def test_10000_refused_or_invalid_requests_leave_no_idempotency_record(
    app, client, limits, loaded_seats
):
    """Every refusal the contract has, each with a new Idempotency-Key: no record is written
    (a record is written only by a sale), and the only new keys are the buyers' rate keys,
    which expire on their own."""
    r = loaded_seats
    limits(seats=1, burst=10**6)
    assert client.post(URL, json=seat(0)).status_code == 201  # the operator's one seat
    taker = app.test_client()  # a buyer with no seat yet, who keeps losing seat 0
    taker.environ_base["HTTP_AUTHORIZATION"] = bearer("taker")["Authorization"]
    before_keys = set(r.scan_iter("*", count=1000))
    assert idempotency_records(r) == set()
    bad_requests = [
        (taker, seat(0), 409, "SEAT_TAKEN"),
        (client, seat(5), 409, "BUYER_LIMIT_REACHED"),
        (client, {**seat(0), "column": "99"}, 422, "SEAT_OUT_OF_RANGE"),
        (client, {**seat(0), "eventId": "NoSuchEvent"}, 404, "UNKNOWN_EVENT"),
        (client, {**seat(0), "zoneId": "one"}, 400, "VALIDATION_FAILED"),
        (app.test_client(), seat(7), 401, "UNAUTHENTICATED"),
    ]
    for i in range(10_000):
        sender, body, status, code = bad_requests[i % len(bad_requests)]
        response = sender.post(URL, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert (response.status_code, response.get_json()["code"]) == (status, code)
    assert idempotency_records(r) == set()
    new = set(r.scan_iter("*", count=1000)) - before_keys
    assert new <= {keys.rate_key("Event1", "taker")}
    assert all(0 < r.pttl(k) <= 10_000 for k in new)
    assert sold_bits(r) == 1

"""Availability and seat maps are kept per process for a short TTL, bounded in entries and bytes,
and concurrent misses on one answer make one Redis call: reads cannot starve the sale."""

from __future__ import annotations

import threading
import time

import pytest

from models.seats.scripts import SeatScripts
from plumbing.read_cache import ReadCache
from tests.test_purchase_api import assert_problem, buy
from web import availability

P = "/purchase/api/v1"
TINY = {"venueId": "TinyVenue", "eventId": "TinyEvent", "zoneId": 1}
TINY_MAP = f"{P}/events/TinyEvent/zones/1/seats"
TINY_AVAILABILITY = f"{P}/events/TinyEvent/availability"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def script_calls(monkeypatch) -> dict[str, int]:
    """Counts the seat-read script calls; each still goes to the real Redis."""
    calls = {"zone_state": 0, "availability": 0}
    for name in calls:
        real = getattr(SeatScripts, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SeatScripts, name, counted)
    return calls


def use_cache(monkeypatch, cache: ReadCache) -> ReadCache:
    monkeypatch.setattr(availability, "read_cache", lambda: cache)
    return cache


def test_repeated_reads_within_the_ttl_make_one_redis_call(client, monkeypatch, script_calls):
    use_cache(monkeypatch, ReadCache(0.25, 100, 2**20, clock=Clock()))
    maps = [client.get(TINY_MAP) for _ in range(20)]
    counts = [client.get(TINY_AVAILABILITY) for _ in range(20)]
    assert {r.status_code for r in maps + counts} == {200}
    assert len({r.get_data() for r in maps}) == len({r.get_data() for r in counts}) == 1
    assert script_calls == {"zone_state": 1, "availability": 1}
    assert maps[-1].headers["Content-Type"] == "application/json"
    assert maps[-1].headers["Cache-Control"] == "max-age=0"  # 250 ms: below a second


def test_a_sale_shows_once_the_ttl_has_passed(client, monkeypatch, script_calls):
    """Real time: the answer may lag the sale by the TTL, never by more."""
    ttl = 1.0
    use_cache(monkeypatch, ReadCache(ttl, 100, 2**20))
    assert client.get(TINY_MAP).get_json()["seats"] == ["000", "000"]
    assert client.get(TINY_AVAILABILITY).get_json()["remaining"] == 6 + 3 + 9
    sold_at = time.monotonic()
    assert buy(client, **TINY, row="A", column="2").status_code == 201
    seat_map = client.get(TINY_MAP).get_json()
    if time.monotonic() - sold_at < ttl:  # still within the TTL: the kept answer
        assert seat_map["seats"] == ["000", "000"]
    time.sleep(ttl - (time.monotonic() - sold_at) + 0.05)
    assert client.get(TINY_MAP).get_json()["seats"] == ["010", "000"]
    assert client.get(TINY_AVAILABILITY).get_json()["remaining"] == 6 + 3 + 9 - 1
    assert script_calls == {"zone_state": 2, "availability": 2}


def test_the_cache_keeps_at_most_its_entries(client, monkeypatch, script_calls):
    """Event1 has 50 zones: reading 12 of them, twice, keeps the last 4."""
    cache = use_cache(monkeypatch, ReadCache(60, 4, 2**20, clock=Clock()))
    for _ in range(2):
        for zone in range(1, 13):
            assert client.get(f"{P}/events/Event1/zones/{zone}/seats").status_code == 200
            assert len(cache) <= 4
    assert len(cache) == 4
    assert script_calls["zone_state"] == 24  # round-robin over more than the bound: all misses
    for zone in range(9, 13):  # the four most recent are kept
        client.get(f"{P}/events/Event1/zones/{zone}/seats")
    assert script_calls["zone_state"] == 24


def test_the_cache_keeps_at_most_its_bytes(client, monkeypatch):
    one = len(client.get(f"{P}/events/Event1/zones/1/seats").get_data())
    cache = use_cache(monkeypatch, ReadCache(60, 1000, 3 * one + one // 2, clock=Clock()))
    for zone in range(1, 11):
        assert client.get(f"{P}/events/Event1/zones/{zone}/seats").status_code == 200
        assert cache.size_bytes <= cache.max_bytes
    assert len(cache) == 3
    # an answer larger than the whole bound is served, not kept
    small = use_cache(monkeypatch, ReadCache(60, 1000, one - 1, clock=Clock()))
    assert client.get(f"{P}/events/Event1/zones/1/seats").status_code == 200
    assert (len(small), small.size_bytes) == (0, 0)


def test_concurrent_misses_make_one_redis_call(app, client, monkeypatch, script_calls):
    """16 threads miss the same seat map while Redis is slow to answer: one call, one answer."""
    use_cache(monkeypatch, ReadCache(60, 100, 2**20, clock=Clock()))
    counted = SeatScripts.zone_state

    def slow(self, *args, **kwargs):
        time.sleep(0.3)  # every thread has missed before the first call returns
        return counted(self, *args, **kwargs)

    monkeypatch.setattr(SeatScripts, "zone_state", slow)
    threads, start = 16, threading.Barrier(16)
    answers: list[tuple[int, bytes]] = []

    def read() -> None:
        own = app.test_client()
        start.wait()
        response = own.get(TINY_MAP)
        answers.append((response.status_code, response.get_data()))

    workers = [threading.Thread(target=read) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert len(answers) == threads
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1
    assert script_calls["zone_state"] == 1


def test_a_failed_read_is_not_kept(client, monkeypatch, redis_client, script_calls):
    from models import seats

    use_cache(monkeypatch, ReadCache(60, 100, 2**20, clock=Clock()))
    event = seats.event_key("TinyEvent")
    saved = redis_client.hgetall(event)
    redis_client.delete(event)
    assert_problem(client.get(TINY_MAP), 503, "SERVICE_UNAVAILABLE")
    redis_client.hset(event, mapping=saved)
    assert client.get(TINY_MAP).status_code == 200
    assert script_calls["zone_state"] == 2


def test_age_counts_from_the_start_of_the_load():
    """A slow load does not stretch the TTL: the answer expires TTL after the read began."""
    clock = Clock()
    cache = ReadCache(0.25, 10, 1000, clock=clock)

    def slow_load() -> bytes:
        clock.now += 0.2
        return b"old"

    assert cache.get("k", slow_load) == b"old"
    clock.now += 0.06  # 0.26 s after the load began
    assert cache.get("k", lambda: b"new") == b"new"
    assert cache.loads == 2


def test_ttl_zero_reads_every_time(client, monkeypatch, script_calls):
    use_cache(monkeypatch, ReadCache(0, 100, 2**20))
    for _ in range(3):
        assert client.get(TINY_MAP).status_code == 200
    assert script_calls["zone_state"] == 3


def test_the_settings_size_the_process_cache(monkeypatch):
    from plumbing import settings

    for name in ("SEAT_MAP_CACHE_MS", "SEAT_MAP_CACHE_ENTRIES", "SEAT_MAP_CACHE_MB"):
        monkeypatch.delenv(name, raising=False)
    defaults = settings.load()
    assert (defaults.seat_map_cache_seconds, defaults.seat_map_cache_entries) == (0.25, 1000)
    assert defaults.seat_map_cache_bytes == 64 * 2**20
    monkeypatch.setenv("SEAT_MAP_CACHE_MS", "0")  # off
    monkeypatch.setenv("SEAT_MAP_CACHE_ENTRIES", "10")
    monkeypatch.setenv("SEAT_MAP_CACHE_MB", "0.5")
    loaded = settings.load()
    monkeypatch.setattr(settings, "get", lambda: loaded)
    availability.read_cache.cache_clear()
    try:
        cache = availability.read_cache()
        assert (cache.ttl, cache.max_entries, cache.max_bytes) == (0, 10, 2**19)
    finally:
        availability.read_cache.cache_clear()
    for name, value in (("SEAT_MAP_CACHE_MS", "-1"), ("SEAT_MAP_CACHE_ENTRIES", "0")):
        monkeypatch.setenv(name, value)
        with pytest.raises(settings.SettingsError, match=name):
            settings.load()
        monkeypatch.setenv(name, "1")

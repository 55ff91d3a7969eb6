"""The relay's sweeper of expired holds: its drain loop and its shortcut on real Redis, and the
sweeper inside real relay processes (moto's SNS on a topic of the test's own): due holds nobody
touches become EXPIRED because a relay runs, two relays expire each hold once, and a Redis error
does not end the relay or the sweeping."""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sns_standin

from models import seats
from models.catalog import Catalog, EventSpec, ZoneSpec
from models.seats import keys
from models.seats.orders import OrderResult
from plumbing import settings
from relay.sweeper import Sweeper, due_events, sweep_event
from tests.support.outbox import stream_lengths
from tests.support.processes import Relay, wait_until

# their holds are on events MySQL does not know: the session relay must not publish them to the
# session queue (thousands of refused messages keep it busy for minutes)
pytestmark = pytest.mark.usefixtures("no_session_relay")

FREE = seats.Limits(seats_per_buyer=10**6, burst=10**6)


def redis_now_ms(r) -> int:
    s, us = r.time()
    return s * 1000 + us // 1000


def wait_due(r, event_id: str, results: list[OrderResult]) -> None:
    """Until Redis TIME has passed the expiry of every hold in `results`."""
    last = max(int(r.hget(keys.order_key(event_id, h.order.order_id), "exp")) for h in results)
    wait_until(lambda: redis_now_ms(r) >= last, 60, "the holds due")


def status(r, event_id: str, order_id: str) -> str:
    """The order's status as stored, read without a script (GET would expire a due hold)."""
    return json.loads(r.hget(keys.order_key(event_id, order_id), "doc"))["status"]


def held(r, event_id: str, order_id: str) -> bool:
    """HELD in its hash and still in the event's holds."""
    in_holds = r.zscore(keys.holds_key(event_id), order_id) is not None
    return status(r, event_id, order_id) == "HELD" and in_holds


# --- the drain loop and the shortcut, in this process ----------------------------------------


def small_event(r, event_id: str, rows: int = 10, columns: int = 10) -> ZoneSpec:
    zone = ZoneSpec(1, rows, columns, Decimal("10.00"), rows * columns, columns)
    event = EventSpec(event_id, "V", "e", "TEST", datetime(2027, 1, 1, tzinfo=UTC), 10**6)
    seats.scripts_for(r).initialise(event, zone)
    return zone


def hold_seats(
    r, event_id: str, zone: ZoneSpec, count: int, seconds: float, buyer: str = "b", first: int = 0
):
    """`count` one-seat holds of `seconds`, row by row from seat number `first`."""
    orders = seats.orders_for(r)
    results = [
        orders.hold(
            event_id,
            "V",
            buyer=f"{buyer}{i}",
            seats=[(zone, i // zone.columns, i % zone.columns + 1)],
            limits=FREE,
            hold_seconds=seconds,
        )
        for i in range(first, first + count)
    ]
    assert all(h.outcome == "OK" for h in results), {h.outcome for h in results}
    return results


@pytest.fixture
def counted_calls(redis_client, monkeypatch) -> list[int]:
    """What each sweep script call of this process's client returned, in order."""
    orders = seats.orders_for(redis_client)
    real = orders.sweep
    answers: list[int] = []

    def sweep(event_id: str, max_orders: int = 1000, request_id: str = "") -> int:
        answers.append(real(event_id, max_orders, request_id))
        return answers[-1]

    monkeypatch.setattr(orders, "sweep", sweep)
    return answers


@pytest.mark.parametrize("due", [50, 49])
def test_sweep_event_calls_again_while_a_call_expires_a_full_batch(
    redis_client, counted_calls, due
):
    r = redis_client
    zone = small_event(r, "SweepE")
    holds = hold_seats(r, "SweepE", zone, due, seconds=1)
    (live,) = hold_seats(r, "SweepE", zone, 1, seconds=600, buyer="keeper", first=99)
    wait_due(r, "SweepE", holds)
    assert sweep_event(r, "SweepE", batch=7) == due
    assert counted_calls == [7] * (due // 7) + [due % 7]  # 49: seven full calls, then one of 0
    assert all(status(r, "SweepE", h.order.order_id) == "EXPIRED" for h in holds)
    assert r.zrange(keys.holds_key("SweepE"), 0, -1) == [live.order.order_id]
    assert r.hgetall(keys.buyers_key("SweepE")) == {"keeper99": "1"}
    assert r.hget(keys.zone_keys("SweepE", 1)[1], "zone") == str(zone.capacity - 1)
    assert sweep_event(r, "SweepE", batch=7) == 0


def test_the_shortcut_skips_only_events_with_nothing_due(redis_client):
    r = redis_client
    for event_id in ("Due", "Later", "Empty"):
        small_event(r, event_id)
    due = hold_seats(r, "Due", small_event(r, "Due"), 1, seconds=0.2)
    hold_seats(r, "Later", small_event(r, "Later"), 1, seconds=60)
    r.set(keys.holds_key("Broken"), "not a sorted set")
    wait_due(r, "Due", due)
    found = due_events(r, ["Due", "Later", "Empty", "Broken", "Unknown"])
    assert found == ["Due", "Broken"]  # an unreadable one is left to the script to report
    assert held(r, "Due", due[0].order.order_id)  # the shortcut decides nothing


def test_a_round_that_cannot_reach_redis_backs_off_and_the_next_is_tried():
    """A refused connection (nothing listens on port 1): the round fails, the sweeper says how
    long it waits (0.1 s doubling, as the relay's loop), and does not stop."""
    unreachable = seats.connect("redis://127.0.0.1:1/0", cluster=False)
    config = replace(settings.get(), sweep_interval=0.25)
    idle = Sweeper(unreachable, config)
    assert [idle.turn() for _ in range(3)] == [0.1, 0.2, 0.4]


def test_a_redis_error_on_one_event_puts_off_that_event_alone(redis_client):
    r = redis_client
    ok_zone = small_event(r, "ZFine")
    small_event(r, "ABroken")
    holds = hold_seats(r, "ZFine", ok_zone, 3, seconds=0.2)
    r.set(keys.holds_key("ABroken"), "not a sorted set")  # its sweep script meets WRONGTYPE
    wait_due(r, "ZFine", holds)
    clock = [100.0]
    s = Sweeper(r, settings.get(), clock=lambda: clock[0])
    s._events, s._catalog_due = ["ABroken", "ZFine"], float("inf")
    assert s.sweep_round(clock[0]) == 3  # the broken event first, the fine one still swept
    assert s._put_off["ABroken"] == (1, 100.1)
    r.delete(keys.holds_key("ABroken"))
    again = hold_seats(r, "ABroken", small_event(r, "ABroken"), 1, seconds=0.1)
    wait_due(r, "ABroken", again)
    assert s.sweep_round(100.05) == 0  # still put off
    assert s.sweep_round(100.1) == 1
    assert "ABroken" not in s._put_off


# --- inside real relay processes ---------------------------------------------------------------


@pytest.fixture
def own_topic() -> tuple[dict[str, str], str]:
    """A topic and queue of the test's own for its relays (nothing reaches the session queue);
    the relay environment and the queue URL."""
    import uuid

    from aws_resources import create_messaging

    messaging = create_messaging(f"sw{uuid.uuid4().hex[:8]}")
    return messaging.env(), messaging.queue_url


def drain_queue(queue_url: str) -> list[dict]:
    """Receive and delete what the queue holds now: each message's headers and task kwargs."""
    import boto3

    sqs = boto3.client("sqs")
    found: list[dict] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return found
        for m in messages:
            envelope = json.loads(m["Body"])
            _args, kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
            found.append({"id": envelope["headers"]["id"], **kwargs})
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def expired_versions(queue_url: str, order_ids: set[str], seconds: float = 120) -> dict:
    """Order id → the versions of its EXPIRED messages, once every order in `order_ids` has one
    (a relay may publish an entry twice: the same task id, the same version)."""
    versions: dict[str, set[int]] = defaultdict(set)

    def all_there() -> bool:
        for message in drain_queue(queue_url):
            order = message.get("order")
            if order and order["status"] == "EXPIRED":
                assert message["id"] == f"{order['orderId']}:{order['version']}"
                versions[order["orderId"]].add(order["version"])
        return order_ids <= set(versions)

    wait_until(all_there, seconds, "an EXPIRED message of every order")
    return versions


def catalog_zone(event_id: str, zone_id: int) -> ZoneSpec:
    from tests.conftest import TEST_CATALOG

    catalog = Catalog.from_dict(TEST_CATALOG)
    return catalog.venues[catalog.events[event_id].venue_id].zones[zone_id]


def hold_catalog_seats(r, event_id: str, zone_id: int, count: int, seconds: float, buyer="b"):
    zone = catalog_zone(event_id, zone_id)
    venue = {"Event1": "Venue1", "Event2": "Venue1", "Event7": "Venue5"}[event_id]
    orders = seats.orders_for(r)
    results = [
        orders.hold(
            event_id,
            venue,
            buyer=f"{buyer}{i}",
            seats=[(zone, i // zone.columns, i % zone.columns + 1)],
            limits=FREE,
            hold_seconds=seconds,
        )
        for i in range(count)
    ]
    assert all(h.outcome == "OK" for h in results), {h.outcome for h in results}
    return results


def swept(relay: Relay) -> float:
    return relay.metrics().get("ticketing_holds_swept_total", 0.0)


def test_due_holds_nobody_touches_expire_because_the_relay_sweeps(
    clean_tickets, loaded_seats, own_outbox, own_topic
):
    r = loaded_seats
    env, queue_url = own_topic
    first = hold_catalog_seats(r, "Event1", 1, 12, seconds=1)
    other = hold_catalog_seats(r, "Event2", 3, 5, seconds=1, buyer="c")
    (live,) = hold_catalog_seats(r, "Event1", 2, 1, seconds=600, buyer="keeper")
    wait_due(r, "Event1", first)
    wait_due(r, "Event2", other)
    due = [("Event1", h.order.order_id) for h in first] + [
        ("Event2", h.order.order_id) for h in other
    ]
    assert all(held(r, event_id, order_id) for event_id, order_id in due)  # nothing swept yet
    with Relay.start(env) as relay:
        wait_until(
            lambda: all(status(r, e, o) == "EXPIRED" for e, o in due), 30, "the holds expired"
        )
        assert held(r, "Event1", live.order.order_id)
        assert swept(relay) == len(due)
        versions = expired_versions(queue_url, {o for _, o in due})
    assert all(v == {2} for v in versions.values())
    assert r.zrange(keys.holds_key("Event1"), 0, -1) == [live.order.order_id]
    assert r.zcard(keys.holds_key("Event2")) == 0
    assert r.hgetall(keys.buyers_key("Event1")) == {"keeper0": "1"}
    assert r.hgetall(keys.buyers_key("Event2")) == {}
    assert r.hget(keys.zone_keys("Event1", 1)[1], "zone") == "1200"
    assert r.hget(keys.zone_keys("Event2", 3)[1], "zone") == "1200"
    assert r.hget(keys.event_key("Event1"), "sold") == "1"
    assert r.hget(keys.event_key("Event2"), "sold") == "0"


def test_two_relays_expire_2000_due_holds_each_once(
    clean_tickets, loaded_seats, own_outbox, standin
):
    """Two relays sweep the same 2000 due holds at once (publishing to the bench's stand-in SNS:
    moto would take minutes for the messages): each hold is expired by one sweep call of one of
    them, and published as one EXPIRED version."""
    r = loaded_seats
    state, endpoint = standin
    started = time.monotonic()
    holds = hold_catalog_seats(r, "Event1", 1, 1000, seconds=10)
    holds += hold_catalog_seats(r, "Event1", 2, 1000, seconds=10, buyer="c")
    print(f"2000 holds made in {time.monotonic() - started:.1f}s")
    order_ids = {h.order.order_id for h in holds}
    wait_due(r, "Event1", holds)
    assert all(held(r, "Event1", o) for o in order_ids)
    assert r.hget(keys.event_key("Event1"), "sold") == "2000"
    state.reset(record=True)
    relays = [Relay.spawn({"AWS_ENDPOINT_URL_SNS": endpoint}) for _ in range(2)]
    try:
        for relay in relays:
            relay.wait_ready()
        wait_until(
            lambda: all(status(r, "Event1", o) == "EXPIRED" for o in order_ids),
            120,
            "2000 holds expired",
        )
        wait_until(lambda: stream_lengths(r) == 0, 120, "the outbox relayed")
        counts = [swept(relay) for relay in relays]
    finally:
        for relay in relays:
            relay.stop()
    print(f"two relays swept {counts}")
    assert sum(counts) == 2000  # each hold expired by one sweep call, whichever relay made it
    versions: dict[str, set[int]] = defaultdict(set)
    for text in state.recorded:
        order = sns_standin.decode_task(text)["kwargs"]["order"]
        if order["status"] == "EXPIRED":
            versions[order["orderId"]].add(order["version"])
    assert set(versions) == order_ids
    assert all(v == {2} for v in versions.values())  # one EXPIRED transition each
    assert r.zcard(keys.holds_key("Event1")) == 0
    assert r.hgetall(keys.buyers_key("Event1")) == {}
    assert r.hget(keys.event_key("Event1"), "sold") == "0"
    for zone_id in (1, 2):
        left = r.hgetall(keys.zone_keys("Event1", zone_id)[1])
        assert left.pop("zone") == "1200"
        assert set(left.values()) == {"40"}


def test_a_redis_error_in_a_sweep_does_not_end_the_relay_nor_the_sweeping(
    clean_tickets, loaded_seats, own_outbox, own_topic
):
    """Event1's holds key is not a sorted set: its sweep script fails every time. The relay lives
    on, sweeps Event7 (after Event1 in each round) and relays; once the key is repaired, Event1's
    due holds are swept too."""
    r = loaded_seats
    env, queue_url = own_topic
    later = hold_catalog_seats(r, "Event7", 1, 4, seconds=1)
    r.set(keys.holds_key("Event1"), "not a sorted set")
    wait_due(r, "Event7", later)
    with Relay.start({**env, "SWEEP_INTERVAL_MS": "100"}) as relay:
        wait_until(lambda: relay.count("WRONGTYPE") >= 2, 30, "failed sweeps of Event1")
        wait_until(
            lambda: all(status(r, "Event7", h.order.order_id) == "EXPIRED" for h in later),
            30,
            "Event7 swept",
        )
        expired_versions(queue_url, {h.order.order_id for h in later})  # it relays still
        assert relay.metrics()["ticketing_sweep_failures_total"] >= 2
        r.delete(keys.holds_key("Event1"))
        repaired = hold_catalog_seats(r, "Event1", 1, 3, seconds=1)
        wait_until(
            lambda: all(status(r, "Event1", h.order.order_id) == "EXPIRED" for h in repaired),
            30,
            "Event1 swept again",
        )
        assert relay.proc.poll() is None
    assert relay.proc.returncode == 0

"""The box office's order scripts on real Redis: holds, best available, confirm, cancel, refund,
expiry and sweep, each one atomic call with its outbox event."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from redis.cluster import key_slot

from models import seats
from models.catalog import EventSpec, ZoneSpec
from models.seats import keys
from models.seats.orders import OrderResult, OrderScripts
from tests.support.factories import sell

# they read the outbox: the session relay (started by earlier tests) must not drain it
pytestmark = pytest.mark.usefixtures("no_session_relay")

EVENT = "E"
VENUE = "V"
FREE = seats.Limits(seats_per_buyer=10**6, burst=10**6)


def make_zone(rows: int = 3, columns: int = 8, zone_id: int = 1) -> ZoneSpec:
    return ZoneSpec(zone_id, rows, columns, Decimal("10.00"), rows * columns, columns)


def setup(r, zone: ZoneSpec) -> OrderScripts:
    event = EventSpec(EVENT, VENUE, "e", "TEST", datetime(2027, 1, 1, tzinfo=UTC), 10**6)
    seats.scripts_for(r).initialise(event, zone)
    return OrderScripts(r)


def outbox(r) -> list[dict[str, str]]:
    return [f for _, f in r.xrange(keys.outbox_stream(keys.bucket(EVENT)))]


def order_events(r, order_id: str) -> list[dict]:
    found = [json.loads(f["order"]) for f in outbox(r) if f["kind"] == "order"]
    return [o for o in found if o["orderId"] == order_id]


def hold(o: OrderScripts, cells, buyer="b1", limits=FREE, **kw) -> OrderResult:
    return o.hold(EVENT, VENUE, buyer=buyer, seats=cells, limits=limits, **kw)


def best(o: OrderScripts, zone, n, buyer="b1", limits=FREE, **kw) -> OrderResult:
    return o.hold(EVENT, VENUE, buyer=buyer, best=(zone, n), limits=limits, **kw)


def pay(o: OrderScripts, res: OrderResult, payment="p1", **kw) -> OrderResult:
    kw.setdefault("amount", res.order.total)
    kw.setdefault("currency", "USD")
    kw.setdefault("limits", FREE)
    return o.confirm(EVENT, res.order.order_id, payment_id=payment, **kw)


def placed(res: OrderResult) -> list[tuple[str, int]]:
    return [(s.row, int(s.column)) for s in res.order.seats]


def sell_row(r, zone, row_index, columns) -> None:
    for c in columns:
        assert sell(seats.scripts_for(r), EVENT, zone, row_index, c) == "OK"


def redis_now_ms(r) -> int:
    s, us = r.time()
    return s * 1000 + us // 1000


def wait_until_expired(r, res: OrderResult) -> None:
    exp = int(r.hget(keys.order_key(EVENT, res.order.order_id), "exp"))
    while redis_now_ms(r) < exp:
        time.sleep(0.005)


def test_every_key_of_an_order_is_in_the_event_slot_and_named_as_the_lua_names_it():
    prefix = keys.event_prefix(EVENT)
    assert prefix + "zone:1:sold" == keys.zone_keys(EVENT, 1)[0]
    assert prefix + "zone:1:left" == keys.zone_keys(EVENT, 1)[1]
    assert prefix + "zone:1:owner" == keys.owners_key(EVENT, 1)
    assert prefix + "zone:1:runs" == keys.runs_key(EVENT, 1)
    assert prefix + "event" == keys.event_key(EVENT)
    found = [
        keys.event_key(EVENT),
        keys.held_key(EVENT, 1),
        keys.holder_key(EVENT, 2),
        keys.front_key(EVENT, 2),
        keys.runs_key(EVENT, 2),
        keys.order_key(EVENT, "o"),
        keys.holds_key(EVENT),
        keys.payments_key(EVENT),
        keys.buyers_key(EVENT),
        keys.outbox_stream(keys.bucket(EVENT)),
    ]
    assert len({key_slot(k.encode()) for k in found}) == 1


def test_an_order_id_names_its_events_slot_and_the_hold_records_the_event(redis_client):
    """Routes that name only the order (`/orders/{id}`) find its event with one GET in the
    slot its id names; the hold writes that lookup in the same call."""
    r, z = redis_client, make_zone()
    o = setup(r, z)
    for event in ("E", "Event1", "x" * 64, "é-not-an-id-but-hashable"):
        oid = keys.new_order_id(event)
        assert keys.order_bucket(oid) == keys.bucket(event)
        lookup = keys.order_event_key(oid)
        assert key_slot(lookup.encode()) == key_slot(keys.event_key(event).encode())
    res = hold(o, [(z, 0, 1)])
    assert o.event_of(res.order.order_id) == EVENT
    assert r.ttl(keys.order_event_key(res.order.order_id)) == -1
    for not_an_order in ("", "Order-1", res.order.order_id.upper(), res.order.order_id + "0"):
        assert keys.order_event_key(not_an_order) is None
        assert o.event_of(not_an_order) is None
    assert o.event_of(keys.new_order_id(EVENT)) is None  # well formed, never held


def test_the_lua_clock_formats_times_as_python_does(redis_client):
    """createdOn/expiresAt are written by the scripts from Redis TIME: ISO-8601 UTC with ms."""
    from models.seats.lua_lib import ORDER_LIB_LUA

    lua = (
        "local EVENT, BUYERS, HOLDS, OUTBOX, PREFIX, RID = '', '', '', '', '', ''\n"
        + ORDER_LIB_LUA
        + "local out = {}\nfor i = 1, #ARGV do out[i] = iso(tonumber(ARGV[i])) end\nreturn out"
    )
    rng = random.Random(3)
    moments = [0, 951782400000, 1709164800123, 4102444799999] + [
        rng.randrange(0, 4102444800000) for _ in range(500)
    ]
    expected = [
        (datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
        for ms in moments
    ]
    assert redis_client.eval(lua, 0, *moments) == expected


# --- holds ----------------------------------------------------------------------------------


def test_hold_stores_the_order_marks_seats_held_and_appends_its_snapshot(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    res = hold(o, [(z, 0, 2), (z, 1, 5)], hold_seconds=60)
    assert res.outcome == "OK"
    order = res.order
    assert (order.status, order.version, order.total, order.buyer) == ("HELD", 1, "20.00", "b1")
    assert [(s.row, s.column, s.price) for s in order.seats] == [
        ("A", "2", "10.00"),
        ("B", "5", "10.00"),
    ]
    created = datetime.fromisoformat(order.created_on)
    assert (datetime.fromisoformat(order.expires_at) - created).total_seconds() == 60
    assert o.zone_map(EVENT, z) == ["0h000000", "0000h000", "00000000"]
    assert r.hget(keys.buyers_key(EVENT), "b1") == "2"
    assert r.hget(keys.zone_keys(EVENT, 1)[1], "zone") == "22"
    assert order_events(r, order.order_id) == [order.raw]
    # a held seat is taken for the single-seat purchase
    assert sell(seats.scripts_for(r), EVENT, z, 0, 2) == "SEAT_TAKEN"
    # the same order id again changes nothing
    again = hold(o, [(z, 2, 1)], order_id=order.order_id)
    assert (again.outcome, again.order.version) == ("EXISTS", 1)


def test_a_hold_is_all_seats_or_none_and_names_the_taken_ones(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    assert hold(o, [(z, 0, 1), (z, 0, 3)]).outcome == "OK"
    before = len(outbox(r))
    res = hold(o, [(z, 0, 2), (z, 0, 3), (z, 0, 1)], buyer="b2")
    assert res.outcome == "SEAT_TAKEN"
    assert res.taken == ((1, "A", "3"), (1, "A", "1"))
    assert o.zone_map(EVENT, z)[0] == "h0h00000"  # A2 stayed free
    assert len(outbox(r)) == before
    assert r.hget(keys.buyers_key(EVENT), "b2") is None


def test_two_holds_sharing_a_seat_concurrently_exactly_one_holds(redis_client):
    """40 rounds of two buyers wanting A1-A2 and A2-A3 at the same instant."""
    r, z = redis_client, make_zone(rows=40, columns=3)
    o = setup(r, z)
    for row in range(40):
        barrier = threading.Barrier(2)
        results: dict[str, OrderResult] = {}

        def go(buyer, cells, results=results, barrier=barrier):
            barrier.wait()
            results[buyer] = hold(o, cells, buyer=buyer)

        threads = [
            threading.Thread(target=go, args=("x", [(z, row, 1), (z, row, 2)])),
            threading.Thread(target=go, args=("y", [(z, row, 2), (z, row, 3)])),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes = sorted(res.outcome for res in results.values())
        assert outcomes == ["OK", "SEAT_TAKEN"], outcomes
        loser = next(res for res in results.values() if res.outcome == "SEAT_TAKEN")
        assert (1, z_row(row), "2") in loser.taken
        assert o.zone_map(EVENT, z)[row].count("h") == 2
    assert Counter(f["kind"] for f in outbox(r)) == {"order": 40}


def late_payments(r) -> list[dict]:
    """The LATE_PAYMENT_REJECTED entries' payment documents (the projection's input)."""
    return [json.loads(f["payment"]) for f in outbox(r) if f["kind"] == "late_payment_rejected"]


def z_row(row_index: int) -> str:
    from models.catalog import row_label

    return row_label(row_index)


# --- best available -------------------------------------------------------------------------


def test_best_available_takes_the_centre_of_the_front_row(redis_client):
    r, z = redis_client, make_zone(rows=3, columns=9)
    o = setup(r, z)
    assert placed(best(o, z, 3)) == [("A", 4), ("A", 5), ("A", 6)]


def test_best_available_goes_to_the_first_row_that_has_the_block(redis_client):
    r, z = redis_client, make_zone(rows=3, columns=8)
    o = setup(r, z)
    sell_row(r, z, 0, [3, 6])  # row A: runs of 2, 2 and 2
    assert placed(best(o, z, 3)) == [("B", 3), ("B", 4), ("B", 5)]
    assert placed(best(o, z, 2)) == [("A", 4), ("A", 5)]


def test_best_available_avoids_a_single_orphan_seat_when_the_row_allows(redis_client):
    """6 of 8: the centred block (2-7) would leave seats 1 and 8 alone; 1-6 leaves none."""
    r, z = redis_client, make_zone(rows=2, columns=8)
    o = setup(r, z)
    assert placed(best(o, z, 6)) == [("A", c) for c in range(1, 7)]


def test_best_available_leaves_an_orphan_only_when_every_placement_in_the_row_does(
    redis_client,
):
    """Row A (9 seats, seat 5 sold): every block of 3 leaves one seat alone; the front row
    still wins over an empty row B, at the centre-most such block."""
    r, z = redis_client, make_zone(rows=2, columns=9)
    o = setup(r, z)
    sell_row(r, z, 0, [5])
    assert placed(best(o, z, 3)) == [("A", 2), ("A", 3), ("A", 4)]


def test_best_available_without_a_block_is_not_enough_adjacent_seats(redis_client):
    r, z = redis_client, make_zone(rows=2, columns=6)
    o = setup(r, z)
    sell_row(r, z, 0, [2, 4, 6])
    sell_row(r, z, 1, [1, 3, 5])
    before = len(outbox(r))
    res = best(o, z, 2)
    assert res.outcome == "NOT_ENOUGH_ADJACENT_SEATS"
    assert len(outbox(r)) == before
    assert r.hget(keys.buyers_key(EVENT), "b1") is None
    assert best(o, z, 7).outcome == "ZONE_FULL"  # more than the zone has left


def test_best_available_skips_full_front_rows_and_comes_back_to_a_freed_seat(redis_client):
    """The scan for N starts at the first row that may have N adjacent free seats; a cancel,
    an expiry or a refund in a row before it moves it back."""
    r, z = redis_client, make_zone(rows=4, columns=4)
    o = setup(r, z)
    a = best(o, z, 4)
    assert placed(best(o, z, 4)) == [("B", c) for c in range(1, 5)]
    sell_row(r, z, 2, [1, 2, 3, 4])  # row C sold seat by seat
    assert placed(best(o, z, 2)) == [("D", 1), ("D", 2)]
    assert r.hgetall(keys.front_key(EVENT, 1)) == {"4": "1", "2": "3"}
    assert o.cancel(EVENT, a.order.order_id, caller="b1").outcome == "OK"
    assert r.hgetall(keys.front_key(EVENT, 1)) == {"4": "0", "2": "0"}
    assert placed(best(o, z, 3)) == [("A", 1), ("A", 2), ("A", 3)]
    assert placed(best(o, z, 2)) == [("D", 3), ("D", 4)]
    assert best(o, z, 1).outcome == "OK"  # A4
    assert best(o, z, 1).outcome == "ZONE_FULL"


def test_best_available_skips_rows_it_found_without_the_block_until_one_of_their_seats_is_freed(
    redis_client,
):
    """A row searched without the block keeps its longest free run; a later scan skips it for
    larger blocks without reading its seats, until a cancel (or an expiry, a refund) frees a
    seat of it."""
    r, z = redis_client, make_zone(rows=2, columns=5)
    o = setup(r, z)
    middle = hold(o, [(z, 0, 3)])  # row A: runs of 2 and 2
    assert placed(best(o, z, 3)) == [("B", 1), ("B", 2), ("B", 3)]
    assert r.hgetall(keys.runs_key(EVENT, 1)) == {"A": "2"}
    assert placed(best(o, z, 2)) == [("A", 1), ("A", 2)]  # a run of 2 is enough for 2
    assert r.hdel(keys.front_key(EVENT, 1), "3") == 1  # a scan for 3 from row A again
    assert best(o, z, 3).outcome == "NOT_ENOUGH_ADJACENT_SEATS"
    assert o.cancel(EVENT, middle.order.order_id, caller="b1").outcome == "OK"
    assert r.hgetall(keys.runs_key(EVENT, 1)) == {}
    assert placed(best(o, z, 3)) == [("A", 3), ("A", 4), ("A", 5)]
    r.hset(keys.runs_key(EVENT, 1), "A", 0)  # kept before a rebuild …
    event = EventSpec(EVENT, VENUE, "e", "TEST", datetime(2027, 1, 1, tzinfo=UTC), 10**6)
    seats.rebuild_event(r, event, {1: z}, {})  # … which frees every seat and forgets it
    assert r.exists(keys.runs_key(EVENT, 1)) == 0
    assert placed(best(o, z, 5)) == [("A", c) for c in range(1, 6)]


def free_runs(row: str) -> list[int]:
    return [len(run) for run in row.split("h") if run] if row else []


def test_300_concurrent_best_available_holds_never_share_a_seat(redis_client):
    """300 orders of 2-6 seats from 8 threads in a 15 × 30 zone: no seat in two orders, every
    block adjacent in one row, counters agree with the map, and a refusal is final (no row has
    the block a refused request wanted). Orphans compared with the same requests one by one."""
    r, z = redis_client, make_zone(rows=15, columns=30)
    o = setup(r, z)
    rng = random.Random(7)
    wanted = [rng.randint(2, 6) for _ in range(300)]
    results: list[tuple[int, OrderResult]] = []
    lock = threading.Lock()
    work = iter(enumerate(wanted))

    def worker():
        while True:
            with lock:
                item = next(work, None)
            if item is None:
                return
            i, n = item
            res = best(o, z, n, buyer=f"buyer-{i}")
            with lock:
                results.append((n, res))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    owner: dict[tuple[str, int], str] = {}
    for n, res in results:
        if res.outcome != "OK":
            continue
        cells = placed(res)
        assert len(cells) == n
        assert len({row for row, _ in cells}) == 1
        columns = [c for _, c in cells]
        assert columns == list(range(columns[0], columns[0] + n))
        for cell in cells:
            assert cell not in owner, f"{cell} in two orders"
            owner[cell] = res.order.order_id
    grid = o.zone_map(EVENT, z)
    assert sum(row.count("h") for row in grid) == len(owner)
    assert int(r.hget(keys.zone_keys(EVENT, 1)[1], "zone")) == 450 - len(owner)
    longest = max(max(free_runs(row), default=0) for row in grid)
    refused = [(n, res.outcome) for n, res in results if res.outcome != "OK"]
    assert {code for _, code in refused} <= {"NOT_ENOUGH_ADJACENT_SEATS", "ZONE_FULL"}
    for n, code in refused:
        if code == "NOT_ENOUGH_ADJACENT_SEATS":
            assert longest < n
    orphans = sum(free_runs(row).count(1) for row in grid)

    r.flushdb()
    o = setup(r, z)
    for i, n in enumerate(wanted):
        best(o, z, n, buyer=f"buyer-{i}")
    serial = o.zone_map(EVENT, z)
    serial_orphans = sum(free_runs(row).count(1) for row in serial)
    print(
        f"best available: {len(owner)} of 450 seats held, {len(refused)} refused; single "
        f"orphans concurrent {orphans}, one by one {serial_orphans}"
    )
    assert orphans <= serial_orphans + 15  # interleaving may cost at most one per row


# --- confirm, cancel, refund ----------------------------------------------------------------


def test_confirm_pays_a_hold_once_and_compares_amounts_by_value(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    res = hold(o, [(z, 0, 1), (z, 0, 2)])
    assert pay(o, res, amount="20.001").outcome == "AMOUNT_MISMATCH"
    assert pay(o, res, currency="EUR").outcome == "AMOUNT_MISMATCH"
    paid = pay(o, res, amount="20.0")
    assert (paid.outcome, paid.order.status, paid.order.version) == ("OK", "PAID", 2)
    assert paid.order.payment_id == "p1"
    assert o.zone_map(EVENT, z)[0] == "11000000"
    assert r.hget(keys.holder_key(EVENT, 1), 0) is None
    again = pay(o, res, amount="20")
    assert (again.outcome, again.order.version) == ("NO_CHANGE", 2)
    assert pay(o, res, payment="p2").outcome == "ORDER_NOT_PAYABLE"
    other = hold(o, [(z, 1, 1)])
    assert pay(o, other, payment="p1").outcome == "ORDER_NOT_PAYABLE"  # p1 paid another order
    assert [e["version"] for e in order_events(r, res.order.order_id)] == [1, 2]


STATES = ["HELD", "PAID", "EXPIRED", "CANCELLED", "REFUNDED"]
TABLE = {
    "confirm": ["OK", "NO_CHANGE", "OK", "ORDER_NOT_PAYABLE", "ORDER_NOT_PAYABLE"],
    "confirm-other-payment": [
        "OK",
        "ORDER_NOT_PAYABLE",
        "OK",
        "ORDER_NOT_PAYABLE",
        "ORDER_NOT_PAYABLE",
    ],
    "cancel": ["OK", "ORDER_PAID", "ORDER_CLOSED", "NO_CHANGE", "ORDER_CLOSED"],
    "refund": ["ORDER_NOT_PAID", "OK", "ORDER_NOT_PAID", "ORDER_NOT_PAID", "NO_CHANGE"],
}


def order_in(r, o: OrderScripts, z, state: str) -> OrderResult:
    res = hold(o, [(z, 0, 1), (z, 0, 2)], hold_seconds=0.05 if state == "EXPIRED" else 60)
    if state in ("PAID", "REFUNDED"):
        assert pay(o, res).outcome == "OK"
    if state == "REFUNDED":
        assert o.refund(EVENT, res.order.order_id, payment_id="p1").outcome == "OK"
    if state == "CANCELLED":
        assert o.cancel(EVENT, res.order.order_id, caller="b1").outcome == "OK"
    if state == "EXPIRED":
        wait_until_expired(r, res)
    return res


@pytest.mark.parametrize("action", sorted(TABLE))
@pytest.mark.parametrize("state", STATES)
def test_every_action_in_every_state_answers_as_the_contract_table(redis_client, state, action):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    res = order_in(r, o, z, state)
    oid = res.order.order_id
    before = o.get(EVENT, oid).order  # (an expired hold becomes EXPIRED here)
    assert before.status == state
    if action == "confirm":
        got = pay(o, res)
    elif action == "confirm-other-payment":
        got = pay(o, res, payment="p9")
    elif action == "cancel":
        got = o.cancel(EVENT, oid, caller="b1")
    else:
        got = o.refund(EVENT, oid, payment_id="p1")
    expected = TABLE[action][STATES.index(state)]
    assert got.outcome == expected
    after = o.get(EVENT, oid).order
    changed = expected == "OK"
    assert (after.version == before.version + 1) == changed
    assert len(order_events(r, oid)) == after.version  # one event per transition, no more


def test_cancel_frees_seats_at_once_and_only_the_owner_or_an_operator_may(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    res = hold(o, [(z, 0, 1), (z, 0, 2)])
    oid = res.order.order_id
    assert o.cancel(EVENT, oid, caller="b2").outcome == "ORDER_NOT_FOUND"
    assert o.cancel(EVENT, "nope", caller="b1").outcome == "ORDER_NOT_FOUND"
    done = o.cancel(EVENT, oid, caller="ops", operator=True)
    assert (done.outcome, done.order.status, done.order.version) == ("OK", "CANCELLED", 2)
    assert o.zone_map(EVENT, z)[0] == "00000000"
    assert r.hget(keys.buyers_key(EVENT), "b1") is None
    assert r.zcard(keys.holds_key(EVENT)) == 0
    assert hold(o, [(z, 0, 1)], buyer="b2").outcome == "OK"


def test_refund_frees_seats_that_sell_again(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    res = hold(o, [(z, 0, 1), (z, 0, 2)])
    oid = res.order.order_id
    assert pay(o, res).outcome == "OK"
    assert o.refund(EVENT, oid, payment_id="p2").outcome == "ORDER_NOT_PAID"
    done = o.refund(EVENT, oid, payment_id="p1")
    assert (done.outcome, done.order.status, done.order.version) == ("OK", "REFUNDED", 3)
    assert o.zone_map(EVENT, z)[0] == "00000000"
    assert r.hget(keys.buyers_key(EVENT), "b1") is None
    assert r.hget(keys.zone_keys(EVENT, 1)[1], "zone") == "24"
    assert sell(seats.scripts_for(r), EVENT, z, 0, 1) == "OK"
    again = hold(o, [(z, 0, 2)], buyer="b2")
    assert again.outcome == "OK"
    assert pay(o, again, payment="p3").outcome == "OK"
    assert o.zone_map(EVENT, z)[0] == "11000000"
    assert o.refund(EVENT, oid, payment_id=None).outcome == "NO_CHANGE"


def test_confirm_racing_cancel_has_exactly_one_outcome(redis_client):
    r, z = redis_client, make_zone(rows=30, columns=2)
    o = setup(r, z)
    seen = Counter()
    for row in range(30):
        res = hold(o, [(z, row, 1), (z, row, 2)])
        oid = res.order.order_id
        barrier = threading.Barrier(2)
        out: dict[str, str] = {}

        def do_pay(res=res, barrier=barrier, out=out, row=row):
            barrier.wait()
            out["confirm"] = pay(o, res, payment=f"p{row}").outcome

        def do_cancel(oid=oid, barrier=barrier, out=out):
            barrier.wait()
            out["cancel"] = o.cancel(EVENT, oid, caller="b1").outcome

        threads = [threading.Thread(target=do_pay), threading.Thread(target=do_cancel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = o.get(EVENT, oid).order
        if final.status == "PAID":
            assert out == {"confirm": "OK", "cancel": "ORDER_PAID"}
            assert o.zone_map(EVENT, z)[row] == "11"
        else:
            assert final.status == "CANCELLED"
            assert out == {"confirm": "ORDER_NOT_PAYABLE", "cancel": "OK"}
            assert o.zone_map(EVENT, z)[row] == "00"
        assert final.version == 2
        assert len(order_events(r, oid)) == 2
        seen[final.status] += 1
    print(f"confirm racing cancel: {dict(seen)}")


def test_confirm_racing_expiry_at_the_instant_has_exactly_one_outcome(redis_client):
    """At the hold's expiresAt, the payment and another buyer's hold of the same seats race:
    either the payment lands first (PAID v2, the rival refused), or the expiry does, and then
    the rival gets the seats (the payment: HOLD_EXPIRED + LATE_PAYMENT_REJECTED) or the late
    payment takes them again (PAID v3, the rival refused). Never both, never neither."""
    r, z = redis_client, make_zone(rows=40, columns=2)
    o = setup(r, z)
    seen = Counter()
    for row in range(40):
        res = hold(o, [(z, row, 1), (z, row, 2)], hold_seconds=0.03)
        oid = res.order.order_id
        exp = int(r.hget(keys.order_key(EVENT, oid), "exp"))
        out: dict[str, OrderResult] = {}
        start = threading.Event()

        def do_pay(res=res, out=out, start=start, row=row):
            start.wait()
            out["confirm"] = pay(o, res, payment=f"p{row}")

        def do_rival(row=row, out=out, start=start):
            start.wait()
            out["rival"] = hold(o, [(z, row, 1), (z, row, 2)], buyer="b2")

        threads = [threading.Thread(target=do_pay), threading.Thread(target=do_rival)]
        for t in threads:
            t.start()
        while redis_now_ms(r) < exp - 1 + (row % 3):  # just before, at, just after the instant
            pass
        start.set()
        for t in threads:
            t.join()
        confirm, rival = out["confirm"], out["rival"]
        final = o.get(EVENT, oid).order
        versions = [e["version"] for e in order_events(r, oid)]
        late = [f for f in late_payments(r) if f["paymentId"] == f"p{row}"]
        if confirm.outcome == "OK":
            assert rival.outcome == "SEAT_TAKEN"
            assert final.status == "PAID"
            assert final.version in (2, 3)  # 3: expired first, then taken again
            paid_before_expiry = final.raw["paidOn"] < final.expires_at  # ISO, same format
            assert paid_before_expiry == (final.version == 2)
            assert versions == list(range(1, final.version + 1))
            assert not late
            seen[f"paid v{final.version}"] += 1
        else:
            assert confirm.outcome == "HOLD_EXPIRED"
            assert rival.outcome == "OK"
            assert (final.status, final.version, versions) == ("EXPIRED", 2, [1, 2])
            assert len(late) == 1
            seen["rival"] += 1
        assert o.zone_map(EVENT, z)[row] in ("11", "hh")
    print(f"confirm racing expiry: {dict(seen)}")


def test_a_late_payment_takes_free_seats_again_or_is_rejected_once(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    # the seats are still free: taken again, PAID at version 3 (HELD, EXPIRED, PAID)
    first = hold(o, [(z, 0, 1), (z, 0, 2)], hold_seconds=0.02)
    wait_until_expired(r, first)
    late = pay(o, first)
    assert (late.outcome, late.order.status, late.order.version) == ("OK", "PAID", 3)
    assert [e["status"] for e in order_events(r, first.order.order_id)] == [
        "HELD",
        "EXPIRED",
        "PAID",
    ]
    assert o.zone_map(EVENT, z)[0] == "11000000"
    assert r.hget(keys.buyers_key(EVENT), "b1") == "2"
    # a seat went to someone else: HOLD_EXPIRED and one LATE_PAYMENT_REJECTED event
    second = hold(o, [(z, 1, 1), (z, 1, 2)], hold_seconds=0.02)
    wait_until_expired(r, second)
    assert hold(o, [(z, 1, 2)], buyer="b2").outcome == "OK"
    rejected = pay(o, second, payment="p2")
    assert (rejected.outcome, rejected.order.status) == ("HOLD_EXPIRED", "EXPIRED")
    assert pay(o, second, payment="p2").outcome == "HOLD_EXPIRED"  # a repeat: no new event
    entries = late_payments(r)
    assert len(entries) == 1
    assert entries[0]["paymentId"] == "p2"
    assert (entries[0]["amount"], entries[0]["currency"]) == ("20", "USD")
    assert entries[0]["orderId"] == second.order.order_id
    assert entries[0]["eventId"] == EVENT
    assert entries[0]["reason"] == "SEAT_TAKEN"
    assert entries[0]["rejectedOn"].endswith("Z")
    assert o.zone_map(EVENT, z)[1] == "0h000000"  # the rejected payment took nothing
    third = hold(o, [(z, 2, 1)])
    assert pay(o, third, payment="p2").outcome == "ORDER_NOT_PAYABLE"  # p2 is second's


# --- expiry -----------------------------------------------------------------------------------


def test_an_expired_hold_is_free_for_everyone_before_any_sweep(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    a = hold(o, [(z, 0, 1), (z, 0, 2)], hold_seconds=0.02)
    b = best(o, z, 8, buyer="b3", hold_seconds=0.02)
    assert b.outcome == "OK"
    wait_until_expired(r, b)
    assert sell(seats.scripts_for(r), EVENT, z, 0, 1) == "OK"  # the single-seat purchase
    assert [e["status"] for e in order_events(r, a.order.order_id)] == ["HELD", "EXPIRED"]
    assert [e["status"] for e in order_events(r, b.order.order_id)] == ["HELD", "EXPIRED"]
    assert placed(best(o, z, 8, buyer="b4")) == [("B", c) for c in range(1, 9)]
    assert o.sweep(EVENT) == 0
    assert r.hget(keys.buyers_key(EVENT), "b1") is None


def test_two_concurrent_sweepers_free_each_expired_hold_once(redis_client):
    r, z = redis_client, make_zone(rows=101, columns=4)
    o = setup(r, z)
    orders = [best(o, z, 2, buyer=f"b{i}", hold_seconds=1.5) for i in range(200)]
    assert all(res.outcome == "OK" for res in orders)
    live = hold(o, [(z, 100, 4)], buyer="keeper", hold_seconds=60)
    assert live.outcome == "OK"
    wait_until_expired(r, orders[-1])
    counts: list[int] = []

    def sweeper():
        done = 0
        while n := o.sweep(EVENT, max_orders=7):
            done += n
        counts.append(done)

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 200
    print(f"two sweepers freed {counts}")
    expired = Counter(
        e["orderId"]
        for e in (json.loads(f["order"]) for f in outbox(r) if f["kind"] == "order")
        if e["status"] == "EXPIRED"
    )
    assert set(expired.values()) == {1} and len(expired) == 200
    assert r.hget(keys.zone_keys(EVENT, 1)[1], "zone") == str(404 - 1)
    assert r.hgetall(keys.buyers_key(EVENT)) == {"keeper": "1"}
    assert r.zrange(keys.holds_key(EVENT), 0, -1) == [live.order.order_id]
    assert "".join(o.zone_map(EVENT, z)) == "0" * 403 + "h"


# --- limits -----------------------------------------------------------------------------------


def test_the_buyer_limit_counts_held_and_paid_seats_across_orders(redis_client):
    r, z = redis_client, make_zone(rows=3, columns=8)
    o = setup(r, z)
    limits = seats.Limits(seats_per_buyer=8, burst=10**6)
    first = best(o, z, 5, limits=limits)
    assert first.outcome == "OK"
    assert best(o, z, 4, limits=limits).outcome == "BUYER_LIMIT_REACHED"
    assert pay(o, first, limits=limits).outcome == "OK"  # paid seats still count
    short = best(o, z, 3, limits=limits, hold_seconds=0.02)
    assert short.outcome == "OK"
    assert sell(seats.scripts_for(r), EVENT, z, 2, 8, buyer="b1", limits=limits) == (
        "BUYER_LIMIT_REACHED"
    )
    wait_until_expired(r, short)  # an expired hold stops counting at once, swept or not
    assert best(o, z, 3, limits=limits).outcome == "OK"
    assert r.hget(keys.buyers_key(EVENT), "b1") == "8"
    assert best(o, z, 1, limits=limits).outcome == "BUYER_LIMIT_REACHED"
    assert best(o, z, 1, buyer="b2", limits=limits).outcome == "OK"


def test_holds_are_rate_limited_per_buyer(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    limits = seats.Limits(seats_per_buyer=100, burst=2, window_seconds=10)
    assert best(o, z, 1, limits=limits).outcome == "OK"
    assert best(o, z, 1, limits=limits).outcome == "OK"
    limited = best(o, z, 1, limits=limits)
    assert limited.outcome == "RATE_LIMITED" and limited.wait_ms > 0


def test_the_outbox_holds_one_entry_per_transition_and_none_for_refusals(redis_client):
    r, z = redis_client, make_zone()
    o = setup(r, z)
    a = hold(o, [(z, 0, 1)])
    hold(o, [(z, 0, 1)], buyer="b2")  # refused
    pay(o, a)
    pay(o, a)  # no change
    o.cancel(EVENT, a.order.order_id, caller="b1")  # refused
    o.refund(EVENT, a.order.order_id, payment_id="p1")
    o.refund(EVENT, a.order.order_id, payment_id="p1")  # no change
    b = hold(o, [(z, 1, 1)])
    o.cancel(EVENT, b.order.order_id, caller="b1")
    o.cancel(EVENT, b.order.order_id, caller="b1")  # no change
    entries = outbox(r)
    assert {f["kind"] for f in entries} == {"order"}
    got = [(json.loads(f["order"])["orderId"], json.loads(f["order"])["status"]) for f in entries]
    assert got == [
        (a.order.order_id, "HELD"),
        (a.order.order_id, "PAID"),
        (a.order.order_id, "REFUNDED"),
        (b.order.order_id, "HELD"),
        (b.order.order_id, "CANCELLED"),
    ]
    assert [json.loads(f["order"])["version"] for f in entries] == [1, 2, 3, 1, 2]

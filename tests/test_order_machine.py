"""A Hypothesis state machine over the order scripts on real Redis: hold (chosen or best,
expiring at once or not), confirm, cancel, refund, get, sweep and the single-seat purchase (an
order of one seat, paid at once, that the other actions meet like any order), with the seat
state's invariants checked after every step; and a variant whose whole outbox is then delivered
to MySQL shuffled and repeated, after which MySQL must hold what Redis holds."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select, text

import models
from models import seats
from models.catalog import Catalog, EventSpec, ZoneSpec, row_index, row_label, upsert
from models.seats import keys
from models.seats.orders import OrderResult, OrderScripts
from models.tables import LatePayment, Order, Ticket
from tests.support.factories import clear_tickets, ticket_message

# they read the outbox: the session relay (started by earlier tests) must not drain it
pytestmark = pytest.mark.usefixtures("no_session_relay")

EVENT, VENUE = "M", "V"
ZONES = {1: ZoneSpec(1, 3, 5, Decimal("10.00"), 15, 5), 2: ZoneSpec(2, 2, 4, Decimal("7.50"), 8, 4)}
BUYERS = ["b1", "b2", "b3", "b4"]
LIMIT = 8
LIMITS = seats.Limits(seats_per_buyer=LIMIT, burst=10**6)
LIVE = ("HELD", "PAID")
SEEN: Counter[str] = Counter()  # action, state before, outcome: what the run exercised

cells = st.lists(
    st.sampled_from(
        [
            (z, r, c)
            for z, zs in ZONES.items()
            for r in range(zs.rows)
            for c in range(1, zs.columns + 1)
        ]
    ),
    min_size=1,
    max_size=4,
    unique=True,
)


class OrderMachine(RuleBasedStateMachine):
    redis = None

    def __init__(self) -> None:
        super().__init__()
        r = self.redis
        r.flushdb()
        event = EventSpec(EVENT, VENUE, "m", "TEST", datetime(2027, 1, 1, tzinfo=UTC), 23)
        for zone in ZONES.values():
            seats.scripts_for(r).initialise(event, zone)
        self.o = OrderScripts(r)
        self.orders: list[OrderResult] = []  # held ones and single-seat sales
        self.payments = 0

    def _pick(self, index: int) -> OrderResult | None:
        """One of the newest orders (so that actions meet an order again, in any state)."""
        return self.orders[-1 - index % min(3, len(self.orders))] if self.orders else None

    def _status(self, order_id: str) -> tuple[str, int]:
        doc = json.loads(self.redis.hget(keys.order_key(EVENT, order_id), "doc"))
        return doc["status"], doc["version"]

    @rule(buyer=st.sampled_from(BUYERS), chosen=cells, short=st.booleans())
    def hold(self, buyer, chosen, short):
        res = self.o.hold(
            EVENT,
            VENUE,
            buyer=buyer,
            seats=[(ZONES[z], r, c) for z, r, c in chosen],
            limits=LIMITS,
            hold_seconds=0 if short else 600,
        )
        assert res.outcome in ("OK", "SEAT_TAKEN", "BUYER_LIMIT_REACHED", "EVENT_SOLD_OUT")
        if res.outcome == "OK":
            self.orders.append(res)

    @rule(
        buyer=st.sampled_from(BUYERS),
        zone=st.sampled_from([1, 2]),
        n=st.integers(1, 5),
        short=st.booleans(),
    )
    def hold_best(self, buyer, zone, n, short):
        res = self.o.hold(
            EVENT,
            VENUE,
            buyer=buyer,
            best=(ZONES[zone], n),
            limits=LIMITS,
            hold_seconds=0 if short else 600,
        )
        assert res.outcome in (
            "OK",
            "NOT_ENOUGH_ADJACENT_SEATS",
            "BUYER_LIMIT_REACHED",
            "ZONE_FULL",
            "EVENT_SOLD_OUT",
        )
        SEEN[f"best {res.outcome}"] += 1
        if res.outcome == "NOT_ENOUGH_ADJACENT_SEATS":  # a refusal is true of the state left
            grid = self.o.zone_map(EVENT, ZONES[zone])
            assert all(len(run) < n for row in grid for run in row.replace("h", "1").split("1"))
        if res.outcome == "OK":
            rows = {s.row for s in res.order.seats}
            cols = sorted(int(s.column) for s in res.order.seats)
            assert len(rows) == 1 and cols == list(range(cols[0], cols[0] + n))
            grid = self.o.zone_map(EVENT, ZONES[zone])
            for row in grid[: row_index(rows.pop())]:  # the front-most row that has the block
                assert all(len(run) < n for run in row.replace("h", "1").split("1"))
            self.orders.append(res)

    @rule(
        index=st.integers(0, 2),
        payment_of=st.sampled_from(["new", "latest", "own"]),
        right=st.booleans(),
    )
    def confirm(self, index, payment_of, right):
        res = self._pick(index)
        if res is None:
            return
        oid = res.order.order_id
        own = json.loads(self.redis.hget(keys.order_key(EVENT, oid), "doc"))["paymentId"]
        if payment_of == "own" and own:
            payment = own
        elif payment_of == "latest" and self.payments:
            payment = f"p{self.payments}"
        else:
            self.payments += 1
            payment = f"p{self.payments}"
        before = self._status(oid)
        got = self.o.confirm(
            EVENT,
            oid,
            payment_id=payment,
            amount=res.order.total if right else "0.01",
            currency="USD",
            limits=LIMITS,
        )
        after = self._status(oid)
        SEEN[f"confirm {before[0]} {got.outcome}"] += 1
        if got.outcome == "NO_CHANGE":
            assert after == before
        if got.outcome == "OK":
            assert after[0] == "PAID" and after[1] in (before[1] + 1, before[1] + 2)
        else:
            assert after[1] - before[1] in (0, 1)  # at most the expiry it met
            if after[1] != before[1]:
                assert (before[0], after[0]) == ("HELD", "EXPIRED")
        if not right and got.outcome not in ("NO_CHANGE", "ORDER_NOT_PAYABLE"):
            assert got.outcome == "AMOUNT_MISMATCH"

    @rule(index=st.integers(0, 2), owner=st.booleans())
    def cancel(self, index, owner):
        res = self._pick(index)
        if res is None:
            return
        caller = res.order.buyer if owner else "stranger"
        before = self._status(res.order.order_id)
        got = self.o.cancel(EVENT, res.order.order_id, caller=caller)
        SEEN[f"cancel {before[0]} {got.outcome}"] += 1
        if got.outcome == "NO_CHANGE":
            assert self._status(res.order.order_id) == before
        if not owner:
            assert got.outcome == "ORDER_NOT_FOUND"
        elif got.outcome == "OK":
            assert self._status(res.order.order_id)[0] == "CANCELLED"

    @rule(index=st.integers(0, 2), operator=st.booleans())
    def refund(self, index, operator):
        res = self._pick(index)
        if res is None:
            return
        status, _ = self._status(res.order.order_id)
        paid_by = self.o.get(EVENT, res.order.order_id).order.payment_id
        got = self.o.refund(EVENT, res.order.order_id, payment_id=None if operator else paid_by)
        SEEN[f"refund {status} {got.outcome}"] += 1
        if paid_by is None and status in ("PAID", "REFUNDED"):  # a single-seat sale's order
            SEEN[f"refund sale {status} {got.outcome}"] += 1
        assert (got.outcome == "OK") == (status == "PAID")

    @rule(max_orders=st.integers(1, 3))
    def sweep(self, max_orders):
        self.o.sweep(EVENT, max_orders)

    @rule(index=st.integers(0, 2))
    def get(self, index):
        res = self._pick(index)
        if res is not None:
            self.o.get(EVENT, res.order.order_id)

    @rule(buyer=st.sampled_from(BUYERS), cell=cells)
    def purchase(self, buyer, cell):
        z, r, c = cell[0]
        ticket = ticket_message(
            eventId=EVENT, venueId=VENUE, zoneId=z, row=row_label(r), column=str(c), price="10.00"
        )
        sale = seats.scripts_for(self.redis).purchase(
            EVENT, ZONES[z], r, c, ticket=ticket, buyer=buyer, limits=LIMITS
        )
        SEEN[f"purchase {sale.outcome}"] += 1
        if sale.outcome == "OK":
            self.orders.append(self.o.get(EVENT, sale.order_id))

    @invariant()
    def seat_state_agrees_with_the_orders(self):
        r = self.redis
        docs, cells_of = {}, {}
        for res in self.orders:
            oid = res.order.order_id
            raw = r.hmget(keys.order_key(EVENT, oid), "doc", "cells")
            docs[oid], cells_of[oid] = json.loads(raw[0]), json.loads(raw[1])
        owned: dict[tuple[int, int], str] = {}
        per_buyer: Counter[str] = Counter()
        for oid, doc in docs.items():
            if doc["status"] not in LIVE:
                continue
            per_buyer[doc["buyer"]] += len(cells_of[oid])
            for zone, bit, _row, ticket, _ in cells_of[oid]:
                assert (zone, bit) not in owned, "a seat in two live orders"
                owned[(zone, bit)] = oid
                assert r.hget(keys.owners_key(EVENT, zone), bit) == ticket
                assert r.getbit(keys.held_key(EVENT, zone), bit) == (doc["status"] == "HELD")
        taken_total = 0
        for zone in ZONES.values():
            grid = self.o.zone_map(EVENT, zone)
            left = r.hgetall(keys.zone_keys(EVENT, zone.zone_id)[1])
            taken = sum(row.count("1") + row.count("h") for row in grid)
            taken_total += taken
            assert int(left["zone"]) == zone.capacity - taken
            for i, row in enumerate(grid):
                assert int(left[row_label(i)]) == zone.row_capacity - (len(row) - row.count("0"))
            owners = r.hgetall(keys.owners_key(EVENT, zone.zone_id))
            assert len(owners) == taken
            holders = r.hgetall(keys.holder_key(EVENT, zone.zone_id))
            assert sum(row.count("h") for row in grid) == len(holders)
            for bit, oid in holders.items():
                assert docs[oid]["status"] == "HELD" and owned[(zone.zone_id, int(bit))] == oid
        assert int(r.hget(keys.event_key(EVENT), "sold")) == taken_total
        # every taken seat is a live order's (a single-seat sale's too): nothing leaks
        assert taken_total == len(owned)
        counts = {b: int(n) for b, n in r.hgetall(keys.buyers_key(EVENT)).items()}
        assert counts == {b: n for b, n in per_buyer.items() if n}
        assert all(n <= LIMIT for n in counts.values())
        held = {oid for oid, doc in docs.items() if doc["status"] == "HELD"}
        assert set(r.zrange(keys.holds_key(EVENT), 0, -1)) == held

    @invariant()
    def one_event_per_transition(self):
        entries = [f for _, f in self.redis.xrange(keys.outbox_stream(keys.bucket(EVENT)))]
        versions: dict[str, list[int]] = {}
        last: dict[str, dict] = {}
        late = Counter()
        for f in entries:
            if f["kind"] == "order":
                doc = json.loads(f["order"])
                versions.setdefault(doc["orderId"], []).append(doc["version"])
                last[doc["orderId"]] = doc
            elif f["kind"] == "late_payment_rejected":
                payment = json.loads(f["payment"])
                late[(payment["orderId"], payment["paymentId"])] += 1
        for oid, seen in versions.items():
            assert seen == list(range(1, len(seen) + 1))
            stored = json.loads(self.redis.hget(keys.order_key(EVENT, oid), "doc"))
            assert stored == last[oid]
        assert all(n == 1 for n in late.values())


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_order_invariants(redis_client):
    OrderMachine.redis = redis_client
    SEEN.clear()
    run_state_machine_as_test(
        OrderMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=60,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    exercised = {
        "confirm HELD OK",
        "confirm HELD AMOUNT_MISMATCH",
        "confirm EXPIRED OK",
        "confirm EXPIRED HOLD_EXPIRED",
        "confirm PAID NO_CHANGE",
        "confirm PAID ORDER_NOT_PAYABLE",
        "confirm CANCELLED ORDER_NOT_PAYABLE",
        "confirm REFUNDED ORDER_NOT_PAYABLE",
        "cancel HELD OK",
        "cancel PAID ORDER_PAID",
        "cancel CANCELLED NO_CHANGE",
        "cancel EXPIRED ORDER_CLOSED",
        "refund PAID OK",
        "refund REFUNDED NO_CHANGE",
        "refund HELD ORDER_NOT_PAID",
        "best OK",
        "best NOT_ENOUGH_ADJACENT_SEATS",
        "best BUYER_LIMIT_REACHED",
        "purchase OK",
        "purchase SEAT_TAKEN",
        "refund sale PAID OK",
        "refund sale REFUNDED NO_CHANGE",
    }
    assert exercised <= set(SEEN), sorted(exercised - set(SEEN))


# --- the projection converges: every event delivered in any order, some twice ----------------

MACHINE_CATALOG = {
    "venues": [
        {
            "venueId": VENUE,
            "name": "Machine venue",
            "zones": [
                {"zoneId": z.zone_id, "rows": z.rows, "columns": z.columns, "price": str(z.price)}
                for z in ZONES.values()
            ],
        }
    ],
    "events": [
        {
            "eventId": EVENT,
            "venueId": VENUE,
            "name": "m",
            "type": "TEST",
            "date": "2027-01-01T20:00:00Z",
        }
    ],
}


def deliver_shuffled(entries: list[dict[str, str]], rng: random.Random) -> int:
    """Apply every outbox entry to MySQL with the worker's projection code, as SNS/SQS may
    deliver them: shuffled, some twice; a seat still live for an older order is retried
    later (as the task retries), until nothing is left. Returns the deliveries made."""
    from models.orders import (
        LatePaymentRecord,
        OrderSnapshot,
        SeatStillLive,
        apply_order,
        record_late_payment,
    )
    from models.tickets import TicketRecord, persist_ticket

    pending = list(entries) + rng.sample(entries, len(entries) // 3)  # redeliveries
    rng.shuffle(pending)
    deliveries = 0
    while pending:
        retry = []
        for f in pending:
            deliveries += 1
            try:
                with models.writer().begin() as conn:
                    if f["kind"] == "order":
                        apply_order(conn, OrderSnapshot.from_json(json.loads(f["order"])))
                    elif f["kind"] == "late_payment_rejected":
                        record_late_payment(
                            conn, LatePaymentRecord.from_json(json.loads(f["payment"]))
                        )
                    else:
                        persist_ticket(conn, TicketRecord.from_json(json.loads(f["ticket"])))
            except SeatStillLive:
                retry.append(f)
        assert len(retry) < len(pending), "no event could be applied: the projection is stuck"
        rng.shuffle(retry)
        pending = retry
    return deliveries


@pytest.fixture
def machine_catalog(clean_tickets):
    """The machine's venue and event in MySQL for the test only (other tests compare the
    catalog in MySQL with the test catalog)."""
    with models.writer().begin() as conn:
        upsert(conn, Catalog.from_dict(MACHINE_CATALOG))
    yield
    with models.writer().begin() as conn:
        clear_tickets(conn)
        conn.execute(text("DELETE FROM event WHERE event_id = :e"), {"e": EVENT})
        conn.execute(text("DELETE FROM zone WHERE venue_id = :v"), {"v": VENUE})
        conn.execute(text("DELETE FROM venue WHERE venue_id = :v"), {"v": VENUE})


class ConvergingMachine(OrderMachine):
    """The order machine; at the end of each run its whole outbox is delivered to MySQL in a
    shuffled order with repeats, and MySQL must hold what Redis holds."""

    rng = random.Random(7)

    def __init__(self) -> None:
        super().__init__()
        with models.writer().begin() as conn:
            clear_tickets(conn)

    def teardown(self) -> None:
        r = self.redis
        entries = [f for _, f in r.xrange(keys.outbox_stream(keys.bucket(EVENT)))]
        deliver_shuffled(entries, self.rng)
        with models.writer().connect() as conn:
            mysql_orders = {
                row.order_id: (row.status, row.version)
                for row in conn.execute(select(Order.order_id, Order.status, Order.version))
            }
            tickets = dict(conn.execute(select(Ticket.ticket_id, Ticket.status)).all())
            late = conn.execute(select(func.count()).select_from(LatePayment)).scalar_one()
        redis_orders, paid_tickets, refunded_tickets = {}, set(), set()
        for res in self.orders:
            doc = json.loads(r.hget(keys.order_key(EVENT, res.order.order_id), "doc"))
            redis_orders[doc["orderId"]] = (doc["status"], doc["version"])
            ids = {s["ticketId"] for s in doc["seats"]}
            if doc["status"] == "PAID":
                paid_tickets |= ids
            elif doc["status"] == "REFUNDED":
                refunded_tickets |= ids
        single = {json.loads(f["ticket"])["ticketId"] for f in entries if f["kind"] == "ticket"}
        assert mysql_orders == redis_orders
        assert {t for t, s in tickets.items() if s == "PAID"} == paid_tickets | single
        assert {t for t, s in tickets.items() if s == "REFUNDED"} == refunded_tickets
        assert late == sum(1 for f in entries if f["kind"] == "late_payment_rejected")
        SEEN["converged"] += 1


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_mysql_converges_to_redis_whatever_the_delivery_order(redis_client, machine_catalog):
    """Hold / confirm / cancel / expire / refund / purchase, then every event redelivered and
    reordered: MySQL ends with each order's newest state and exactly the paid tickets."""
    ConvergingMachine.redis = redis_client
    SEEN.clear()
    run_state_machine_as_test(
        ConvergingMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert SEEN["converged"] == 15
    assert SEEN["confirm HELD OK"] and SEEN["refund PAID OK"] and SEEN["cancel HELD OK"]

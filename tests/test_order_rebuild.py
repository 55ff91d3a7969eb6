"""`seats rebuild` with orders: after holds, payments, cancels, refunds, expiries, late payments
and single-seat purchases made by the real scripts and projected to MySQL by the real projection
code, Redis loses the event's keys; the rebuild from MySQL writes every key back as the scripts
left it, and the scripts go on from there (confirm a rebuilt hold, refund a rebuilt payment,
expire a rebuilt due hold once, refuse a rebuilt sold seat and a buyer over the limit)."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test
from sqlalchemy import select

import models
from models import seat_repair, seats
from models.catalog import Catalog, row_label
from models.orders import LatePaymentRecord, OrderSnapshot, apply_order, record_late_payment
from models.seats import keys
from models.seats.orders import OrderResult, OrderScripts
from models.tables import Order
from models.tickets import TicketRecord, persist_ticket
from plumbing import settings as app_settings
from tests.conftest import TEST_CATALOG
from tests.support.factories import clear_tickets, ticket_message
from tests.support.processes import wait_until

# the test reads and projects the outbox itself: the session relay must not take it
pytestmark = pytest.mark.usefixtures("no_session_relay")

EVENT, VENUE = "Event1", "Venue1"
CATALOG = Catalog.from_dict(TEST_CATALOG)
ZONES = CATALOG.venues[VENUE].zones
FREE = seats.Limits(seats_per_buyer=10**6, burst=10**6)
# fields of a stored snapshot MySQL does not keep (no script reads them: order_state.py)
UNKEPT = ("updatedOn", "paidOn", "refundedOn")


def raw_client() -> seats.Client:
    """Bytes replies: the bitmaps are binary."""
    return seats.connect(app_settings.get().redis_url, cluster=False, decode_responses=False)


def text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def project_outbox(r: seats.Client, event_id: str = EVENT) -> int:
    """Every entry of the event's outbox through the projection the worker runs (ticket, order,
    late payment), in stream order, then deleted as the relay would; returns how many."""
    stream = keys.outbox_stream(keys.bucket(event_id))
    entries = r.xrange(stream)
    with models.writer().begin() as conn:
        for _, fields in entries:
            if fields["kind"] == "order":
                apply_order(conn, OrderSnapshot.from_json(json.loads(fields["order"])))
            elif fields["kind"] == "late_payment_rejected":
                record_late_payment(
                    conn, LatePaymentRecord.from_json(json.loads(fields["payment"]))
                )
            else:
                persist_ticket(conn, TicketRecord.from_json(json.loads(fields["ticket"])))
    if entries:
        r.xdel(stream, *[i for i, _ in entries])
    return len(entries)


def order_ids(event_id: str = EVENT) -> list[str]:
    with models.writer().connect() as conn:
        return sorted(conn.scalars(select(Order.order_id).where(Order.event_id == event_id)))


def bitmap(raw: seats.Client, key: str) -> bytes:
    """A bitmap without its trailing zero bytes (SETBIT grows it only as far as it writes)."""
    return (raw.get(key) or b"").rstrip(b"\0")


def state(raw: seats.Client, ids: list[str], event_id: str = EVENT) -> dict[str, Any]:
    """Every seat-state key of the event the scripts read, as comparable values (the `front`
    scan hints excepted: a rebuild drops them, and they only make a scan start later)."""
    found: dict[str, Any] = {}
    for zone_id in CATALOG.venues[CATALOG.events[event_id].venue_id].zones:
        sold, left, _ = keys.zone_keys(event_id, zone_id)
        found[f"zone {zone_id}"] = {
            "sold": bitmap(raw, sold),
            "held": bitmap(raw, keys.held_key(event_id, zone_id)),
            "left": raw.hgetall(left),
            "owner": raw.hgetall(keys.owners_key(event_id, zone_id)),
            "holder": raw.hgetall(keys.holder_key(event_id, zone_id)),
        }
    found["event"] = raw.hgetall(keys.event_key(event_id))
    found["buyers"] = raw.hgetall(keys.buyers_key(event_id))
    found["holds"] = raw.zrange(keys.holds_key(event_id), 0, -1, withscores=True)
    found["payments"] = raw.hgetall(keys.payments_key(event_id))
    for order_id in ids:
        order_key = keys.order_key(event_id, order_id)
        stored = {text(k): text(v) for k, v in raw.hgetall(order_key).items()}
        if not stored:
            found[f"order {order_id}"] = None
            continue
        doc = json.loads(stored.pop("doc"))
        for name in UNKEPT:
            doc.pop(name, None)
        doc["seats"] = sorted(doc["seats"], key=lambda s: s["ticketId"])
        found[f"order {order_id}"] = {
            "doc": doc,
            "cells": sorted(json.loads(stored.pop("cells"))),
            "rejected": sorted(k for k in stored if k.startswith("rejected:")),
            "rest": {k: v for k, v in stored.items() if not k.startswith("rejected:")},
            "lookup": raw.get(keys.order_event_key(order_id)),
        }
    return found


def flush_event(raw: seats.Client, event_id: str = EVENT) -> None:
    """Redis loses every key of the event's bucket (its seat state, orders and lookups)."""
    doomed = list(raw.scan_iter(match=f"seats:{keys.tag(event_id)}:*", count=1000))
    assert doomed
    raw.delete(*doomed)
    assert not raw.exists(keys.event_key(event_id))


def rebuild() -> dict[str, int]:
    return seat_repair.rebuild(
        seats.client(),
        CATALOG,
        events=[EVENT],
        drain_timeout=60,
        relays_hold_nothing=lambda: True,
    )


def sell_single(r: seats.Client, zone_id: int, row: int, column: int, buyer: str) -> str:
    """A single seat sold as POST /tickets sells it (the ticket names its buyer)."""
    ticket = ticket_message(
        eventId=EVENT, zoneId=zone_id, row=row_label(row), column=str(column), buyer=buyer
    )
    zone = ZONES[zone_id]
    return (
        seats.scripts_for(r)
        .purchase(EVENT, zone, row, column, ticket=ticket, buyer=buyer, limits=FREE)
        .outcome
    )


def pay(o: OrderScripts, res: OrderResult, payment: str) -> OrderResult:
    return o.confirm(
        EVENT,
        res.order.order_id,
        payment_id=payment,
        amount=res.order.total,
        currency="USD",
        limits=FREE,
    )


def hold(o: OrderScripts, cells: list[tuple[int, int, int]], buyer: str, **kw: Any) -> OrderResult:
    kw.setdefault("limits", FREE)
    res = o.hold(EVENT, VENUE, buyer=buyer, seats=[(ZONES[z], r, c) for z, r, c in cells], **kw)
    assert res.outcome == "OK", res
    return res


def redis_now_ms(r: seats.Client) -> int:
    s, us = r.time()
    return s * 1000 + us // 1000


def wait_past(r: seats.Client, res: OrderResult) -> None:
    exp = int(r.hget(keys.order_key(EVENT, res.order.order_id), "exp"))
    while redis_now_ms(r) < exp:
        time.sleep(0.01)


def order_events(r: seats.Client, order_id: str) -> list[dict[str, Any]]:
    stream = keys.outbox_stream(keys.bucket(EVENT))
    found = [json.loads(f["order"]) for _, f in r.xrange(stream) if f["kind"] == "order"]
    return [o for o in found if o["orderId"] == order_id]


EXPECTED = {
    "held": "HELD",
    "held_other_id": "HELD",
    "best": "HELD",
    "paid": "PAID",
    "refunded": "REFUNDED",
    "cancelled": "CANCELLED",
    "expired": "EXPIRED",
    "late_refused": "EXPIRED",
    "late_paid": "PAID",
    "due": "HELD",
}


def make_mix(r: seats.Client, *, due: bool = True) -> dict[str, OrderResult]:
    """Every kind of order the box office leaves, and single seats, made by the scripts; with
    `due`, last a hold that falls due and that no script meets."""
    o = OrderScripts(r)
    made: dict[str, OrderResult] = {}
    made["held"] = hold(o, [(1, 0, 1), (1, 0, 2)], "buyer-held")
    other = str(uuid.uuid4())[:-1] + format((keys.bucket(EVENT) + 1) % keys.BUCKETS, "x")
    made["held_other_id"] = hold(o, [(2, 3, 5)], "buyer-held", order_id=other)
    made["best"] = o.hold(EVENT, VENUE, buyer="buyer-best", best=(ZONES[3], 3), limits=FREE)
    assert made["best"].outcome == "OK"
    paid = hold(o, [(1, 1, 1), (1, 1, 2), (4, 27, 40)], "buyer-paid")
    made["paid"] = pay(o, paid, "pay-paid")
    refunded = pay(o, hold(o, [(1, 2, 1)], "buyer-refunded"), "pay-refunded")
    made["refunded"] = o.refund(EVENT, refunded.order.order_id, payment_id="pay-refunded")
    made["cancelled"] = o.cancel(
        EVENT, hold(o, [(1, 3, 1)], "buyer-x").order.order_id, caller="buyer-x"
    )
    expired = hold(o, [(1, 4, 1)], "buyer-x", hold_seconds=0.05)
    wait_past(r, expired)
    made["expired"] = o.get(EVENT, expired.order.order_id)
    late = hold(o, [(1, 5, 1)], "buyer-late", hold_seconds=0.05)
    wait_past(r, late)
    assert sell_single(r, 1, 5, 1, "buyer-single") == "OK"  # expires the hold, takes its seat
    assert pay(o, late, "pay-late").outcome == "HOLD_EXPIRED"  # refused: a late payment
    made["late_refused"] = o.get(EVENT, late.order.order_id)
    late_ok = hold(o, [(1, 6, 1)], "buyer-late", hold_seconds=0.05)
    wait_past(r, late_ok)
    made["late_paid"] = pay(o, late_ok, "pay-late-ok")  # expired, seats free: paid late
    assert made["late_paid"].order.status == "PAID"
    for column in (1, 2, 3):
        assert sell_single(r, 7, 9, column, "buyer-single") == "OK"
    if due:  # last, and left alone: due when Redis loses it (no script met it since)
        made["due"] = hold(o, [(1, 8, 8)], "buyer-due", hold_seconds=0.05)
        wait_past(r, made["due"])
    assert {name: res.order.status for name, res in made.items()} == {
        name: status for name, status in EXPECTED.items() if name in made
    }
    return made


@pytest.fixture
def sold_mix(no_session_relay, clean_tickets, loaded_seats) -> dict[str, OrderResult]:
    """The mix, in Redis and projected to MySQL by the worker's projection code."""
    made = make_mix(loaded_seats)
    assert project_outbox(loaded_seats) > 0
    return made


def test_the_rebuilt_state_is_the_state_the_scripts_left(sold_mix):
    r = seats.client()
    raw = raw_client()
    project_outbox(r)
    ids = order_ids()
    assert len(ids) == len(sold_mix) + 4  # and the 4 single seats: orders too
    before = state(raw, ids)
    assert before["payments"] == {
        b"pay-paid": sold_mix["paid"].order.order_id.encode(),
        b"pay-refunded": sold_mix["refunded"].order.order_id.encode(),
        b"pay-late": sold_mix["late_refused"].order.order_id.encode(),
        b"pay-late-ok": sold_mix["late_paid"].order.order_id.encode(),
    }
    flush_event(raw)
    assert state(raw, ids) != before
    sold = rebuild()
    after = state(raw, ids)
    for key in before:
        assert after[key] == before[key], key
    assert sold == {EVENT: int(before["event"][b"sold"])}
    lookups = {order_id: after[f"order {order_id}"]["lookup"] for order_id in ids}
    assert lookups[sold_mix["held_other_id"].order.order_id] is None  # not its bucket: none
    assert sum(v == EVENT.encode() for v in lookups.values()) == len(ids) - 1


def test_a_due_hold_restored_by_the_rebuild_expires_once_with_its_event(
    no_session_relay, clean_tickets, loaded_seats
):
    r = loaded_seats
    o = OrderScripts(r)
    due = hold(o, [(1, 0, 5), (1, 0, 6)], "buyer-due", hold_seconds=0.05)
    project_outbox(r)
    wait_past(r, due)
    flush_event(raw_client())
    rebuild()
    order_id = due.order.order_id
    assert r.zscore(keys.holds_key(EVENT), order_id) is not None  # restored HELD, still due
    assert r.hget(keys.buyers_key(EVENT), "buyer-due") == "2"
    assert o.zone_map(EVENT, ZONES[1])[0][4:6] == "hh"  # held by it until something expires it
    assert r.hget(keys.event_key(EVENT), "sold") == "2"
    assert o.sweep(EVENT) == 1
    assert o.sweep(EVENT) == 0
    assert o.get(EVENT, order_id).order.status == "EXPIRED"
    assert [(e["status"], e["version"]) for e in order_events(r, order_id)] == [("EXPIRED", 2)]
    assert r.hget(keys.buyers_key(EVENT), "buyer-due") is None
    assert r.getbit(keys.zone_keys(EVENT, 1)[0], 5) == 0
    assert r.hget(keys.event_key(EVENT), "sold") == "0"


def test_the_scripts_go_on_from_the_rebuilt_state(sold_mix):
    r = seats.client()
    o = OrderScripts(r)
    flush_event(raw_client())
    rebuild()
    # a rebuilt HELD order is confirmed: its seats stop being held, they stay sold
    held = sold_mix["held"].order
    confirmed = o.confirm(
        EVENT, held.order_id, payment_id="pay-after", amount=held.total, currency="USD"
    )
    assert (confirmed.outcome, confirmed.order.status, confirmed.order.version) == ("OK", "PAID", 2)
    assert r.hlen(keys.holder_key(EVENT, 1)) == 0
    assert r.getbit(keys.zone_keys(EVENT, 1)[0], 0) == 1
    # a rebuilt PAID order is refunded: a version beyond MySQL's, its seats free again
    paid = sold_mix["paid"].order
    refunded = o.refund(EVENT, paid.order_id, payment_id="pay-paid")
    assert (refunded.outcome, refunded.order.version) == ("OK", paid.version + 1)
    assert project_outbox(r) > 0
    with models.writer().connect() as conn:
        stored = conn.execute(
            select(Order.status, Order.version).where(Order.order_id == paid.order_id)
        )
        assert stored.one() == ("REFUNDED", paid.version + 1)
    assert hold(o, [(1, 1, 1)], "buyer-again").order.status == "HELD"
    # the answers the state table gives on the closed orders
    assert pay(o, sold_mix["refunded"], "pay-refunded").outcome == "ORDER_NOT_PAYABLE"
    assert pay(o, sold_mix["cancelled"], "pay-c").outcome == "ORDER_NOT_PAYABLE"
    assert o.refund(EVENT, sold_mix["refunded"].order.order_id, payment_id=None).outcome == (
        "NO_CHANGE"
    )
    assert pay(o, sold_mix["late_refused"], "pay-late").outcome == "HOLD_EXPIRED"
    assert pay(o, sold_mix["late_paid"], "pay-late-ok").outcome == "NO_CHANGE"
    assert pay(o, sold_mix["held_other_id"], "pay-paid").outcome == "ORDER_NOT_PAYABLE"
    # rebuilt sold seats, held seats and single seats are taken
    assert sell_single(r, 1, 0, 2, "buyer-y") == "SEAT_TAKEN"  # the confirmed order's
    assert sell_single(r, 4, 27, 40, "buyer-y") == "OK"  # the refunded order's
    assert sell_single(r, 2, 3, 5, "buyer-y") == "SEAT_TAKEN"  # held
    assert sell_single(r, 7, 9, 2, "buyer-y") == "SEAT_TAKEN"  # a single seat
    assert hold(o, [(1, 2, 1)], "buyer-y").order.status == "HELD"  # the refunded seat is free
    # the buyer limit counts the rebuilt seats: buyer-held has 3 held (2 now paid), buyer-single 4
    limits = seats.Limits(seats_per_buyer=4, burst=10**6)
    assert (
        o.hold(
            EVENT,
            VENUE,
            buyer="buyer-held",
            seats=[(ZONES[5], 0, 1), (ZONES[5], 0, 2)],
            limits=limits,
        ).outcome
        == "BUYER_LIMIT_REACHED"
    )
    assert o.hold(EVENT, VENUE, buyer="buyer-held", seats=[(ZONES[5], 0, 1)], limits=limits).ok
    assert (
        o.hold(EVENT, VENUE, buyer="buyer-single", seats=[(ZONES[5], 1, 1)], limits=limits).outcome
        == "BUYER_LIMIT_REACHED"
    )
    # the order id → event lookups are back
    assert o.event_of(held.order_id) == EVENT
    assert o.event_of(sold_mix["held_other_id"].order.order_id) is None


def test_the_rebuild_waits_for_order_events_still_in_the_outbox(
    no_session_relay, clean_tickets, loaded_seats
):
    """An order event MySQL has not seen yet (still in the outbox): rebuilding now would free
    the hold's seats; the rebuild refuses and leaves the event closed (purchases answer 503)."""
    r = loaded_seats
    held = hold(OrderScripts(r), [(1, 0, 1)], "buyer-waiting")
    with pytest.raises(seat_repair.QueueNotDrained, match="outbox"):
        seat_repair.rebuild(
            r, CATALOG, events=[EVENT], drain_timeout=1, relays_hold_nothing=lambda: True
        )
    assert not seats.event_loaded(r, EVENT)
    project_outbox(r)
    rebuild()
    assert r.hget(keys.holder_key(EVENT, 1), "0") == held.order.order_id


def test_an_order_mysql_never_saw_is_dropped_by_the_rebuild(
    no_session_relay, clean_tickets, loaded_seats
):
    """An order whose events were lost with Redis (never in MySQL) but whose hash survived: the
    rebuild deletes it, or a confirm would sell seats the rebuilt bitmaps have free."""
    r = loaded_seats
    o = OrderScripts(r)
    lost = hold(o, [(1, 0, 1)], "buyer-lost")
    r.delete(keys.outbox_stream(keys.bucket(EVENT)))  # its event is gone: MySQL never sees it
    rebuild()
    assert r.getbit(keys.zone_keys(EVENT, 1)[0], 0) == 0
    assert o.get(EVENT, lost.order.order_id).outcome == "ORDER_NOT_FOUND"
    assert pay(o, lost, "pay-lost").outcome == "ORDER_NOT_FOUND"
    assert r.hget(keys.buyers_key(EVENT), "buyer-lost") is None


@pytest.mark.worker
def test_the_mix_drained_by_the_real_relay_and_worker_rebuilds_as_it_was(
    no_session_relay, clean_tickets, loaded_seats, pipeline_worker, pipeline_relay
):
    """The same mix (without the due hold: the relay's sweeper would expire it) through the
    real relay, SNS/SQS and the Celery worker; `seats rebuild` waits for all of it (outbox,
    relays' hands, queue) on its own, then writes back what the scripts left."""
    r = loaded_seats
    made = make_mix(r, due=False)
    finals = {res.order.order_id: (res.order.status, res.order.version) for res in made.values()}

    def projected() -> dict[str, tuple[str, int]]:
        with models.writer().connect() as conn:
            rows = conn.execute(
                select(Order.order_id, Order.status, Order.version).where(Order.event_id == EVENT)
            )
            return {row.order_id: (row.status, row.version) for row in rows}

    wait_until(
        lambda: (
            {k: v for k, v in projected().items() if k in finals} == finals
            and len(projected()) == len(finals) + 4
        ),
        120,
        "every order in MySQL at its last version",
    )
    raw = raw_client()
    ids = sorted(finals)
    before = state(raw, ids)
    flush_event(raw)
    seat_repair.rebuild(seats.client(), CATALOG, events=[EVENT], drain_timeout=120)
    after = state(raw, ids)
    for key in before:
        assert after[key] == before[key], key


TINY = "TinyEvent"
TINY_VENUE = CATALOG.events[TINY].venue_id
TINY_ZONES = CATALOG.venues[TINY_VENUE].zones
BUYERS = ["b1", "b2", "b3"]
TINY_LIMITS = seats.Limits(seats_per_buyer=4, burst=10**6)
TINY_CELLS = [
    (z, r, c)
    for z, zone in TINY_ZONES.items()
    for r in range(zone.rows)
    for c in range(1, 4)
    if c <= zone.columns
]
SEEN: Counter[str] = Counter()  # what the runs exercised


class RebuildMachine(RuleBasedStateMachine):
    """The order scripts and single-seat sales on TinyEvent (small zones, row and zone caps, a
    buyer limit of 4), and now and then Redis loses the event: everything is projected to MySQL
    by the worker's code, the keys go, `write_event` writes them back, and every key must be
    as it was; the scripts then go on from the rebuilt state (and the next loss checks them)."""

    redis: seats.Client | None = None

    def __init__(self) -> None:
        super().__init__()
        r = self.redis
        r.flushdb()
        with models.writer().begin() as conn:
            clear_tickets(conn)
        seats.rebuild_event(r, CATALOG.events[TINY], TINY_ZONES, {})
        self.o = OrderScripts(r)
        self.orders: list[str] = []
        self.sales: list[str] = []
        self.payments = 0

    def _pick(self, index: int) -> str | None:
        return self.orders[-1 - index % min(3, len(self.orders))] if self.orders else None

    def _doc(self, order_id: str) -> dict[str, Any]:
        return json.loads(self.redis.hget(keys.order_key(TINY, order_id), "doc"))

    @rule(
        buyer=st.sampled_from(BUYERS),
        chosen=st.lists(st.sampled_from(TINY_CELLS), min_size=1, max_size=3, unique=True),
        short=st.booleans(),
    )
    def hold(self, buyer, chosen, short):
        res = self.o.hold(
            TINY,
            TINY_VENUE,
            buyer=buyer,
            seats=[(TINY_ZONES[z], r, c) for z, r, c in chosen],
            limits=TINY_LIMITS,
            hold_seconds=0 if short else 600,
        )
        SEEN[f"hold {res.outcome}"] += 1
        if res.outcome == "OK":
            self.orders.append(res.order.order_id)

    @rule(buyer=st.sampled_from(BUYERS), zone=st.sampled_from([1, 3]), n=st.integers(1, 2))
    def hold_best(self, buyer, zone, n):
        res = self.o.hold(
            TINY, TINY_VENUE, buyer=buyer, best=(TINY_ZONES[zone], n), limits=TINY_LIMITS
        )
        if res.outcome == "OK":
            self.orders.append(res.order.order_id)

    @rule(index=st.integers(0, 2), fresh=st.booleans(), right=st.booleans())
    def confirm(self, index, fresh, right):
        order_id = self._pick(index)
        if order_id is None:
            return
        doc = self.o.get(TINY, order_id).order.raw  # a due hold is EXPIRED from here on
        if fresh or not self.payments:
            self.payments += 1
        got = self.o.confirm(
            TINY,
            order_id,
            payment_id=doc["paymentId"] or f"p{self.payments}",
            amount=doc["total"] if right else "0.01",
            currency="USD",
            limits=TINY_LIMITS,
        )
        SEEN[f"confirm {doc['status']} {got.outcome}"] += 1

    @rule(index=st.integers(0, 2), buyer=st.sampled_from(BUYERS), taken=st.booleans())
    def seat_taken_then_paid_late(self, index, buyer, taken):
        """An expired order's payment comes late: its seats taken again if free, else (one of
        them sold to someone first) refused and kept for the refund."""
        order_id = self._pick(index)
        if order_id is None:
            return
        doc = self.o.get(TINY, order_id).order.raw
        if doc["status"] != "EXPIRED":
            return
        cell = next(c for c in TINY_CELLS if self._is(c, doc["seats"][0]))
        # the first buyer with room takes the seat (a buyer at the limit is refused)
        if taken and not any(self._sell(b, cell) == "OK" for b in [buyer, *BUYERS]):
            return
        self.payments += 1
        got = self.o.confirm(
            TINY,
            order_id,
            payment_id=f"p{self.payments}",
            amount=doc["total"],
            currency="USD",
            limits=TINY_LIMITS,
        )
        SEEN[f"confirm EXPIRED {got.outcome}"] += 1

    @staticmethod
    def _is(cell: tuple[int, int, int], seat: dict[str, Any]) -> bool:
        z, r, c = cell
        return (z, row_label(r), str(c)) == (seat["zoneId"], seat["row"], seat["column"])

    @rule(index=st.integers(0, 2))
    def cancel(self, index):
        order_id = self._pick(index)
        if order_id is not None:
            self.o.cancel(TINY, order_id, caller=self._doc(order_id)["buyer"])

    @rule(index=st.integers(0, 2))
    def refund(self, index):
        order_id = self._pick(index)
        if order_id is not None:
            got = self.o.refund(TINY, order_id, payment_id=None)
            SEEN[f"refund {got.outcome}"] += 1

    @rule()
    def sweep(self):
        self.o.sweep(TINY)

    @rule(buyer=st.sampled_from(BUYERS), cell=st.sampled_from(TINY_CELLS))
    def purchase(self, buyer, cell):
        self._sell(buyer, cell)

    def _sell(self, buyer: str, cell: tuple[int, int, int]) -> str:
        z, r, c = cell
        ticket = ticket_message(
            eventId=TINY,
            venueId=TINY_VENUE,
            zoneId=z,
            row=row_label(r),
            column=str(c),
            price=f"{TINY_ZONES[z].price:.2f}",
            buyer=buyer,
        )
        sale = seats.scripts_for(self.redis).purchase(
            TINY, TINY_ZONES[z], r, c, ticket=ticket, buyer=buyer, limits=TINY_LIMITS
        )
        SEEN[f"purchase {sale.outcome}"] += 1
        if sale.outcome == "OK":  # a one-seat sale is an order too (not one the rules pick)
            self.sales.append(sale.order_id)
        return sale.outcome

    @rule()
    def redis_loses_the_event(self):
        r = self.redis
        project_outbox(r, TINY)
        raw = raw_client()
        ids = order_ids(TINY)
        assert sorted(ids) == sorted(self.orders + self.sales)
        before = state(raw, ids, TINY)
        flush_event(raw, TINY)
        seat_repair.write_event(r, CATALOG, TINY)
        after = state(raw, ids, TINY)
        for key in before:
            assert after[key] == before[key], key
        SEEN["rebuilt"] += 1
        SEEN["rebuilt with a late payment"] += any(k.startswith("rejected:") for k in str(before))
        SEEN["rebuilt with a hold"] += bool(before["holds"])
        now = redis_now_ms(r)
        SEEN["rebuilt with a due hold"] += any(exp <= now for _, exp in before["holds"])


@pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
def test_any_history_rebuilds_to_the_state_the_scripts_left(no_session_relay, clean_tickets):
    RebuildMachine.redis = seats.client()
    SEEN.clear()
    run_state_machine_as_test(
        RebuildMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=40,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
    exercised = {
        "rebuilt",
        "rebuilt with a hold",
        "rebuilt with a due hold",
        "rebuilt with a late payment",
        "confirm HELD OK",
        "confirm EXPIRED OK",
        "confirm EXPIRED HOLD_EXPIRED",
        "refund OK",
        "purchase OK",
        "hold SEAT_TAKEN",
        "hold BUYER_LIMIT_REACHED",
    }
    assert exercised <= set(SEEN), exercised - set(SEEN)

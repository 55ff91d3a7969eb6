"""The Redis seat scripts at their boundaries, on real Redis."""

from __future__ import annotations

import json
import threading
import time
import zlib
from decimal import Decimal

import pytest
from redis.cluster import key_slot

from models import seats
from models.catalog import Catalog, EventSpec, ZoneSpec, row_index, row_label
from models.seats import keys
from tests.support.factories import sell, ticket_message


def zone(rows=2, columns=3, capacity=None, row_capacity=None, zone_id=1) -> ZoneSpec:
    return ZoneSpec(
        zone_id=zone_id,
        rows=rows,
        columns=columns,
        price=Decimal("1.00"),
        capacity=capacity if capacity is not None else rows * columns,
        row_capacity=row_capacity if row_capacity is not None else columns,
    )


def event(capacity: int) -> EventSpec:
    from datetime import UTC, datetime

    return EventSpec("E", "V", "e", "TEST", datetime(2027, 1, 1, tzinfo=UTC), capacity)


def test_row_labels_are_bijective_base_26():
    assert [row_label(i) for i in (0, 25, 26, 51, 52, 701, 702)] == [
        "A",
        "Z",
        "AA",
        "AZ",
        "BA",
        "ZZ",
        "AAA",
    ]
    assert all(row_index(row_label(i)) == i for i in range(2000))


def test_every_key_a_script_touches_is_in_one_cluster_slot():
    found = [
        *seats.zone_keys("Event1", 1),
        *seats.zone_keys("Event1", 50),
        seats.owners_key("Event1", 1),
        seats.idempotency_key("Event1", "abc"),
        keys.outbox_stream(keys.bucket("Event1")),
        keys.parked_stream(keys.bucket("Event1")),
    ]
    assert len({key_slot(k.encode()) for k in found}) == 1


def test_buckets_are_stable_and_spread_events_over_the_streams():
    """A bucket is CRC-32 of the id (the same in every process and release), and 1,000 event
    ids use every one of the streams."""
    assert keys.bucket("Event1") == zlib.crc32(b"Event1") % keys.BUCKETS
    assert {keys.bucket(f"Event{n}") for n in range(1000)} == set(range(keys.BUCKETS))
    slots = {key_slot(s.encode()) for s in keys.outbox_streams()}
    assert len(slots) == keys.BUCKETS


def test_sell_then_seat_taken(redis_client):
    s, z = seats.scripts_for(redis_client), zone()
    s.initialise(event(6), z)
    assert sell(s, "E", z, 1, 3) == "OK"
    assert sell(s, "E", z, 1, 3) == "SEAT_TAKEN"
    sold, left, ev = seats.zone_keys("E", 1)
    assert redis_client.getbit(sold, seats.seat_bit(z, 1, 3)) == 1
    assert seats.seat_bit(z, 1, 3) == 5  # rowIndex × columns + colIndex
    assert redis_client.hgetall(left) == {"zone": "5", "A": "3", "B": "2"}
    assert redis_client.hmget(ev, "sold", "capacity") == ["1", "6"]


def test_row_boundary(redis_client):
    s, z = seats.scripts_for(redis_client), zone(row_capacity=2)
    s.initialise(event(6), z)
    assert [sell(s, "E", z, 0, c) for c in (1, 2, 3)] == ["OK", "OK", "ROW_FULL"]
    assert sell(s, "E", z, 1, 3) == "OK"  # the other row is not affected


def test_zone_boundary(redis_client):
    s, z = seats.scripts_for(redis_client), zone(capacity=2)
    s.initialise(event(6), z)
    assert [sell(s, "E", z, r, 1) for r in (0, 1)] == ["OK", "OK"]
    assert sell(s, "E", z, 0, 2) == "ZONE_FULL"
    assert sell(s, "E", z, 0, 1) == "SEAT_TAKEN"  # precedence over the counters


def test_event_boundary_spans_zones(redis_client):
    s = seats.scripts_for(redis_client)
    z1, z2 = zone(zone_id=1), zone(zone_id=2)
    s.initialise(event(3), z1)
    s.initialise(event(3), z2)
    assert [sell(s, "E", z1, 0, 1), sell(s, "E", z2, 0, 1), sell(s, "E", z1, 1, 1)] == [
        "OK",
        "OK",
        "OK",
    ]
    assert sell(s, "E", z2, 1, 2) == "EVENT_SOLD_OUT"


def test_a_sale_appends_its_event_to_the_outbox_in_the_same_call(redis_client):
    """The sale is an order of one seat paid at once: the order (its hash and its event lookup),
    its PAID snapshot in the outbox (one `kind=order` entry, no ticket entry) and the owner are
    written by the script that sells; a refusal writes none of them (the outbox holds one entry
    per sale, nothing else)."""
    s, z = seats.scripts_for(redis_client), zone()
    s.initialise(event(6), z)
    ticket = ticket_message(eventId="E", venueId="V", zoneId=1, row="B", column="3")
    before = redis_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    sale = s.purchase("E", z, 1, 3, ticket=ticket, buyer="b", currency="EUR", request_id="rid-1")
    after = redis_client.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert sale.outcome == "OK" and after - before == 1
    assert keys.order_bucket(sale.order_id) == keys.bucket("E")
    stream = keys.outbox_stream(keys.bucket("E"))
    [(_, fields)] = redis_client.xrange(stream)
    assert fields.keys() == {"kind", "order", "rid"}
    assert fields["kind"] == "order" and fields["rid"] == "rid-1"
    order = json.loads(fields["order"])
    created = ticket["createdOn"]
    assert order == {
        "orderId": sale.order_id,
        "status": "PAID",
        "version": 1,
        "venueId": "V",
        "eventId": "E",
        "buyer": "b",
        "seats": [
            {
                "ticketId": ticket["ticketId"],
                "zoneId": 1,
                "row": "B",
                "column": "3",
                "price": "100.00",
            }
        ],
        "total": "100.00",
        "currency": "EUR",
        "createdOn": created,
        "updatedOn": created,
        "paidOn": created,
        "expiresAt": None,
        "paymentId": None,
    }
    bit = seats.seat_bit(z, 1, 3)
    assert redis_client.hgetall(keys.order_key("E", sale.order_id)) == {
        "doc": fields["order"],
        "cells": json.dumps([[1, bit, "B", ticket["ticketId"], 1]]),
        "total": "100",
        "exp": "0",  # never held
    }
    assert seats.orders_for(redis_client).event_of(sale.order_id) == "E"
    owners = keys.owners_key("E", 1)
    assert redis_client.hgetall(owners) == {str(bit): ticket["ticketId"]}
    assert redis_client.hgetall(keys.buyers_key("E")) == {"b": "1"}
    assert sell(s, "E", z, 1, 3) == "SEAT_TAKEN"
    assert redis_client.xlen(stream) == 1
    assert redis_client.hlen(owners) == 1
    assert len(list(redis_client.scan_iter("*:order:*"))) == 1


def test_a_sale_is_an_order_the_box_office_reads_and_an_operator_refunds(redis_client):
    """The one-seat sale's order is a PAID order like any other: the order scripts get it,
    refuse to cancel or confirm it, refuse a provider's refund (no payment id paid it), and an
    operator's refund makes it REFUNDED (version 2, its event appended) and frees the seat and
    the buyer's count, once; the seat sells again."""
    s, o, z = seats.scripts_for(redis_client), seats.orders_for(redis_client), zone()
    s.initialise(event(6), z)
    ticket = ticket_message(eventId="E", venueId="V", zoneId=1, row="A", column="2")
    sale = s.purchase("E", z, 0, 2, ticket=ticket, buyer="b", limits=seats.Limits(1))
    assert sale.outcome == "OK"
    assert sell(s, "E", z, 1, 1, buyer="b", limits=seats.Limits(1)) == "BUYER_LIMIT_REACHED"
    got = o.get("E", sale.order_id)
    assert (got.outcome, got.order.status, got.order.version) == ("OK", "PAID", 1)
    assert got.order.seats[0].ticket_id == ticket["ticketId"]
    assert o.cancel("E", sale.order_id, caller="b").outcome == "ORDER_PAID"
    paid = o.confirm("E", sale.order_id, payment_id="p-1", amount="100.00", currency="USD")
    assert paid.outcome == "ORDER_NOT_PAYABLE"
    assert o.refund("E", sale.order_id, payment_id="p-1").outcome == "ORDER_NOT_PAID"
    stream = keys.outbox_stream(keys.bucket("E"))
    assert redis_client.xlen(stream) == 1  # none of those changed anything
    refunded = o.refund("E", sale.order_id, payment_id=None)
    assert (refunded.outcome, refunded.order.status, refunded.order.version) == (
        "OK",
        "REFUNDED",
        2,
    )
    sold, left, ev = seats.zone_keys("E", 1)
    assert redis_client.getbit(sold, seats.seat_bit(z, 0, 2)) == 0
    assert redis_client.hgetall(left) == {"zone": "6", "A": "3", "B": "3"}
    assert redis_client.hget(ev, "sold") == "0"
    assert redis_client.hlen(keys.owners_key("E", 1)) == 0
    assert redis_client.hgetall(keys.buyers_key("E")) == {}
    [_, (_, last)] = redis_client.xrange(stream)
    assert json.loads(last["order"]) == refunded.order.raw
    assert o.refund("E", sale.order_id, payment_id=None).outcome == "NO_CHANGE"
    assert redis_client.xlen(stream) == 2
    assert sell(s, "E", z, 0, 2, buyer="b", limits=seats.Limits(1)) == "OK"


def test_an_order_id_that_does_not_name_the_events_bucket_is_refused(redis_client):
    """The order's event lookup must share the sale's slot: another id is a caller's bug."""
    s, z = seats.scripts_for(redis_client), zone()
    s.initialise(event(6), z)
    other = next(e for e in (f"X{n}" for n in range(100)) if keys.bucket(e) != keys.bucket("E"))
    ticket = ticket_message(eventId="E", zoneId=1, row="A", column="1")
    for order_id in (keys.new_order_id(other), "not-a-uuid"):
        with pytest.raises(ValueError, match="does not name the bucket"):
            s.purchase("E", z, 0, 1, ticket=ticket, buyer="b", order_id=order_id)
    assert redis_client.xlen(keys.outbox_stream(keys.bucket("E"))) == 0


def test_a_keyed_sale_stores_its_answer_and_a_repeat_replays_it(redis_client):
    """With a record key the answer is stored in the sale's call (never pending); a repeat of
    the key decides nothing and appends nothing."""
    s, z = seats.scripts_for(redis_client), zone()
    s.initialise(event(6), z)
    record = seats.idempotency_key("E", "k1")
    first = ticket_message(eventId="E", zoneId=1, row="A", column=1)
    sale = s.purchase("E", z, 0, 1, ticket=first, buyer="b", record_key=record, fingerprint="fp")
    assert sale.outcome == "OK"
    assert redis_client.hgetall(record) == {"fp": "fp", "ticket": json.dumps(first)}
    assert 0 < redis_client.ttl(record) <= seats.IDEMPOTENCY_TTL_SECONDS
    other = ticket_message(eventId="E", zoneId=1, row="A", column=2)
    again = s.purchase("E", z, 0, 2, ticket=other, buyer="b", record_key=record, fingerprint="fp2")
    assert again == seats.Sale("REPLAY", "fp", json.dumps(first))
    assert redis_client.getbit(seats.zone_keys("E", 1)[0], seats.seat_bit(z, 0, 2)) == 0
    assert redis_client.xlen(keys.outbox_stream(keys.bucket("E"))) == 1
    refused = s.purchase(
        "E",
        z,
        0,
        1,
        ticket=other,
        buyer="b",
        record_key=seats.idempotency_key("E", "k2"),
        fingerprint="x",
    )
    assert refused.outcome == "SEAT_TAKEN"
    assert not redis_client.exists(seats.idempotency_key("E", "k2"))  # a refusal stores nothing


def test_uninitialised_zone_is_not_sold(redis_client):
    s, z = seats.scripts_for(redis_client), zone()
    assert sell(s, "E", z, 0, 1) == "NOT_LOADED"
    assert redis_client.dbsize() == 0


def test_loading_the_catalog_again_never_unsells(clean_tickets, loaded_seats):
    from tests.conftest import TEST_CATALOG

    catalog = Catalog.from_dict(TEST_CATALOG)
    s = seats.scripts_for(loaded_seats)
    z = catalog.venues["Venue1"].zones[1]
    assert sell(s, "Event1", z, 0, 1) == "OK"
    seats.load_catalog(loaded_seats, catalog)
    assert sell(s, "Event1", z, 0, 1) == "SEAT_TAKEN"
    _, left, ev = seats.zone_keys("Event1", 1)
    assert loaded_seats.hget(left, "zone") == str(z.capacity - 1)
    assert loaded_seats.hget(ev, "sold") == "1"
    assert seats.read_catalog(loaded_seats) == catalog


def test_check_then_act_races_but_the_script_does_not(redis_client):
    """The anti-pattern first: GETBIT, then SETBIT in a second call, sells one seat twice.
    The script, under the same contention, sells it exactly once."""
    z = zone()
    sold_key = seats.zone_keys("E", 1)[0]
    bit = seats.seat_bit(z, 0, 1)
    barrier = threading.Barrier(8)
    naive_winners = []

    def naive_buyer(n: int) -> None:
        barrier.wait()
        if redis_client.getbit(sold_key, bit) == 0:  # check …
            time.sleep(0.01)  # … (any delay: a GC pause, a context switch) …
            redis_client.setbit(sold_key, bit, 1)  # … then act
            naive_winners.append(n)

    threads = [threading.Thread(target=naive_buyer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(naive_winners) > 1, "the race did not show up"

    redis_client.flushdb()
    s = seats.scripts_for(redis_client)
    s.initialise(event(6), z)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def buyer() -> None:
        barrier.wait()
        outcomes.append(sell(s, "E", z, 0, 1))

    threads = [threading.Thread(target=buyer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["OK"] + ["SEAT_TAKEN"] * 7

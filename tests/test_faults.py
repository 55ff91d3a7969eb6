"""Faults under load, against gunicorn, a real relay, real workers, moto, Redis and MariaDB:
workers killed or stopped mid-flow, Redis losing its data mid-sale (and a rebuild that must wait
for what a relay still holds), disagreements reported by `seats reconcile`. The promise checked
each time: every 201 ends as exactly one row, no seat has two owners."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests
from aws_resources import create_messaging
from sqlalchemy import Connection, create_engine, func, select, text
from sqlalchemy.pool import NullPool

import models
from models import seats
from models.tables import Ticket, TicketConflict
from tests.support.aws import queue_counts
from tests.support.factories import sell
from tests.support.outbox import drop_leftovers
from tests.support.processes import BIN, ROOT, Relay, Worker, gunicorn, wait_until
from tests.support.tokens import operator_session

VISIBILITY = 4


@dataclass
class Stack:
    base: str
    env: dict[str, str]
    messaging: object
    relay: Relay

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "flask"), "--app", "web", *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture(scope="module")
def stack(database) -> Iterator[Stack]:
    """gunicorn and a relay on a topic and queue of their own (4 s visibility); workers are
    per test."""
    messaging = create_messaging(f"f{uuid.uuid4().hex[:8]}", visibility_timeout=VISIBILITY)
    env = {
        **messaging.env(),
        "WORKER_HEARTBEAT_SECONDS": "1",
        "RELAY_HEARTBEAT_SECONDS": "1",
        "BROKER_READ_TIMEOUT": "2",
    }
    drop_leftovers(seats.client())
    with gunicorn(env) as base, Relay.start(env) as relay:
        yield Stack(base, env, messaging, relay)


@pytest.fixture
def fresh(no_session_relay, stack, clean_tickets, loaded_seats) -> Stack:
    return stack


def outbox_depth() -> int:
    from models import seats
    from models.seats import keys

    return sum(seats.client().xlen(stream) for stream in keys.outbox_streams())


def buy_many(base: str, event: str, zone: int, count: int, threads: int = 16) -> list[dict]:
    """`count` purchases of distinct seats; the JSON of each answer, with its status."""
    session = operator_session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=threads))
    columns = 40

    def one(n: int) -> dict:
        row, column = divmod(n, columns)
        body = {
            "venueId": "Venue1",
            "eventId": event,
            "zoneId": zone,
            "row": chr(ord("A") + row),
            "column": str(column + 1),
        }
        r = session.post(f"{base}/purchase/api/v1/tickets", json=body, timeout=30)
        return {**r.json(), "httpStatus": r.status_code}

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


def persisted_ids() -> list[str]:
    with models.reader().connect() as conn:
        return list(conn.execute(select(Ticket.ticket_id)).scalars())


def conflicts() -> int:
    with models.reader().connect() as conn:
        return conn.scalar(select(func.count()).select_from(TicketConflict))


def assert_every_201_persisted_once(stack: Stack, answers: list[dict]) -> None:
    sold = [a["ticketId"] for a in answers if a["httpStatus"] == 201]
    assert sold, "nothing was sold"
    wait_until(lambda: set(sold) <= set(persisted_ids()), 90, "every 201 in MySQL")
    wait_until(lambda: sum(queue_counts(stack.messaging.queue_url)) == 0, 60, "queue drained")
    ids = persisted_ids()
    assert sorted(ids) == sorted(sold)  # exactly once each, nothing else
    assert conflicts() == 0
    assert queue_counts(stack.messaging.dead_letter_queue_url) == (0, 0)


@contextmanager
def ticket_table_locked() -> Iterator[Connection]:
    """LOCK TABLES ticket WRITE, on a connection of its own (a LOCK TABLES session must never go
    back to a shared pool), released whatever happens."""
    from plumbing import settings

    engine = create_engine(settings.get().database_url, poolclass=NullPool)
    try:
        with engine.connect() as blocker:
            blocker.execute(text("LOCK TABLES ticket WRITE"))
            try:
                yield blocker
            finally:
                blocker.execute(text("UNLOCK TABLES"))
    finally:
        engine.dispose()


def blocked_ticket_writes(blocker: Connection) -> list[str]:
    """The worker's statements on the ticket table (each in the transaction of a sale's order,
    which has already written the order's rows), waiting for the table lock."""
    return list(
        blocker.execute(
            text(
                "SELECT info FROM information_schema.PROCESSLIST WHERE db = DATABASE()"
                " AND id != CONNECTION_ID()"
                " AND (info LIKE '%FROM ticket %' OR info LIKE 'INSERT INTO ticket %')"
            )
        ).scalars()
    )


def applied(log: str, ticket_id: str) -> bool:
    """The worker's line for the order of that ticket's sale says INSERTED."""
    return any(ticket_id in line and ": INSERTED" in line for line in log.splitlines())


def test_worker_killed_while_order_transactions_are_open(fresh):
    """The worker SIGKILLed while transactions of the sales' orders are open: a table lock, taken
    before the sale starts, holds their ticket INSERTs (after their order rows) until the kill
    lands. Nothing of them is committed, none of their messages acked: all come back after the
    visibility timeout and are applied once. (With the prefork pool this test killed pool
    processes; the thread pool has none, so the whole worker is the unit that can die.)"""
    answers: list[dict] = []
    buyer = threading.Thread(target=lambda: answers.extend(buy_many(fresh.base, "Event1", 11, 300)))
    with Worker.start(fresh.env) as worker:
        with ticket_table_locked() as blocker:
            buyer.start()
            held = wait_until(lambda: blocked_ticket_writes(blocker), 60, "orders held open")
            os.killpg(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait()
        assert ": INSERTED" not in worker.log()
    buyer.join()
    with Worker.start(fresh.env):
        assert_every_201_persisted_once(fresh, answers)
    print("killed with", len(held), "order transactions open")


def test_sigterm_while_order_transactions_wait_finishes_them(fresh):
    """SIGTERM (an ECS deploy) while transactions of the sales' orders wait on a lock: warm
    shutdown waits for the running tasks, so they commit and their messages are acked once the
    lock goes; the messages received but not started are given back; a new worker finds the
    rest."""
    answers: list[dict] = []
    buyer = threading.Thread(target=lambda: answers.extend(buy_many(fresh.base, "Event1", 16, 100)))
    with Worker.start(fresh.env) as worker:
        with ticket_table_locked() as blocker:
            buyer.start()
            held = wait_until(lambda: blocked_ticket_writes(blocker), 60, "orders held open")
            os.kill(worker.proc.pid, signal.SIGTERM)
            wait_until(lambda: "Warm shutdown" in worker.log(), 30, "warm shutdown under way")
        assert worker.proc.wait(timeout=60) == 0
        blocked = [t for s in held for t in re.findall(r"'([0-9a-f-]{36})'", s)]
        assert blocked and all(applied(worker.log(), t) for t in blocked)
    buyer.join()
    with Worker.start(fresh.env) as second:
        assert_every_201_persisted_once(fresh, answers)
    redelivered = [t for t in blocked if t in second.log()]  # STALE there: applied once
    print(f"{len(held)} orders finished at warm shutdown; redelivered: {len(redelivered)}")


def test_whole_worker_killed_mid_flow(fresh):
    with Worker.start(fresh.env) as first:
        answers: list[dict] = []
        buyer = threading.Thread(
            target=lambda: answers.extend(buy_many(fresh.base, "Event1", 12, 300))
        )
        buyer.start()
        wait_until(lambda: first.count("PAID: INSERTED") >= 20, 60, "the worker at work")
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        buyer.join()
    with Worker.start(fresh.env):
        assert_every_201_persisted_once(fresh, answers)


def test_sigterm_under_load_loses_nothing(fresh):
    """An ECS deploy: SIGTERM, warm shutdown, a new worker; the queue drains, all present."""
    with Worker.start(fresh.env) as first:
        answers: list[dict] = []
        buyer = threading.Thread(
            target=lambda: answers.extend(buy_many(fresh.base, "Event1", 13, 300))
        )
        buyer.start()
        wait_until(lambda: first.count("PAID: INSERTED") >= 20, 60, "the worker at work")
        os.kill(first.proc.pid, signal.SIGTERM)
        first.proc.wait(timeout=60)
        assert "Warm shutdown" in first.log()
        buyer.join()
    stopped = time.monotonic()
    with Worker.start(fresh.env):
        # whatever the old worker held comes back within one visibility timeout
        wait_until(
            lambda: (
                queue_counts(fresh.messaging.queue_url)[1] == 0
                or time.monotonic() - stopped > VISIBILITY + 30
            ),
            60,
            "in-flight released",
        )
        assert_every_201_persisted_once(fresh, answers)


def test_redis_loses_its_data_mid_sale(fresh):
    """Redis emptied mid-sale, after the relay took every event so far: purchases answer 503
    until `seats rebuild` has run (after the outbox, the relays and the queue drained); then
    sales resume and no seat is ever sold twice. (Events still in the outbox when Redis loses
    its data are lost with it: see test_failover and the guarantees.)"""
    from models import seats

    with Worker.start(fresh.env):
        first = buy_many(fresh.base, "Event1", 14, 120)
        wait_until(lambda: outbox_depth() == 0, 60, "the outbox relayed")
        seats.client().flushdb()  # all this app has in Redis: the same as FLUSHALL here
        during = buy_many(fresh.base, "Event1", 14, 40)
        assert {a["httpStatus"] for a in during} == {503}
        rebuilt = fresh.cli("seats", "rebuild", "--drain-timeout", "120")
        assert rebuilt.returncode == 0, rebuilt.stderr
        sold_before = sum(a["httpStatus"] == 201 for a in first)
        assert f"Event1: {sold_before} seats sold" in rebuilt.stdout
        # the same 120 seats again, and 40 more: only the 40 new ones sell
        after = buy_many(fresh.base, "Event1", 14, 160)
        statuses = [a["httpStatus"] for a in after]
        assert statuses[:120] == [409] * 120
        assert statuses[120:] == [201] * 40
        assert_every_201_persisted_once(fresh, first + after)


def test_rebuild_waits_for_what_a_relay_still_holds(fresh):
    """A relay read sales from the outbox and cannot hand them to SNS (unreachable); then Redis
    loses its data: those events now exist only in the relay's memory. `seats rebuild` refuses
    while the relay reports it holds entries (else the seats would be free in the rebuilt state
    and their tickets would land later: two owners); once SNS is back and the relay has handed
    them over, the rebuild counts them."""
    from urllib.parse import urlsplit

    from models import seats
    from tests.support.proxy import TcpProxy

    endpoint = urlsplit(os.environ["AWS_ENDPOINT_URL"])
    sns = TcpProxy(endpoint.hostname, endpoint.port)
    env = {**fresh.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{sns.port}"}
    sns.block()
    try:
        with Worker.start(fresh.env), Relay.start(env) as holder:
            os.killpg(fresh.relay.proc.pid, signal.SIGSTOP)  # only `holder` reads now
            try:
                answers = buy_many(fresh.base, "Event1", 17, 10)
                sold = [a for a in answers if a["httpStatus"] == 201]
                wait_until(
                    lambda: "PublishBatch of" in holder.log() and outbox_depth() == len(sold),
                    30,
                    "the relay holding the sales, failing to publish",
                )
                seats.client().flushdb()  # the events are now only in the relay's memory
                refused = fresh.cli("seats", "rebuild", "--drain-timeout", "5")
                assert refused.returncode != 0
                assert "relays still hold entries" in refused.stderr
                sns.unblock()
            finally:
                os.killpg(fresh.relay.proc.pid, signal.SIGCONT)
            rebuilt = fresh.cli("seats", "rebuild", "--drain-timeout", "120")
            assert rebuilt.returncode == 0, rebuilt.stderr
            assert f"Event1: {len(sold)} seats sold" in rebuilt.stdout
            assert_every_201_persisted_once(fresh, answers)
    finally:
        sns.close()


def test_reconcile_reports_disagreements_and_changes_nothing(fresh):
    """`seats reconcile` is a read-only report: a seat sold in Redis whose event was lost
    (deleted from the outbox by hand: a bug or a data loss), and a ticket in MySQL whose seat is
    free in Redis, are listed; nothing is freed or written; exit status 1."""
    from models import seats
    from models.catalog import Catalog
    from models.seats import keys
    from tests.conftest import TEST_CATALOG

    catalog = Catalog.from_dict(TEST_CATALOG)
    zone = catalog.venues["Venue1"].zones[15]
    with Worker.start(fresh.env):
        answers = buy_many(fresh.base, "Event1", 15, 5)  # A1…A5, real tickets
        assert_every_201_persisted_once(fresh, answers)
    r = seats.client()
    clean = fresh.cli("seats", "reconcile")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    # B7 sold in Redis, its outbox entry gone; A1 freed in Redis behind MySQL's back
    stream = keys.outbox_stream(keys.bucket("Event1"))
    r.xgroup_destroy(stream, keys.RELAY_GROUP)  # no relay may take the entry meanwhile
    assert sell(seats.scripts_for(r), "Event1", zone, 1, 7) == "OK"
    r.delete(stream)
    sold_key = seats.zone_keys("Event1", 15)[0]
    r.setbit(sold_key, seats.seat_bit(zone, 0, 1), 0)
    before = {k: r.dump(k) for k in r.scan_iter("seats:*")}
    done = fresh.cli("seats", "reconcile")
    assert done.returncode == 1, done.stderr
    assert "sold in Redis, no ticket, no outbox entry: 1\n  Event1/15/B7" in done.stdout
    assert "ticket in MySQL, seat free in Redis: 1\n  Event1/15/A1" in done.stdout
    assert {k: r.dump(k) for k in r.scan_iter("seats:*")} == before  # nothing changed


def test_rebuild_waits_for_sales_still_in_the_outbox(fresh):
    """A rebuild with sales of the event still in the outbox (the relay stopped): writing the
    state from MySQL now would free their seats while their tickets are on the way. It refuses,
    leaving the event closed; once relayed and persisted, it counts them."""
    from models import seats

    with Worker.start(fresh.env):
        os.killpg(fresh.relay.proc.pid, signal.SIGSTOP)
        try:
            answers = buy_many(fresh.base, "Event1", 18, 6)
            sold = [a for a in answers if a["httpStatus"] == 201]
            assert outbox_depth() == len(sold) > 0
            refused = fresh.cli("seats", "rebuild", "--event", "Event1", "--drain-timeout", "3")
            assert refused.returncode != 0
            assert "outbox not relayed" in refused.stderr
            assert not seats.event_loaded(seats.client(), "Event1")  # closed: purchases 503
        finally:
            os.killpg(fresh.relay.proc.pid, signal.SIGCONT)
        rebuilt = fresh.cli("seats", "rebuild", "--event", "Event1", "--drain-timeout", "120")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert f"Event1: {len(sold)} seats sold" in rebuilt.stdout
        assert_every_201_persisted_once(fresh, answers)

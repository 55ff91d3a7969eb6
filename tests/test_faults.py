"""Faults under load, against gunicorn, real workers, moto, Redis and MariaDB: workers killed
or stopped mid-flow, Redis losing its data mid-sale, a crash between seat decision and publish.
The promise checked each time: every 201 ends as exactly one row, no seat has two owners."""

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
from models.tables import Ticket, TicketConflict
from tests.support.aws import queue_counts
from tests.support.factories import sell
from tests.support.processes import BIN, ROOT, Worker, gunicorn, wait_until

VISIBILITY = 4


@dataclass
class Stack:
    base: str
    env: dict[str, str]
    messaging: object

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
    """gunicorn on a topic and queue of its own (4 s visibility); workers are per test."""
    messaging = create_messaging(f"f{uuid.uuid4().hex[:8]}", visibility_timeout=VISIBILITY)
    env = {**messaging.env(), "WORKER_HEARTBEAT_SECONDS": "1", "BROKER_READ_TIMEOUT": "2"}
    with gunicorn(env) as base:
        yield Stack(base, env, messaging)


@pytest.fixture
def fresh(stack, clean_tickets, loaded_seats) -> Stack:
    return stack


def buy_many(base: str, event: str, zone: int, count: int, threads: int = 16) -> list[dict]:
    """`count` purchases of distinct seats; the JSON of each answer, with its status."""
    session = requests.Session()
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


def blocked_batch_insert(blocker: Connection) -> str | None:
    """The worker's multi-row INSERT of several tickets, waiting for the table lock, if any."""
    statements = blocker.execute(
        text(
            "SELECT info FROM information_schema.PROCESSLIST"
            " WHERE db = DATABASE() AND id != CONNECTION_ID() AND info LIKE 'INSERT INTO ticket %'"
        )
    ).scalars()
    return next((s for s in statements if s.count("'PAID'") >= 2), None)


def test_worker_killed_while_a_batch_transaction_is_open(fresh):
    """The worker SIGKILLed while one of its batch transactions is open: a table lock, taken
    before the sale starts, holds the multi-row INSERT of several tickets until the kill lands.
    Nothing of that batch is committed, none of its messages acked: all come back after the
    visibility timeout and are persisted once. (With the prefork pool this test killed pool
    processes; the thread pool has none, so the whole worker is the unit that can die.)"""
    answers: list[dict] = []
    buyer = threading.Thread(target=lambda: answers.extend(buy_many(fresh.base, "Event1", 11, 300)))
    with Worker.start(fresh.env) as worker:
        with ticket_table_locked() as blocker:
            buyer.start()
            held = wait_until(lambda: blocked_batch_insert(blocker), 60, "a batch held open")
            os.killpg(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait()
        assert "persisted:" not in worker.log()
    buyer.join()
    with Worker.start(fresh.env):
        assert_every_201_persisted_once(fresh, answers)
    print("killed with a batch of", held.count("'PAID'"), "tickets open")


def test_sigterm_while_a_batch_waits_finishes_it(fresh):
    """SIGTERM (an ECS deploy) while a batch transaction waits on a lock: warm shutdown waits for
    the running tasks, so the batch commits and its messages are acked once the lock goes; the
    messages received but not started are given back; a new worker finds the rest."""
    answers: list[dict] = []
    buyer = threading.Thread(target=lambda: answers.extend(buy_many(fresh.base, "Event1", 16, 100)))
    with Worker.start(fresh.env) as worker:
        with ticket_table_locked() as blocker:
            buyer.start()
            held = wait_until(lambda: blocked_batch_insert(blocker), 60, "a batch held open")
            os.kill(worker.proc.pid, signal.SIGTERM)
            wait_until(lambda: "Warm shutdown" in worker.log(), 30, "warm shutdown under way")
        assert worker.proc.wait(timeout=60) == 0
        blocked = re.findall(r"'([0-9a-f-]{36})'", held)
        assert blocked and all(f"ticket {t} persisted: INSERTED" in worker.log() for t in blocked)
    buyer.join()
    with Worker.start(fresh.env) as second:
        assert_every_201_persisted_once(fresh, answers)
    redelivered = [t for t in blocked if f"persist_ticket[{t}] received" in second.log()]
    print(f"batch of {len(blocked)} finished at warm shutdown; redelivered: {len(redelivered)}")


def test_whole_worker_killed_mid_flow(fresh):
    with Worker.start(fresh.env) as first:
        answers: list[dict] = []
        buyer = threading.Thread(
            target=lambda: answers.extend(buy_many(fresh.base, "Event1", 12, 300))
        )
        buyer.start()
        wait_until(lambda: first.count("persisted: INSERTED") >= 20, 60, "the worker at work")
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
        wait_until(lambda: first.count("persisted: INSERTED") >= 20, 60, "the worker at work")
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
    """Redis emptied mid-sale: purchases answer 503 until `seats rebuild` has run (after the queue
    drained); then sales resume and no seat is ever sold twice."""
    from models import seats

    with Worker.start(fresh.env):
        first = buy_many(fresh.base, "Event1", 14, 120)
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


def test_reconcile_frees_a_seat_left_by_a_crash_before_publish(fresh):
    """A purchase process died after the seat decision and before the publish: the seat is
    sold in Redis, with no ticket and no message. `seats reconcile` frees it, and only it."""
    from models import seats
    from models.catalog import Catalog
    from tests.conftest import TEST_CATALOG

    catalog = Catalog.from_dict(TEST_CATALOG)
    zone = catalog.venues["Venue1"].zones[15]
    with Worker.start(fresh.env):
        answers = buy_many(fresh.base, "Event1", 15, 5)  # A1…A5, real tickets
        assert_every_201_persisted_once(fresh, answers)
        scripts = seats.scripts_for(seats.client())
        assert sell(scripts, "Event1", zone, 1, 7) == "OK"  # B7: the crash
        done = fresh.cli("seats", "reconcile", "--grace", "2")
    assert done.returncode == 0, done.stderr
    assert "suspects (sold in Redis, no ticket): 1" in done.stdout
    assert "freed Event1/15/B7" in done.stdout
    assert sell(scripts, "Event1", zone, 1, 7) == "OK"  # free again
    for column in range(1, 6):
        assert sell(scripts, "Event1", zone, 0, column) == "SEAT_TAKEN"

"""A 201 and a Redis failover: what WAIT keeps, what asynchronous replication loses.

Real processes: a `redis-server` primary, a `redis-server --replicaof` replica and the purchase
API in gunicorn on the primary. The replica lags because the test holds its replication link
(tests/support/replication.py); then the primary is SIGKILLed, what it had sent and the replica
had not received dies with it, and the replica is promoted by hand (REPLICAOF NO ONE), as a
failover does. The promoted node is the judge: which sales it holds, with their outbox entries.
"""

from __future__ import annotations

import contextlib
import json
import signal
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from models import seats
from models.catalog import Catalog
from models.seats import keys
from tests.conftest import TEST_CATALOG
from tests.support.processes import gunicorn, wait_until
from tests.support.replication import REDIS_SERVER, Pair, primary_and_replica
from tests.support.tokens import operator_session

API = operator_session()  # every request with an operator's token

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server not installed (Debian: apt-get install redis-server)",
)
PURCHASE = "/purchase/api/v1/tickets"
CATALOG = Catalog.from_dict(TEST_CATALOG)
EVENT, ZONE_ID = "Event1", 1
VENUE = CATALOG.events[EVENT].venue_id
ZONE = CATALOG.venues[VENUE].zones[ZONE_ID]
KEPT, LAGGING = 10, 5  # sales made while the replica follows, then while it lags
# WAIT's timeout is generous so that a replica that follows always acknowledges in time on a
# loaded machine; the socket timeout must outlast it (else a short WAIT is a read timeout)
WAIT_TIMEOUT_MS = 1000


@dataclass(frozen=True)
class Attempt:
    """One purchase: the seat, its Idempotency-Key and the answer."""

    row: str
    column: int
    key: str
    status: int
    code: str | None
    ticket_id: str | None
    retry_after: str | None


@pytest.fixture
def pair() -> Iterator[Pair]:
    """A fresh primary and replica, the test catalog's seat state written on the primary and
    replicated."""
    with primary_and_replica() as local:
        primary = local.primary()
        for event in CATALOG.events.values():  # as tests/conftest.py loaded_seats, no tickets
            seats.rebuild_event(primary, event, CATALOG.venues[event.venue_id].zones, {})
        seats.publish_catalog(primary, CATALOG)
        wait_until(local.caught_up, 30, "the seat state on the replica")
        yield local


@contextlib.contextmanager
def purchase_api(url: str, wait_replicas: int) -> Iterator[str]:
    """The purchase API in gunicorn (one worker) on the Redis at `url`."""
    env = {
        "REDIS_URL": url,
        "REDIS_CLUSTER": "false",
        # empty is unset, no WAIT (settings refuses an explicit 0)
        "REDIS_WAIT_REPLICAS": str(wait_replicas),
        "REDIS_WAIT_TIMEOUT_MS": str(WAIT_TIMEOUT_MS),
        "REDIS_SOCKET_TIMEOUT": str(WAIT_TIMEOUT_MS / 1000 + 5),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_THREADS": "2",
    }
    log = Path(tempfile.mkstemp(prefix="gunicorn-failover-", suffix=".log")[1])
    with gunicorn(env, app="web:create_app('purchase')", log=log) as base:
        try:
            wait_until(lambda: _ready(base), 60, "the purchase API")
        except AssertionError:
            raise AssertionError(log.read_text(errors="replace")[-3000:]) from None
        yield base


def _ready(base: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return API.get(base + "/purchase/health/deep", timeout=10).status_code == 200
    return False


def buy(base: str, row: str, column: int) -> Attempt:
    """A purchase with an Idempotency-Key of its own."""
    key = f"failover-{uuid.uuid4()}"
    response = _post(base, row, column, key)
    answer = response.json()
    return Attempt(
        row,
        column,
        key,
        response.status_code,
        answer.get("code") if response.status_code >= 400 else None,
        answer.get("ticketId") if response.status_code == 201 else None,
        response.headers.get("Retry-After"),
    )


def buy_again(base: str, attempt: Attempt) -> requests.Response:
    """The same request with the same Idempotency-Key."""
    return _post(base, attempt.row, attempt.column, attempt.key)


def _post(base: str, row: str, column: int, key: str) -> requests.Response:
    body = {"venueId": VENUE, "eventId": EVENT, "zoneId": ZONE_ID, "row": row}
    return API.post(
        base + PURCHASE,
        json={**body, "column": str(column)},
        headers={"Idempotency-Key": key},
        timeout=30,
    )


@dataclass(frozen=True)
class SeatState:
    """What one Redis node holds of the zone: sold bits, owners and the outbox's tickets."""

    sold: set[tuple[str, int]]
    owners: dict[tuple[str, int], str]
    outbox: set[str]

    @classmethod
    def read(cls, r: redis.Redis) -> SeatState:
        scripts = seats.SeatScripts(r)
        state = scripts.zone_state(EVENT, ZONE)
        assert state is not None, "the zone's seat state is missing"
        grid, _ = state
        sold = {
            (chr(ord("A") + i), c + 1)
            for i, row in enumerate(grid)
            for c, bit in enumerate(row)
            if bit == "1"
        }
        owners = {
            _seat(int(bit)): ticket_id
            for bit, ticket_id in r.hgetall(seats.owners_key(EVENT, ZONE_ID)).items()
        }
        entries = r.xrange(keys.outbox_stream(keys.bucket(EVENT)))
        outbox = {  # the sales' orders, one seat each: their tickets
            seat["ticketId"]
            for _, fields in entries
            if fields["kind"] == "order"
            for seat in json.loads(fields["order"])["seats"]
        }
        return cls(sold, owners, outbox)

    def holds(self, attempt: Attempt) -> bool:
        """The sale of `attempt` is here: seat sold to its ticket, its outbox entry present."""
        seat = (attempt.row, attempt.column)
        return (
            seat in self.sold
            and self.owners.get(seat) == attempt.ticket_id
            and attempt.ticket_id in self.outbox
        )

    def free(self, attempt: Attempt) -> bool:
        """Nothing of a sale of this seat is here."""
        seat = (attempt.row, attempt.column)
        return seat not in self.sold and seat not in self.owners


def _seat(bit: int) -> tuple[str, int]:
    return chr(ord("A") + bit // ZONE.columns), bit % ZONE.columns + 1


def seats_in_row(row: str, count: int) -> list[tuple[str, int]]:
    return [(row, column) for column in range(1, count + 1)]


def failover(pair: Pair) -> redis.Redis:
    """The primary dies (SIGKILL) with what the replica has not received; the replica is
    promoted by hand."""
    pair.kill_primary()
    wait_until(pair.link.upstream_closed.is_set, 30, "the link to see the primary gone")
    return pair.promote_replica()


def test_with_wait_1_every_201_survives_a_failover(pair):
    with purchase_api(pair.primary_url, wait_replicas=1) as base:
        following = [buy(base, r, c) for r, c in seats_in_row("A", KEPT)]
        pair.link.hold()  # the replica lags from here on
        lagging = [buy(base, r, c) for r, c in seats_in_row("B", LAGGING)]
    on_primary = SeatState.read(pair.primary())
    promoted = SeatState.read(failover(pair))

    answered_201 = [a for a in following + lagging if a.status == 201]
    kept = [a for a in answered_201 if promoted.holds(a)]
    unknown = [a for a in following + lagging if a.code == "OUTCOME_UNKNOWN"]
    print(
        f"WAIT 1: {len(kept)}/{len(answered_201)} 201s kept after the failover, "
        f"{len(unknown)} OUTCOME_UNKNOWN (sold on the old primary: "
        f"{sum(not on_primary.free(a) for a in unknown)}, "
        f"on the promoted replica: {sum(not promoted.free(a) for a in unknown)})"
    )
    assert pair.link.dropped > 0  # the replica really missed writes
    assert kept == answered_201, "a 201 was lost in the failover"
    assert [a.status for a in following] == [201] * KEPT
    assert [(a.status, a.code) for a in lagging] == [(503, "OUTCOME_UNKNOWN")] * LAGGING
    assert all(a.retry_after for a in lagging)
    # the sales answered OUTCOME_UNKNOWN were made on the primary and died with it
    assert not any(on_primary.free(a) for a in lagging)
    assert all(promoted.free(a) for a in lagging)

    # the buyers told OUTCOME_UNKNOWN learn the outcome with their key, on the new primary:
    # nothing was sold, so the retry sells; the 201s replay their ticket
    with purchase_api(f"redis://127.0.0.1:{pair.replica_port}/0", wait_replicas=0) as base:
        retried = [buy_again(base, a) for a in lagging]
        replayed = [buy_again(base, a) for a in following]
    assert [r.status_code for r in retried] == [201] * LAGGING
    assert not any(r.headers.get("Idempotent-Replayed") for r in retried)
    assert [r.headers.get("Idempotent-Replayed") for r in replayed] == ["true"] * KEPT
    assert [r.json()["ticketId"] for r in replayed] == [a.ticket_id for a in following]


def test_without_wait_the_201s_made_while_the_replica_lags_are_lost(pair):
    with purchase_api(pair.primary_url, wait_replicas=0) as base:
        following = [buy(base, r, c) for r, c in seats_in_row("A", KEPT)]
        wait_until(pair.caught_up, 30, "the replica to apply the first sales")
        pair.link.hold()
        lagging = [buy(base, r, c) for r, c in seats_in_row("B", LAGGING)]
    promoted = SeatState.read(failover(pair))

    answered_201 = [a for a in following + lagging if a.status == 201]
    lost = [a for a in answered_201 if not promoted.holds(a)]
    print(
        f"no WAIT: {len(answered_201) - len(lost)}/{len(answered_201)} 201s kept after the "
        f"failover, {len(lost)} lost (seat free, no outbox entry): "
        + ", ".join(f"{a.row}{a.column}" for a in lost)
    )
    assert [a.status for a in following + lagging] == [201] * (KEPT + LAGGING)
    assert all(promoted.holds(a) for a in following)
    # exactly the 201s made while the replica lagged are gone: seat free, no owner, no event
    assert lost == lagging
    assert all(promoted.free(a) and a.ticket_id not in promoted.outbox for a in lost)
    assert promoted.outbox == {a.ticket_id for a in following}


def test_after_outcome_unknown_the_same_key_replays_the_sale_once_the_replica_caught_up(pair):
    with purchase_api(pair.primary_url, wait_replicas=1) as base:
        pair.link.hold()
        unknown = buy(base, "C", 1)
    assert (unknown.status, unknown.code) == (503, "OUTCOME_UNKNOWN")
    # the retries reach another process (as behind a load balancer), whose connections never
    # wrote: the replay's own write is what its WAIT waits for (Redis 7.0 counts any command
    # on the connection; a server that counts only propagated ones needs that write)
    with purchase_api(pair.primary_url, wait_replicas=1) as base:
        # while the replica still lags, the retry cannot promise more: OUTCOME_UNKNOWN again
        still = buy_again(base, unknown)
        assert (still.status_code, still.json().get("code")) == (503, "OUTCOME_UNKNOWN")

        pair.link.release()
        wait_until(pair.caught_up, 30, "the replica to catch up")
        replays = [buy_again(base, unknown) for _ in range(2)]
    sold = SeatState.read(pair.primary())
    ticket_id = sold.owners[("C", 1)]
    print(f"OUTCOME_UNKNOWN, then the same key once the replica caught up: 201 {ticket_id}")
    assert [(r.status_code, r.headers.get("Idempotent-Replayed")) for r in replays] == [
        (201, "true")
    ] * 2
    assert {r.json()["ticketId"] for r in replays} == {ticket_id}
    assert sold.outbox == {ticket_id}  # one sale, one event: the retries sold nothing more
    assert SeatState.read(pair.replica()).owners == sold.owners


def test_a_stopped_replica_is_not_a_lagging_one(pair):
    """Why the test holds the link instead of SIGSTOPping the replica: what the primary sent
    waits in the stopped replica's socket buffer and is applied after SIGCONT, even though the
    primary died in between, so a stopped replica loses nothing."""
    primary = pair.primary()
    pair.replica_process.send_signal(signal.SIGSTOP)
    try:
        primary.set("written-while-the-replica-was-stopped", "1")
        assert primary.wait(1, 200) == 0  # not acknowledged: WAIT sees it as behind
    finally:
        pair.kill_primary()
        pair.replica_process.send_signal(signal.SIGCONT)
    wait_until(pair.link.upstream_closed.is_set, 30, "the link to see the primary gone")
    # the replica read up to the end of its link: what came before that end is applied
    wait_until(lambda: not pair.link_up(), 30, "the replica to see its primary gone")
    assert pair.link.dropped == 0
    assert pair.replica().get("written-while-the-replica-was-stopped") == "1"

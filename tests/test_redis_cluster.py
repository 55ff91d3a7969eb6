"""The purchase API and the catalog load on Redis Cluster, as on ElastiCache in cluster mode.

This module starts its own 3-master cluster (three `redis-server --cluster-enabled yes`, joined
by `redis-cli --cluster create`) and runs the real processes against it with REDIS_CLUSTER=true:
`flask --app web catalog load`, `seats reconcile` and `seats rebuild` as subprocesses, the
relay, and the app in gunicorn. The cluster itself is the judge: a multi-key command or script
whose keys span two slots is refused with CROSSSLOT, and every master counts such refusals in
INFO errorstats.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from aws_resources import create_messaging
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster, key_slot
from redis.exceptions import ClusterCrossSlotError
from redis.retry import Retry

import models
from models import seats
from models.catalog import Catalog
from models.seats import outbox
from models.seats.keys import tag
from models.tickets import TicketRecord, persist_ticket
from plumbing import settings
from tests.conftest import TEST_CATALOG
from tests.support.factories import clear_tickets, sell, ticket_message
from tests.support.processes import BIN, ROOT, Relay, gunicorn, wait_for_port, wait_until
from tests.support.tokens import operator_session

API = operator_session()  # every request with an operator's token

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None or REDIS_CLI is None,
    reason="redis-server and redis-cli not installed (Debian: apt-get install redis-server)",
)
MASTERS = 3
PURCHASE = "/purchase/api/v1/tickets"
CATALOG = Catalog.from_dict(TEST_CATALOG)


def server_major_version() -> int:
    """redis-server's major version (Debian 12 ships 7.0; Debian 11's 6.0 lacks the option)."""
    out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True).stdout
    return int(out.split(" v=", 1)[1].split(".", 1)[0])


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@dataclass
class LocalCluster:
    """Three redis-server processes in cluster mode, without persistence, in a temp directory."""

    directory: Path
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[LocalCluster]:
        """A fresh cluster in a temp directory; its processes stop even when a test fails."""
        with tempfile.TemporaryDirectory(prefix="redis-cluster-") as directory:
            local = cls(Path(directory))
            try:
                local.start()
                yield local
            finally:
                local.stop()

    @property
    def url(self) -> str:
        """What REDIS_URL holds: any one node, as ElastiCache's configuration endpoint."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> None:
        for _ in range(MASTERS):
            port = cluster_port()
            self.ports.append(port)
            self.processes.append(self._server(port))
        for port in self.ports:
            wait_for_port(port)
        nodes = [f"127.0.0.1:{p}" for p in self.ports]
        created = subprocess.run(
            [REDIS_CLI, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        wait_until(self._ok, 30, "cluster_state:ok on every node")

    def _server(self, port: int) -> subprocess.Popen:
        options = {
            "port": str(port),
            "bind": "127.0.0.1",
            "cluster-enabled": "yes",
            "cluster-config-file": f"nodes-{port}.conf",
            "save": "",
            "appendonly": "no",
            "dir": str(self.directory),
            "logfile": str(self.directory / f"redis-{port}.log"),
        }
        if server_major_version() >= 7:  # DEBUG SLEEP (a node that stalls) is opt-in since 7
            options["enable-debug-command"] = "local"
        return subprocess.Popen(
            [REDIS_SERVER, *(arg for k, v in options.items() for arg in (f"--{k}", v))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node: sees only that node's keys."""
        return redis.Redis(port=port, decode_responses=True, socket_timeout=10)

    def _ok(self) -> bool:
        return all(self.node(p).cluster("info")["cluster_state"] == "ok" for p in self.ports)

    def owner(self, key: str) -> int:
        """The port of the master serving the key's slot, from the cluster's own slot map."""
        slot = key_slot(key.encode())
        for start, end, master, *_ in self.node(self.ports[0]).execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise AssertionError(f"slot {slot} of {key} not covered")

    def keys_by_node(self, pattern: str) -> dict[int, set[str]]:
        return {p: set(self.node(p).scan_iter(pattern, count=1000)) for p in self.ports}

    def errorstats(self) -> dict[int, dict[str, dict[str, int]]]:
        """Per master, the errors it answered by kind (errorstat_CROSSSLOT: {count: N}, …)."""
        return {p: self.node(p).info("errorstats") for p in self.ports}

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A fresh local 3-master Redis Cluster; its processes stop even when a test fails."""
    with LocalCluster.running() as local:
        yield local


@pytest.fixture(scope="module")
def cluster_env(cluster: LocalCluster) -> dict[str, str]:
    """The environment of a process on the cluster; the monitoring plane keeps its plain Redis."""
    return {
        "REDIS_URL": cluster.url,
        "REDIS_CLUSTER": "true",
        "MONITOR_BROKER_URL": settings.get().monitor_url(),
    }


def flask(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`flask --app web …` as an operator runs it, with `env` over this process's environment;
    with `check`, a non-zero exit fails the test."""
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "web", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_setting_makes_seats_client_a_cluster_client_without_retries(
    cluster, cluster_env, monkeypatch
):
    for name, value in cluster_env.items():
        monkeypatch.setenv(name, value)
    configured = settings.load()
    monkeypatch.setattr(settings, "get", lambda: configured)
    r = seats.client()
    assert isinstance(r, RedisCluster)
    assert r.retry.get_retries() == 0  # a timed-out script is never re-sent by the client
    assert {n.port for n in r.get_primaries()} == set(cluster.ports)
    assert r.ping(target_nodes=RedisCluster.PRIMARIES)


def test_cluster_mode_never_sends_the_monitoring_plane_to_the_cluster(cluster, monkeypatch):
    monkeypatch.setenv("REDIS_URL", cluster.url)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    monkeypatch.setenv("MONITOR_BROKER_URL", cluster.url)
    with pytest.raises(settings.SettingsError, match="MONITOR_BROKER_URL must not be REDIS_URL"):
        settings.load()
    monkeypatch.delenv("MONITOR_BROKER_URL")
    unset = settings.load()  # the purchase service needs no monitoring plane …
    with pytest.raises(settings.SettingsError, match="MONITOR_BROKER_URL must be set"):
        unset.monitor_url()  # … but the worker and the events API refuse to start
    monkeypatch.setenv("REDIS_CLUSTER", "no")
    assert settings.load().monitor_url() == cluster.url  # without a cluster: one Redis for all


@pytest.fixture(scope="module")
def loaded_cluster(cluster, cluster_env, database) -> dict[str, str]:
    """The catalog loaded into the cluster by the real CLI, from MySQL with no tickets and no
    event that ever had seat state (a first deploy)."""
    from sqlalchemy import text

    with models.writer().begin() as conn:
        clear_tickets(conn)
        conn.execute(text("UPDATE event SET seat_state_created_on = NULL"))
    quiet = create_messaging(f"rc{uuid.uuid4().hex[:8]}")  # an empty queue: nothing in flight
    env = {
        **cluster_env,
        **quiet.env(),
        "BROKER_CONNECT_TIMEOUT": "0.5",
        "BROKER_READ_TIMEOUT": "0.5",
    }
    done = flask(env, "catalog", "load")
    assert f"{len(CATALOG.events)} events ({len(CATALOG.events)} new)" in done.stdout
    return env


def test_catalog_load_spreads_the_events_over_the_masters_one_slot_each(cluster, loaded_cluster):
    events = cluster.keys_by_node("seats:{s*}:*:event")
    found = {key.split(":")[2] for keys in events.values() for key in keys}
    assert found == set(CATALOG.events)
    assert len([port for port, keys in events.items() if keys]) >= 2, events
    for event_id, event in CATALOG.events.items():
        home = cluster.owner(seats.event_key(event_id))
        keys = cluster.keys_by_node(f"seats:{tag(event_id)}:{event_id}:*")
        zones = len(CATALOG.venues[event.venue_id].zones)
        assert len(keys[home]) == 1 + 2 * zones, event_id  # event hash, per zone: sold + left
        assert all(not elsewhere for port, elsewhere in keys.items() if port != home), event_id
    # the catalog copy is one key on one master
    assert sum(len(k) for k in cluster.keys_by_node(seats.CATALOG_KEY).values()) == 1


@pytest.fixture(scope="module")
def base(loaded_cluster, cluster_env) -> Iterator[str]:
    """The three APIs in gunicorn on the cluster, publishing to a topic of their own."""
    env = {**cluster_env, **create_messaging(f"rg{uuid.uuid4().hex[:8]}").env()}
    with gunicorn(env) as url:
        yield url


def buy(base: str, event_id: str, zone_id: int, row: str, column: int, **headers: str):
    venue = CATALOG.events[event_id].venue_id
    body = {"venueId": venue, "eventId": event_id, "zoneId": zone_id, "row": row}
    return API.post(
        base + PURCHASE, json={**body, "column": str(column)}, headers=headers, timeout=30
    )


def code(response: requests.Response) -> str | int:
    return response.json()["code"] if response.status_code >= 400 else response.status_code


def test_purchases_on_the_cluster_give_every_outcome_of_the_contract(cluster, base):
    assert code(buy(base, "Event1", 1, "A", 1)) == 201
    assert code(buy(base, "Event1", 1, "A", 1)) == "SEAT_TAKEN"
    # TinyCapped: 2 seats for the whole event
    assert [code(buy(base, "TinyCapped", 3, "A", c)) for c in (1, 2, 3)] == [
        201,
        201,
        "EVENT_SOLD_OUT",
    ]
    # TinyEvent zone 1: at most 2 per row; zone 2: at most 3 in the zone
    assert [code(buy(base, "TinyEvent", 1, "A", c)) for c in (1, 2, 3)] == [201, 201, "ROW_FULL"]
    outcomes = [code(buy(base, "TinyEvent", 2, r, c)) for r, c in (("A", 1), ("A", 2), ("B", 1))]
    assert outcomes == [201, 201, 201]
    assert code(buy(base, "TinyEvent", 2, "B", 2)) == "ZONE_FULL"
    events = {cluster.owner(seats.event_key(e)) for e in ("Event1", "TinyCapped", "TinyEvent")}
    assert len(events) >= 2  # the sales above really went to more than one master


def test_idempotency_keys_on_the_cluster(cluster, base):
    key = f"cluster-{uuid.uuid4()}"
    first = buy(base, "Event3", 2, "C", 4, **{"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    again = buy(base, "Event3", 2, "C", 4, **{"Idempotency-Key": key})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["ticketId"] == first.json()["ticketId"]
    # keys are scoped to the event: the same key for another event is another purchase
    other = buy(base, "Event5", 1, "A", 1, **{"Idempotency-Key": key})
    assert code(other) == 201
    records = cluster.keys_by_node(f"seats:{tag('Event3')}:Event3:idem:*")
    assert sum(len(k) for k in records.values()) == 1
    assert records[cluster.owner(seats.event_key("Event3"))]


def test_availability_seat_map_and_health_on_the_cluster(base):
    zones = CATALOG.venues["TinyVenue"].zones
    after_sales = API.get(base + "/purchase/api/v1/events/TinyEvent/availability", timeout=30)
    assert after_sales.status_code == 200, after_sales.text
    remaining = {z["zoneId"]: z["remaining"] for z in after_sales.json()["zones"]}
    assert remaining == {1: zones[1].capacity - 2, 2: zones[2].capacity - 3, 3: zones[3].capacity}
    seat_map = API.get(base + "/purchase/api/v1/events/TinyEvent/zones/1/seats", timeout=30)
    assert seat_map.status_code == 200, seat_map.text
    assert seat_map.json()["seats"] == ["110", "000"]
    assert seat_map.json()["remaining"]["rows"] == {"A": 0, "B": 2}

    health = API.get(base + "/purchase/health/deep", timeout=30)
    assert (health.status_code, health.json()["checks"]["redis"]) == (200, "UP")
    # /events/health reads the heartbeats from the monitoring plane, not from the cluster
    events = API.get(base + "/events/health/deep", timeout=30).json()
    assert not any("heartbeats unreadable" in r for r in events.get("reasons", []))


def sold_everywhere(cluster: LocalCluster) -> int:
    """Seats sold in the cluster, from the event counters (every event is on some master)."""
    r = seats.connect(cluster.url, cluster=True)
    return sum(int(r.hget(seats.event_key(e), "sold")) for e in CATALOG.events)


def test_relay_reconcile_and_rebuild_on_every_shard(
    cluster, base, loaded_cluster, cluster_env, no_session_relay
):
    """The relay drains the outbox streams of every master; seats reconcile reads every shard
    (sales on their way while the outbox holds them, sold without a ticket once relayed with no
    worker here); seats rebuild writes one event back."""
    assert code(buy(base, "Event6", 2, "D", 5)) == 201
    assert code(buy(base, "TinyEvent", 3, "B", 2)) == 201
    r = seats.connect(cluster.url, cluster=True)
    sold = sold_everywhere(cluster)
    on_the_way = flask(loaded_cluster, "seats", "reconcile")
    assert f"sold, event still in the outbox (on its way): {sold}" in on_the_way.stdout
    assert outbox.depth(r) == sold
    streams = {port for port, keys in cluster.keys_by_node("outbox:{s*}").items() if keys}
    assert len(streams) >= 2  # the outbox itself is spread over the masters
    relay_env = {**cluster_env, **create_messaging(f"rr{uuid.uuid4().hex[:8]}").env()}
    with Relay.start(relay_env):
        wait_until(lambda: outbox.depth(r) == 0, 60, "the relay to drain every master's outbox")
    report = flask(loaded_cluster, "seats", "reconcile", check=False)
    # no worker runs here: every seat sold on the cluster is now a seat without a ticket
    assert report.returncode == 1, report.stdout + report.stderr
    assert f"sold in Redis, no ticket, no outbox entry: {sold}" in report.stdout
    assert "Event6/2/D5" in report.stdout and "TinyEvent/3/B2" in report.stdout

    with models.writer().begin() as conn:
        ticket = ticket_message(venueId="TinyVenue", eventId="TinyEvent", zoneId=3, row="A")
        persist_ticket(conn, TicketRecord.from_json(ticket))
    rebuilt = flask(loaded_cluster, "seats", "rebuild", "--event", "TinyEvent")
    assert "TinyEvent: 1 seats sold" in rebuilt.stdout
    assert code(buy(base, "TinyEvent", 3, "A", 1)) == "SEAT_TAKEN"  # persisted: sold again
    assert code(buy(base, "TinyEvent", 3, "B", 2)) == 201  # sold without a ticket: freed


def test_scan_iter_of_a_cluster_client_sees_every_master(cluster, base):
    assert code(buy(base, "Event7", 4, "E", 9)) == 201
    r = seats.connect(cluster.url, cluster=True, decode_responses=False)
    bits = sum(r.bitcount(key) for key in r.scan_iter(b"seats:*:sold", count=1000))
    assert bits == sold_everywhere(cluster)
    on_each = cluster.keys_by_node("seats:*:sold")
    assert len([port for port, keys in on_each.items() if keys]) >= 2


def test_a_stalled_master_is_a_timeout_and_the_script_is_not_sent_twice(cluster, loaded_cluster):
    """The node serving the seat sleeps longer than the socket timeout: the purchase script is
    sent once and the caller gets the timeout (it answers 503); a client that retried would
    send it again and could answer SEAT_TAKEN to the buyer who holds the seat."""
    r = seats.connect(cluster.url, cluster=True, timeout=0.5)
    zone = CATALOG.venues["Venue2"].zones[7]
    scripts = seats.SeatScripts(r)
    assert sell(scripts, "Event4", zone, 0, 1) == "OK"  # scripts loaded, connection warm
    home = cluster.owner(seats.event_key("Event4"))
    calls_before = evalsha_calls(cluster.node(home))
    sleeper = threading.Thread(
        target=lambda: cluster.node(home).execute_command("DEBUG", "SLEEP", "3")
    )
    sleeper.start()
    wait_until(lambda: stalled(cluster.node(home)), 10, "the node to stall")
    with pytest.raises(redis.TimeoutError):
        sell(scripts, "Event4", zone, 0, 2)
    sleeper.join()
    # the node ran what it had received once it woke: one call, the seat sold once
    assert evalsha_calls(cluster.node(home)) == calls_before + 1
    assert sell(scripts, "Event4", zone, 0, 2) == "SEAT_TAKEN"


def evalsha_calls(node: redis.Redis) -> int:
    stats = node.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def stalled(node: redis.Redis) -> bool:
    """Whether the node is inside DEBUG SLEEP (a ping does not answer within 0.2 s)."""
    port = node.connection_pool.connection_kwargs["port"]
    probe = redis.Redis(port=port, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    with contextlib.closing(probe):
        try:
            probe.ping()
        except redis.TimeoutError:
            return True
    return False


def test_the_relay_sweeper_expires_due_holds_on_every_master(cluster, loaded_cluster):
    """Rounds of a relay's sweeper on the cluster: its shortcut (one ZRANGE per event in one
    pipeline, split by node; TIME from one node) and the sweep scripts reach every master, and
    each due hold is expired once."""
    import time

    from models.seats import keys
    from relay.sweeper import Sweeper

    r = seats.connect(cluster.url, cluster=True)
    orders = seats.OrderScripts(r)
    events = ["Event1", "Event3", "Event5", "Event6", "Event7"]
    assert len({cluster.owner(keys.holds_key(e)) for e in events}) >= 2
    held = []
    for event_id in events:
        zone = CATALOG.venues[CATALOG.events[event_id].venue_id].zones[1]
        result = orders.hold(
            event_id,
            CATALOG.events[event_id].venue_id,
            buyer="sweep",
            seats=[(zone, zone.rows - 1, 1)],
            limits=seats.Limits(seats_per_buyer=10**6, burst=10**6),
            hold_seconds=0.3,
        )
        assert result.outcome == "OK", result.outcome
        held.append((event_id, result.order.order_id))
    sweeper = Sweeper(r, settings.get())
    rounds: list[int] = []
    wait_until(
        lambda: rounds.append(sweeper.sweep_round(time.monotonic())) or sum(rounds) == len(held),
        30,
        "the holds swept",
    )
    for event_id, order_id in held:
        doc = r.hget(keys.order_key(event_id, order_id), "doc")
        assert '"status":"EXPIRED"' in doc.replace(" ", "")
        assert r.zcard(keys.holds_key(event_id)) == 0
    assert sum(rounds) == len(held)


def test_no_crossslot_refusal_happened_and_one_would_be_seen(cluster, base):
    """Runs last in this module: every path above ran on the cluster without one CROSSSLOT
    refusal on any master; and the probe is sound: a cross-slot command is refused and counted."""
    for port, stats in cluster.errorstats().items():
        assert "errorstat_CROSSSLOT" not in stats, (port, stats)
    keys = [seats.event_key("Event1"), seats.event_key("Event2")]
    assert key_slot(keys[0].encode()) != key_slot(keys[1].encode())
    node = cluster.node(cluster.owner(keys[0]))
    with pytest.raises(ClusterCrossSlotError):
        node.mget(keys)
    port = node.connection_pool.connection_kwargs["port"]
    assert cluster.errorstats()[port]["errorstat_CROSSSLOT"]["count"] == 1

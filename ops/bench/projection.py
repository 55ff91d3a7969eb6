"""The real path behind a sale, through moto: worker CPU per persisted ticket, and the lag from
purchase to a readable row.

Both run the purchase API against moto (SNS → SQS raw delivery), the Celery worker as the
Procfile runs it, and MariaDB. moto, not our code, bounds their rates (about 130 publishes/s),
so the purchases come from a small paced Python client here, which at ≤ 130/s costs next to
nothing, and measures what the targets ask for: CPU per ticket while the worker drains a full
queue, and the lag at a load moto sustains.
"""

from __future__ import annotations

import http.client
import json
import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit

import boto3
import purchase_requests
import pymysql
import services
from seating import Seats


@dataclass(frozen=True)
class Purchase:
    """One purchase as the client saw it: when it was sent (epoch s), status, ticket id, ms."""

    sent: float
    status: int
    ticket_id: str | None
    ms: float


class Buyer:
    """Keep-alive HTTP connections, one per thread."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        return conn

    def buy(self, body: bytes) -> Purchase:
        sent, started = time.time(), time.perf_counter()
        conn = self._conn()
        try:
            conn.request("POST", purchase_requests.PATH, body, purchase_requests.headers())
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            return Purchase(sent, 0, None, (time.perf_counter() - started) * 1e3)
        ms = (time.perf_counter() - started) * 1e3
        ticket_id = json.loads(payload)["ticketId"] if response.status == 201 else None
        return Purchase(sent, response.status, ticket_id, ms)

    def get(self, path: str) -> int:
        conn = self._conn()
        conn.request("GET", path, headers={"Authorization": services.authorization()})
        response = conn.getresponse()
        response.read()
        return response.status


def buy_all(buyer: Buyer, seats: Seats, indexes: range, threads: int) -> list[Purchase]:
    """As fast as `threads` clients go (filling the queue)."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: buyer.buy(seats.body(i)), indexes))


def buy_paced(buyer: Buyer, seats: Seats, rate: float, seconds: float) -> list[Purchase]:
    """Open loop: purchase k is sent at start + k / rate, whatever the answers take."""
    count = int(rate * seconds)
    start = time.monotonic() + 0.05
    with ThreadPoolExecutor(32) as pool:
        futures = []
        for k in range(count):
            wait = start + k / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            futures.append(pool.submit(buyer.buy, seats.body(k)))
        return [f.result() for f in futures]


def queue_depth(queue_url: str) -> int:
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def connect(database_url: str) -> pymysql.connections.Connection:
    """An autocommit connection, so each count sees the rows committed since the last one."""
    parts = urlsplit(database_url.replace("mysql+pymysql", "mysql"))
    return pymysql.connect(
        host=parts.hostname,
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=parts.path.lstrip("/"),
        autocommit=True,
    )


def count_rows(db: pymysql.connections.Connection, event_id: str) -> int:
    with db.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM ticket WHERE event_id = %s", (event_id,))
        return int(cur.fetchone()[0])


@dataclass(frozen=True)
class Drain:
    """The worker draining `tickets` messages. CPU per ticket over the steady part (10 %→90 %
    of the rows), gross and net of what the worker burns when idle (heartbeats, timers, long
    polls: per second, not per ticket, so it weighs on a slow drain through moto and not on
    one through SQS); the whole drain from `ready.`; seconds and rate."""

    tickets: int
    rows: int
    seconds: float
    steady_ms_per_ticket: float
    net_ms_per_ticket: float
    whole_ms_per_ticket: float
    idle_ms_per_s: float
    main_ms_per_ticket: float  # of the steady part: the consumer (receive, ack, dispatch)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def measure_drain(
    worker: services.Service,
    db: pymysql.connections.Connection,
    event_id: str,
    tickets: int,
    idle_s: float = 3,
    limit_s: float = 120,
) -> Drain:
    """Sample the worker's CPU (main and pool processes) and the row count every 100 ms from
    the moment it is ready until every ticket is a row (or `limit_s`), then its idle CPU."""
    samples: list[tuple[float, float, int, float]] = []  # (monotonic, cpu s, rows, main's)
    started = time.monotonic()
    while True:
        processes = worker.processes()
        samples.append(
            (
                time.monotonic(),
                services.cpu_seconds(processes),
                count_rows(db, event_id),
                services.own_cpu_seconds(processes[0]) if processes else 0.0,
            )
        )
        if samples[-1][2] >= tickets or time.monotonic() - started > limit_s:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # the last acks
    idle_from = (time.monotonic(), services.cpu_seconds(worker.processes()))
    time.sleep(idle_s)
    idle_rate = (services.cpu_seconds(worker.processes()) - idle_from[1]) / (
        time.monotonic() - idle_from[0]
    )
    rows = samples[-1][2]
    low = next(s for s in samples if s[2] >= 0.1 * rows)
    high = next(s for s in samples if s[2] >= 0.9 * rows)
    steady_rows = max(1, high[2] - low[2])
    steady_cpu = high[1] - low[1]
    return Drain(
        tickets=tickets,
        rows=rows,
        seconds=samples[-1][0] - samples[0][0],
        steady_ms_per_ticket=steady_cpu / steady_rows * 1e3,
        net_ms_per_ticket=(steady_cpu - idle_rate * (high[0] - low[0])) / steady_rows * 1e3,
        whole_ms_per_ticket=(samples[-1][1] - samples[0][1]) / max(1, rows) * 1e3,
        idle_ms_per_s=idle_rate * 1e3,
        main_ms_per_ticket=(high[3] - low[3]) / steady_rows * 1e3,
    )


@dataclass(frozen=True)
class Lag:
    """Purchase → readable over a paced run: percentiles (ms), the achieved rate, purchases."""

    sold: int
    failed: int
    readable: int
    target_rate: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    purchase_p50_ms: float
    purchase_p99_ms: float
    query_checked: int
    query_ok: int


def measure_lag(
    buyer: Buyer,
    db: pymysql.connections.Connection,
    seats: Seats,
    rate: float,
    seconds: float,
    wait_s: float = 10,
    stall_s: float = 5,
) -> Lag:
    """Paced purchases; then each ticket's lag = the row's `persisted_on` (MariaDB's NOW(6) at
    the insert, commit right after) − the moment its request was sent. Nothing polls while
    the load runs, so the measurement adds no load; a sample is read back through the API.
    Waits for the last rows up to `wait_s`, or until none came for `stall_s`."""
    purchases = buy_paced(buyer, seats, rate, seconds)
    sold = {p.ticket_id: p for p in purchases if p.status == 201 and p.ticket_id}
    deadline = time.monotonic() + wait_s
    rows, progressed = 0, time.monotonic()
    while rows < len(sold) and time.monotonic() < deadline:
        time.sleep(0.2)
        now = count_rows(db, seats.event)
        if now > rows:
            rows, progressed = now, time.monotonic()
        elif time.monotonic() - progressed > stall_s:
            break
    checked_at = time.time()
    with db.cursor() as cur:
        cur.execute("SELECT TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), NOW(6))")
        offset_s = int(cur.fetchone()[0]) / 1e6  # persisted_on is in the session's time zone
        cur.execute(
            "SELECT ticket_id, persisted_on FROM ticket WHERE event_id = %s", (seats.event,)
        )
        persisted = {  # ids are VARBINARY: the driver gives bytes
            tid.decode(): at.replace(tzinfo=UTC).timestamp() - offset_s
            for tid, at in cur.fetchall()
        }
    # a ticket still not readable counts with the time waited so far: a lower bound of its lag
    lags = sorted((persisted.get(t, checked_at) - p.sent) * 1e3 for t, p in sold.items())
    readable = [t for t in sold if t in persisted]
    sample = readable[:: max(1, len(readable) // 20)]
    ok = sum(buyer.get(f"/query/api/v1/tickets/{t}") == 200 for t in sample)
    ms = sorted(p.ms for p in sold.values())
    span = max(p.sent for p in purchases) - min(p.sent for p in purchases)
    return Lag(
        sold=len(sold),
        failed=len(purchases) - len(sold),
        readable=len(readable),
        target_rate=rate,
        rate=len(purchases) / span if span else 0.0,
        p50_ms=percentile(lags, 50),
        p99_ms=percentile(lags, 99),
        max_ms=lags[-1] if lags else float("nan"),
        purchase_p50_ms=percentile(ms, 50),
        purchase_p99_ms=percentile(ms, 99),
        query_checked=len(sample),
        query_ok=ok,
    )


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted values (nan when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")

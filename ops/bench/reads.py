"""The read phase: count, revenue and a list page of an event with 0, 100,000 and 1,000,000
tickets, through the query API as the Procfile runs it, measured with wrk.

The tickets are generated in MariaDB itself (INSERT … SELECT over a cross join of digits, in
100,000-row statements), not through the worker; then `flask --app web tickets recount` sets
the events' totals from them, as an operator would. The three events live in the same table,
so the runs of the nine (endpoint, size) pairs can be interleaved: a change of the machine's
load between runs falls on all sizes alike.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import pymysql
import seating
import services
import wrk_load
from wrk_load import LoadResult

SIZES = (0, 100_000, 1_000_000)
CHUNK = 100_000
CLIENTS = 16  # the concurrency at which the aggregates were seen to fall behind
ENDPOINTS = ("count", "revenue", "list page")
PAGE = 100  # the list's default limit

# ten digits, crossed five times: 100,000 numbers per statement (MariaDB and MySQL alike)
_DIGITS = "(SELECT 0 d UNION ALL " + " UNION ALL ".join(f"SELECT {i}" for i in range(1, 10)) + ")"
_NUMBERS = ", ".join(f"{_DIGITS} d{i}" for i in range(5))
_N = " + ".join(f"d{i}.d * {10**i}" for i in range(5))


def _row_label_sql(index: str) -> str:
    """A row label (A … Z, AA … ZZ) of a 0-based row index below 702, in SQL."""
    return (
        f"IF({index} < 26, CHAR(65 + {index}), "
        f"CONCAT(CHAR(64 + {index} DIV 26), CHAR(65 + {index} MOD 26)))"
    )


def insert_tickets(
    db: pymysql.connections.Connection,
    seats: seating.Seats,
    count: int,
    tag: int,
    chunk: int = CHUNK,
) -> float:
    """`count` PAID tickets of distinct seats of `seats` (0, 1, … in seat order), ids shaped as
    a uuid with `tag` in front, a millisecond apart; returns the seconds it took."""
    columns = seats.columns
    if count > seats.capacity or count // columns >= 702 or chunk > CHUNK:
        raise ValueError(f"{count} tickets do not fit the bench rows")
    started = time.monotonic()
    with db.cursor() as cur:
        for first in range(0, count, chunk):
            seat = f"({first} + {_N})"
            cur.execute(
                "INSERT INTO ticket (ticket_id, venue_id, event_id, zone_id, seat_row,"
                " seat_column, price, status, created_on) SELECT"
                f" LOWER(CONCAT(LPAD(HEX({tag}), 8, '0'), '-0000-4000-8000-',"
                f" LPAD(HEX({seat}), 12, '0'))),"
                f" %s, %s, %s, {_row_label_sql(f'({seat} DIV {columns})')},"
                f" {seat} MOD {columns} + 1, 50.00, 'PAID',"
                f" TIMESTAMP'2026-01-01 00:00:00' + INTERVAL {seat} * 1000 MICROSECOND"
                f" FROM {_NUMBERS} WHERE {_N} < %s",
                (seats.venue, seats.event, seats.zone, min(chunk, count - first)),
            )
            db.commit()
    return time.monotonic() - started


@dataclass
class Series:
    """wrk runs at one concurrency, per round and (endpoint, size)."""

    clients: int
    seconds: float
    rounds: list[dict[tuple[str, int], list[LoadResult]]] = field(default_factory=list)

    def runs(self, endpoint: str, size: int) -> list[LoadResult]:
        return [r for one in self.rounds for r in one[endpoint, size]]

    def rate(self, endpoint: str, size: int) -> float:
        return statistics.median(r.rate for r in self.runs(endpoint, size))

    def p50(self, endpoint: str, size: int) -> float:
        return statistics.median(r.p50_ms for r in self.runs(endpoint, size))

    def p99(self, endpoint: str, size: int) -> float:
        return statistics.median(r.p99_ms for r in self.runs(endpoint, size))

    def change(self, endpoint: str, size: int, base: int, metric: str = "p50_ms") -> float:
        """Median over rounds of the round's mean `metric` at `size` ÷ at `base`, − 1."""
        ratios = []
        for one in self.rounds:
            at_base = statistics.mean(getattr(r, metric) for r in one[endpoint, base])
            at_size = statistics.mean(getattr(r, metric) for r in one[endpoint, size])
            if at_base:
                ratios.append(at_size / at_base)
        return statistics.median(ratios) - 1

    @property
    def failures(self) -> int:
        return sum(r.failures for one in self.rounds for runs in one.values() for r in runs)


@dataclass
class Rotation:
    """Runs on one connection whose requests go to the three sizes in turn: each size's latency
    is measured in the same instants as the others', whatever else the machine is doing."""

    seconds: float
    runs: dict[str, list[LoadResult]] = field(default_factory=dict)  # endpoint → runs

    def p50(self, endpoint: str, size: int) -> float:
        i = SIZES.index(size)
        return statistics.median(r.paths[i].p50_ms for r in self.runs[endpoint])

    def change(self, endpoint: str, size: int, base: int) -> float:
        """Median over runs of p50 at `size` ÷ p50 at `base`, − 1."""
        i, b = SIZES.index(size), SIZES.index(base)
        return (
            statistics.median(r.paths[i].p50_ms / r.paths[b].p50_ms for r in self.runs[endpoint])
            - 1
        )

    @property
    def answers(self) -> int:
        return sum(p.answers for runs in self.runs.values() for r in runs for p in r.paths)

    @property
    def failures(self) -> int:
        return sum(r.failures for runs in self.runs.values() for r in runs)


@dataclass
class Reads:
    """The read phase: one client rotating over the sizes (latency, the verdict) and the
    issue's load, size by size (throughput)."""

    light: Rotation
    loaded: Series
    seed_seconds: dict[int, float] = field(default_factory=dict)


def paths(event_of: dict[int, seating.Seats]) -> dict[str, dict[int, str]]:
    """endpoint → size → the path wrk asks for."""
    return {
        "count": {n: f"/query/api/v1/tickets/count/{s.event}" for n, s in event_of.items()},
        "revenue": {
            n: f"/query/api/v1/tickets/revenue/{s.venue}/{s.event}" for n, s in event_of.items()
        },
        "list page": {
            n: f"/query/api/v1/tickets?eventId={s.event}&limit={PAGE}" for n, s in event_of.items()
        },
    }


def seed(database_url: str, env: dict[str, str]) -> dict[int, float]:
    """The read events' tickets, then their totals through the recount command."""
    from projection import connect

    db = connect(database_url)
    db.autocommit(False)
    took = {}
    for tag, (size, seats) in enumerate(seating.READS.items(), start=1):
        services.say(f"reads: {size:,} tickets for {seats.event} (INSERT … SELECT)")
        took[size] = insert_tickets(db, seats, size, tag)
    db.close()
    events = [a for s in seating.READS.values() for a in ("--event", s.event)]
    services.run_checked(
        [str(services.BIN / "flask"), "--app", "web", "tickets", "recount", *events],
        env,
        "tickets recount",
    )
    return took


def measure(
    wrk: str, service: services.Service, rounds: int, seconds: float, clients: int
) -> Series:
    """`rounds` rounds; in each, every endpoint runs its sizes in the order 0, 100k, 1M, 1M,
    100k, 0, so that a drift of the machine's load during the round falls on each size alike."""
    out = Series(clients, seconds)
    for _ in range(rounds):
        one: dict[tuple[str, int], list[LoadResult]] = {}
        for endpoint, by_size in paths(seating.READS).items():
            for size in (*SIZES, *reversed(SIZES)):
                result = wrk_load.run(
                    wrk,
                    service.url,
                    wrk_load.get(by_size[size]),
                    connections=clients,
                    seconds=seconds,
                )
                one.setdefault((endpoint, size), []).append(result)
                time.sleep(0.2)  # what wrk left in flight is served before the next run
        out.rounds.append(one)
    return out


def rotate(wrk: str, service: services.Service, runs: int, seconds: float) -> Rotation:
    """`runs` runs per endpoint, one connection, requests to 0, 100k, 1M tickets in turn."""
    out = Rotation(seconds)
    for _ in range(runs):
        for endpoint, by_size in paths(seating.READS).items():
            args = wrk_load.rotate(*(by_size[n] for n in SIZES))
            result = wrk_load.run(wrk, service.url, args, connections=1, seconds=seconds)
            out.runs.setdefault(endpoint, []).append(result)
    return out


def measure_all(
    wrk: str, service: services.Service, light_runs: int, loaded_rounds: int, seconds: float
) -> Reads:
    """A warm-up, then the rotation (a request's own work, no queueing: the verdict) and the
    loaded series (what the service sustains at each size)."""
    for by_size in paths(seating.READS).values():
        for path in by_size.values():
            wrk_load.run(wrk, service.url, wrk_load.get(path), connections=CLIENTS, seconds=1)
    light = rotate(wrk, service, light_runs, seconds=3)
    loaded = measure(wrk, service, loaded_rounds, seconds, CLIENTS)
    return Reads(light, loaded)


def _base(endpoint: str) -> int:
    # with no ticket the list's page is empty, a smaller answer: its sizes compare with 100k
    return 100_000 if endpoint == "list page" else 0


def verdicts(reads: Reads) -> list[tuple[str, str, str, str]]:
    """Rows of the bench's table, one per endpoint: p50 at 1 client at each size against none
    (the list page: against 100k), and the throughput at the issue's load."""
    rows = []
    for endpoint in ENDPOINTS:
        base = _base(endpoint)
        sizes = [n for n in SIZES if n > base]
        changes = [reads.light.change(endpoint, n, base) for n in sizes]
        worst = max(changes, key=abs)
        light = " / ".join(f"{reads.light.p50(endpoint, n):.2f}" for n in SIZES)
        loaded = " / ".join(f"{reads.loaded.rate(endpoint, n):.0f}" for n in SIZES)
        rows.append(
            (
                f"reads: {endpoint}",
                f"p50 {light} ms at 0 / 100k / 1M tickets ("
                + ", ".join(
                    f"{_size(n)} vs {_size(base)} {c:+.1%}"
                    for n, c in zip(sizes, changes, strict=True)
                )
                + f") at 1 client; {loaded} req/s at "
                f"{reads.loaded.clients} clients",
                "p50 flat within ±10 %",
                "met" if abs(worst) <= 0.10 else f"MISSED by {abs(worst) - 0.10:.0%} points",
            )
        )
    return rows


def render(reads: Reads) -> str:
    """The nine pairs side by side: p50 at 1 client, req/s and p50 / p99 at 16 clients."""
    from report import Table

    t = Table(header=("read", *(f"{_size(n)} tickets" for n in SIZES)), wrap=(10, 30, 30, 30))
    for endpoint in ENDPOINTS:
        t.add(
            endpoint,
            *(
                f"p50 {reads.light.p50(endpoint, n):.2f} ms at 1; "
                f"{reads.loaded.rate(endpoint, n):.0f}/s, p50 {reads.loaded.p50(endpoint, n):.1f}"
                f" ms, p99 {reads.loaded.p99(endpoint, n):.0f} ms at {reads.loaded.clients}"
                for n in SIZES
            ),
        )
    light_runs = len(next(iter(reads.light.runs.values()), []))
    t.note(
        f"reads: the query API (Procfile `query`), wrk 1 thread. At 1 client: "
        f"{light_runs} runs of {reads.light.seconds:g} s per endpoint on one connection whose "
        f"requests go to 0, 100k and 1M tickets in turn ({reads.light.answers} answers), p50 "
        f"per size from the script's own clock, medians of the runs; a change is the median "
        f"of the runs' ratios (the verdict). At {reads.loaded.clients} clients: "
        f"{len(reads.loaded.rounds)} rounds, every endpoint at 0/100k/1M/1M/100k/0 tickets for "
        f"{reads.loaded.seconds:g} s each, medians. A list page is the newest {PAGE} tickets of "
        f"the event (none at 0 tickets: its change is against 100k); "
        f"{reads.light.failures + reads.loaded.failures} failed requests; tickets generated in "
        "MariaDB in "
        + ", ".join(f"{s:.0f} s for {_size(n)}" for n, s in reads.seed_seconds.items() if n)
    )
    return t.render()


def figures(reads: Reads) -> dict:
    """p50 at 1 client, req/s, p50 and p99 at 16 clients, per endpoint and size."""
    return {
        endpoint: {
            str(n): {
                "one_client_p50_ms": reads.light.p50(endpoint, n),
                "rps": reads.loaded.rate(endpoint, n),
                "p50_ms": reads.loaded.p50(endpoint, n),
                "p99_ms": reads.loaded.p99(endpoint, n),
            }
            for n in SIZES
        }
        for endpoint in ENDPOINTS
    }


def _size(n: int) -> str:
    return {0: "0", 100_000: "100k", 1_000_000: "1M"}.get(n, f"{n:,}")

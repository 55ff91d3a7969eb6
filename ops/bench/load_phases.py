"""The bench's load phases against the purchase API, with the relay beside it taking the outbox to
the stand-in SNS endpoint: throughput against the ceiling (and the relay's latency, CPU and
drain under that load), the flash sale, rejection vs acceptance latency, and flatness from 0 to
1M sold.

Noise on a shared 2-core machine is handled the same way everywhere: the compared runs are
interleaved (A B A B …, or A B B A for two states) and the medians are reported.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import seating
import services
import wrk_load
from projection import percentile
from sns_standin import decode_task, sale_tickets
from wrk_load import LoadResult

from models.seats import outbox, owners_key

CLIENTS = 64  # the target's concurrency for throughput and the flash sale
# Moderate: below saturation, so latency still reflects the work per request. On the 2-core
# development machine 4 clients already saturate the purchase path (p50 = queueing, ±25 % from
# one 1-s run to the next); at 2 the runs agree within a few per cent.
FLAT_CLIENTS = 2
CEILING_BODY = '{"venueId":"BenchArena","eventId":"BenchRun","zoneId":1,"row":"A","column":"1"}'


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def paired_ratio(base: list[float], other: list[float]) -> float:
    """Median of other[i] ÷ base[i] over runs made next to each other (A B B A …): a change of
    the machine's load between pairs cancels out, which a ratio of two medians does not."""
    return median([o / b for b, o in zip(base, other, strict=True) if b > 0])


def abba(a: object, b: object, pairs: int) -> list[object]:
    """a, b, b, a, a, b, … with `pairs` of each."""
    return ([a, b, b, a] * pairs)[: 2 * pairs]


class StandInClient:
    """The stand-in's control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str) -> object:
        request = urllib.request.Request(self.url + path, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def reset(self, record: bool = False) -> None:
        self._call("POST", f"/_standin/reset?record={int(record)}")

    def stats(self) -> dict:
        return self._call("GET", "/_standin/stats")  # type: ignore[return-value]

    def messages(self) -> list[str]:
        return self._call("GET", "/_standin/messages")  # type: ignore[return-value]

    def tickets(self) -> list[list]:
        """[acknowledged at, ticket id, createdOn] per recorded message (unix seconds)."""
        return self._call("GET", "/_standin/tickets")  # type: ignore[return-value]


def script_stats(r: redis.Redis) -> tuple[int, int]:
    """(calls, µs spent) of EVALSHA + EVAL on the Redis server (the bench's own server)."""
    stats = r.info("commandstats")
    scripts = [stats.get(f"cmdstat_{c}", {}) for c in ("evalsha", "eval")]
    return sum(int(s.get("calls", 0)) for s in scripts), sum(int(s.get("usec", 0)) for s in scripts)


def script_calls(r: redis.Redis) -> int:
    """EVALSHA + EVAL calls the Redis server has served."""
    return script_stats(r)[0]


def outbox_appends(r: redis.Redis) -> int:
    """XADD calls the Redis server has served (those inside the purchase script included)."""
    return int(r.info("commandstats").get("cmdstat_xadd", {}).get("calls", 0))


@dataclass
class Rig:
    """What the load phases drive."""

    wrk: str
    redis: redis.Redis
    ceiling: services.Service
    purchase: services.Service
    standin_service: services.Service
    standin: StandInClient
    relay: services.Service  # the relay, publishing to the stand-in
    next_seat: int = 0  # the next never-sold seat of seating.RUN

    def run(self, service: services.Service, args: list[str], clients: int, seconds: float):
        """One wrk run, then wait until the server has finished what wrk left in flight, so
        that no request of this run is counted in the next one."""
        result = wrk_load.run(self.wrk, service.url, args, connections=clients, seconds=seconds)
        self.settle()
        return result

    def relayed(self, expected: int = 0, limit_s: float = 60) -> bool:
        """Until the outbox is empty (every entry published and deleted) and the stand-in has
        acknowledged at least `expected` messages since its reset; False after `limit_s`."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if outbox.depth(self.redis) == 0 and self.standin.stats()["messages"] >= expected:
                return True
            time.sleep(0.05)
        return False

    def settle(self, quiet_s: float = 0.3, limit_s: float = 30) -> None:
        """Until Redis has seen no script call for `quiet_s`: every request has been served."""
        deadline = time.monotonic() + limit_s
        last, since = script_calls(self.redis), time.monotonic()
        while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
            time.sleep(0.05)
            now = script_calls(self.redis)
            if now != last:
                last, since = now, time.monotonic()

    def ceiling_run(self, seconds: float, clients: int = CLIENTS) -> LoadResult:
        return self.run(self.ceiling, wrk_load.fixed("/ceiling", CEILING_BODY), clients, seconds)

    def buy_run(self, seconds: float, clients: int = CLIENTS) -> LoadResult:
        """Distinct never-sold seats of seating.RUN."""
        s = seating.RUN
        args = wrk_load.seats(s.venue, s.event, s.zone, s.columns, self.next_seat, s.capacity - 1)
        result = self.run(self.purchase, args, clients, seconds)
        self.next_seat += result.sent + clients
        return result


@dataclass
class Throughput:
    """Ceiling and purchase path, interleaved rounds at 64 clients."""

    ceiling: list[LoadResult] = field(default_factory=list)
    purchase: list[LoadResult] = field(default_factory=list)
    ceiling_cpu_ms: list[float] = field(default_factory=list)  # gunicorn CPU per request
    purchase_cpu_ms: list[float] = field(default_factory=list)
    standin_cpu_ms: list[float] = field(default_factory=list)  # stand-in CPU per message
    relay_p50_ms: list[float] = field(default_factory=list)  # per round: sale → SNS ack
    relay_p99_ms: list[float] = field(default_factory=list)
    relay_max_ms: list[float] = field(default_factory=list)
    drain_s: list[float] = field(default_factory=list)  # load's end → last SNS ack
    relay_cpu_ms: list[float] = field(default_factory=list)  # relay CPU per message, gross
    relay_net_cpu_ms: list[float] = field(default_factory=list)  # … less its idle CPU
    relay_idle_ms_per_s: float = float("nan")
    messages: int = 0  # acknowledged by the stand-in in the measured purchase rounds
    sales: int = 0  # purchase script calls in those rounds (each a sale of a free seat)
    distinct_tickets: int = 0  # distinct ticket ids among the messages
    drained: bool = True  # the outbox was empty after every round
    answered: int = 0
    sent: int = 0
    calls: dict[str, int] = field(default_factory=dict)  # stand-in calls by SNS action

    @property
    def ceiling_rate(self) -> float:
        return median([r.rate for r in self.ceiling])

    @property
    def purchase_rate(self) -> float:
        return median([r.rate for r in self.purchase])

    def purchase_pct(self, name: str) -> float:
        return median([getattr(r, name) for r in self.purchase])

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.purchase + self.ceiling)


def _cpu_per_request(
    service: services.Service, run: Callable[[], LoadResult]
) -> tuple[LoadResult, float]:
    procs = service.processes()
    before = services.cpu_seconds(procs)
    result = run()
    return result, (services.cpu_seconds(procs) - before) / max(1, result.requests) * 1e3


def idle_cpu_per_s(service: services.Service, seconds: float = 2) -> float:
    """CPU seconds per second the service burns with nothing to do."""
    procs = service.processes()
    before, started = services.cpu_seconds(procs), time.monotonic()
    time.sleep(seconds)
    return (services.cpu_seconds(procs) - before) / (time.monotonic() - started)


def throughput(rig: Rig, rounds: int, seconds: float, warmup: float = 2) -> Throughput:
    """Warm both up, then ceiling, purchase, ceiling, purchase, … at 64 clients. Each purchase
    round waits until the relay has drained the outbox to the stand-in, and takes from the
    stand-in each ticket's acknowledgement time: the relay's latency, CPU and drain time."""
    rig.ceiling_run(warmup)
    rig.buy_run(warmup)
    rig.relayed()
    out = Throughput()
    out.relay_idle_ms_per_s = idle_cpu_per_s(rig.relay) * 1e3
    for _ in range(rounds):
        result, cpu = _cpu_per_request(rig.ceiling, lambda: rig.ceiling_run(seconds))
        out.ceiling.append(result)
        out.ceiling_cpu_ms.append(cpu)
        _purchase_round(rig, seconds, out)
    return out


def _purchase_round(rig: Rig, seconds: float, out: Throughput) -> None:
    """One purchase round at 64 clients; then the outbox drained, and what the relay did."""
    rig.standin.reset(record=True)
    relay = rig.relay.processes()
    standin = rig.standin_service.processes()
    gunicorn = rig.purchase.processes()
    started = time.monotonic()
    relay_before, standin_before = services.cpu_seconds(relay), services.cpu_seconds(standin)
    gunicorn_before, calls_before = services.cpu_seconds(gunicorn), script_calls(rig.redis)
    s = seating.RUN
    args = wrk_load.seats(s.venue, s.event, s.zone, s.columns, rig.next_seat, s.capacity - 1)
    result = wrk_load.run(rig.wrk, rig.purchase.url, args, connections=CLIENTS, seconds=seconds)
    load_end = time.time()  # wrk stopped sending; the requests in flight finish after
    rig.next_seat += result.sent + CLIENTS
    rig.settle()
    gunicorn_cpu = services.cpu_seconds(gunicorn) - gunicorn_before
    sales = script_calls(rig.redis) - calls_before
    out.drained &= rig.relayed(sales)
    span = time.monotonic() - started
    relay_cpu = services.cpu_seconds(relay) - relay_before
    standin_cpu = services.cpu_seconds(standin) - standin_before
    stats = rig.standin.stats()
    tickets = rig.standin.tickets()
    for action, n in stats["calls"].items():
        out.calls[action] = out.calls.get(action, 0) + n
    messages = stats["messages"]
    lags = sorted((acked - created) * 1e3 for acked, tid, created in tickets if tid)
    out.purchase.append(result)
    out.purchase_cpu_ms.append(gunicorn_cpu / max(1, result.requests) * 1e3)
    out.standin_cpu_ms.append(standin_cpu / max(1, messages) * 1e3)
    out.relay_p50_ms.append(percentile(lags, 50))
    out.relay_p99_ms.append(percentile(lags, 99))
    out.relay_max_ms.append(lags[-1] if lags else float("nan"))
    last_ack = max((acked for acked, _tid, _created in tickets), default=load_end)
    out.drain_s.append(max(0.0, last_ack - load_end))
    out.relay_cpu_ms.append(relay_cpu / max(1, messages) * 1e3)
    idle = out.relay_idle_ms_per_s / 1e3 * span
    out.relay_net_cpu_ms.append(max(0.0, relay_cpu - idle) / max(1, messages) * 1e3)
    out.messages += messages
    out.sales += sales
    out.distinct_tickets += len({tid for _acked, tid, _created in tickets if tid})
    out.answered += result.requests - result.errors["status"]
    out.sent += result.sent


@dataclass(frozen=True)
class FlashSale:
    """10,000 attempts on 1,000 seats: what the clients got, what Redis and SNS saw."""

    attempts: int
    seats: int
    result: LoadResult
    redis_calls: int
    outbox_appends: int  # XADDs during the sale: one per sold seat, none for a rejection
    relayed: bool  # the outbox was drained to the stand-in
    messages: int
    published_seats: int
    published_tickets: int  # distinct ticket ids among the messages
    owners_published: bool  # the published ticket ids are exactly the seats' owners in Redis
    published_tasks_ok: bool
    bitmap_sold: int
    zone_left: int
    event_sold: int

    @property
    def created(self) -> int:
        return self.result.statuses.get(201, 0)

    @property
    def rejected(self) -> int:
        return self.result.statuses.get(409, 0)

    @property
    def oversold(self) -> int:
        """Seats sold beyond the zone, plus seats answered 201 twice (or published twice)."""
        extra = max(0, self.created - self.seats, self.bitmap_sold - self.seats)
        twice = max(
            self.result.double_sales,
            self.messages - self.published_seats,
            self.messages - self.published_tickets,
        )
        return extra + twice

    @property
    def exact(self) -> bool:
        """Exactly seats × 201, the rest 409, one Redis call per attempt, one outbox entry per
        201 and none for a rejection, and each sale's message at SNS exactly once."""
        return (
            self.created == self.seats == self.result.seats_sold
            and self.rejected == self.attempts - self.seats
            and self.result.requests == self.attempts
            and self.redis_calls == self.attempts
            and self.outbox_appends == self.created
            and self.relayed
            and self.messages == self.created == self.published_seats == self.published_tickets
            and self.owners_published
            and self.published_tasks_ok
            and self.bitmap_sold == self.event_sold == self.seats
            and self.zone_left == 0
        )


def flash_sale(rig: Rig, attempts: int = 10_000, per_seat: int = 10) -> FlashSale:
    """`per_seat` consecutive attempts race for each seat, 64 clients, until `attempts` answered."""
    s = seating.FLASH
    rig.relayed()
    rig.standin.reset(record=True)
    calls_before, appends_before = script_calls(rig.redis), outbox_appends(rig.redis)
    args = wrk_load.flash(s.venue, s.event, s.zone, s.columns, s.capacity, attempts, per_seat)
    result = rig.run(rig.purchase, args, CLIENTS, seconds=120)
    calls = script_calls(rig.redis) - calls_before
    appends = outbox_appends(rig.redis) - appends_before
    relayed = rig.relayed(result.statuses.get(201, 0))
    messages = rig.standin.messages()
    rig.standin.reset()
    tasks = [decode_task(m) for m in messages]
    # each sale is one apply_order task: its order of one seat, PAID, version 1 in the task id
    sold = [sale_tickets(t) for t in tasks]
    tickets = [ticket for found in sold for ticket in found]
    ticket_ids = [t["ticketId"] for t in tickets]
    owners = set(rig.redis.hvals(owners_key(s.event, s.zone)))
    owners = {o.decode() if isinstance(o, bytes) else o for o in owners}
    published = {(t["eventId"], t["row"], t["column"]) for t in tickets}
    tasks_ok = all(
        len(found) == 1
        and t["task"] == "tasks.orders.apply_order"
        and t["id"] == f"{found[0]['orderId']}:{found[0]['version']}"
        for t, found in zip(tasks, sold, strict=True)
    )
    bitmap, left, event_sold = seating.sold_count(rig.redis, s)
    return FlashSale(
        attempts=attempts,
        seats=s.capacity,
        result=result,
        redis_calls=calls,
        outbox_appends=appends,
        relayed=relayed,
        messages=len(messages),
        published_seats=len(published),
        published_tickets=len(set(ticket_ids)),
        owners_published=set(ticket_ids) == owners,
        published_tasks_ok=tasks_ok,
        bitmap_sold=bitmap,
        zone_left=left,
        event_sold=event_sold,
    )


@dataclass
class AcceptReject:
    """The same light load on free seats (201) and on sold seats (409 SEAT_TAKEN)."""

    clients: int
    accept: list[LoadResult] = field(default_factory=list)
    reject: list[LoadResult] = field(default_factory=list)
    reject_redis_calls: int = 0
    reject_appends: int = 0  # outbox entries appended during the rejections (none expected)
    reject_messages: int = 0  # messages the stand-in got during them, the outbox drained

    @property
    def accept_p50(self) -> float:
        return median([r.p50_ms for r in self.accept])

    @property
    def reject_p50(self) -> float:
        return median([r.p50_ms for r in self.reject])

    @property
    def ratio(self) -> float:
        """Rejection p50 ÷ acceptance p50, the median over neighbouring pairs of runs."""
        return paired_ratio([r.p50_ms for r in self.accept], [r.p50_ms for r in self.reject])

    @property
    def reject_requests(self) -> int:
        return sum(r.requests for r in self.reject)

    @property
    def reject_sent(self) -> int:
        return sum(r.sent for r in self.reject)

    @property
    def all_rejected(self) -> bool:
        return all(r.errors["status"] == r.requests for r in self.reject)


def accept_vs_reject(
    rig: Rig, clients: int, runs: int, seconds: float, sold: int = 200_000
) -> AcceptReject:
    """Light load, so latency is the work of one request and not queueing. In one event and
    zone whose first `sold` seats are sold: the same clients buy free seats after them, or try
    the sold ones (SEAT_TAKEN), `runs` short runs of each in A B B A order."""
    s = seating.LIGHT
    seating.set_sold_prefix(rig.redis, s, sold)
    next_free = sold
    out = AcceptReject(clients)
    for kind in abba("accept", "reject", runs):
        if kind == "accept":
            args = wrk_load.seats(s.venue, s.event, s.zone, s.columns, next_free, s.capacity - 1)
            accepted = rig.run(rig.purchase, args, clients, seconds)
            next_free += accepted.sent + clients
            out.accept.append(accepted)
            continue
        rig.relayed()  # the sales of the run before are all at the stand-in
        rig.standin.reset()
        calls_before, appends_before = script_calls(rig.redis), outbox_appends(rig.redis)
        args = wrk_load.seats(s.venue, s.event, s.zone, s.columns, 0, sold - 1)
        out.reject.append(rig.run(rig.purchase, args, clients, seconds))
        out.reject_redis_calls += script_calls(rig.redis) - calls_before
        out.reject_appends += outbox_appends(rig.redis) - appends_before
        rig.relayed()
        out.reject_messages += rig.standin.stats()["messages"]
    return out


@dataclass
class Flatness:
    """Latency at moderate load with 0 and with 1,000,000 seats sold in the same event+zone."""

    clients: int
    sold: int
    empty: list[LoadResult] = field(default_factory=list)
    full: list[LoadResult] = field(default_factory=list)
    check_empty_us: list[float] = field(default_factory=list)  # Redis's own µs per seat check
    check_full_us: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """p50 with `sold` seats sold ÷ p50 with none, the median over neighbouring runs."""
        return paired_ratio([r.p50_ms for r in self.empty], [r.p50_ms for r in self.full])

    @property
    def check_ratio(self) -> float:
        return paired_ratio(self.check_empty_us, self.check_full_us)


def flatness(
    rig: Rig, runs: int, seconds: float, sold: int = 1_000_000, clients: int = FLAT_CLIENTS
) -> Flatness:
    """`runs` short runs per state in the order 0, 1M, 1M, 0, 0, 1M, … (ABBA cancels a drift;
    short runs follow the machine's noise), each on a fresh state written directly to Redis,
    buying the seats after the sold prefix."""
    s = seating.FLAT
    out = Flatness(clients, sold)
    for prefix in abba(0, sold, runs):
        seating.set_sold_prefix(rig.redis, s, prefix)
        calls, usec = script_stats(rig.redis)
        args = wrk_load.seats(s.venue, s.event, s.zone, s.columns, sold, s.capacity - 1)
        result = rig.run(rig.purchase, args, clients, seconds)
        calls_after, usec_after = script_stats(rig.redis)
        (out.full if prefix else out.empty).append(result)
        # Redis's own time per purchase script, measured in the server: the seat check alone
        (out.check_full_us if prefix else out.check_empty_us).append(
            (usec_after - usec) / max(1, calls_after - calls)
        )
    return out

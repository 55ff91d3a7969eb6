"""The box office phase: best available in a 2,000,000-seat zone that is 95 % sold, against a
single-seat purchase in the same zone, and 10,000 holds expiring at once, freed by the sweeper.

Every figure is one Redis script call, timed on the client (the EVALSHA round trip, the same
client for every series) and, for best available and the purchase, in Redis too (INFO
commandstats read before and after the call, untimed); one client calling in sequence (light
load: the latency is the script's work, not queueing). The 95 %-sold states are written straight
into Redis as the loading and purchase scripts leave them (the `sold` bitmap, the `left` hash
per row and for the zone, the event's `sold`/`capacity`; no `front` hint, as after a rebuild;
no owners: no script reads a sold seat's owner but its own order's), then checked with real
script calls:

- front: the first 95 % of the seats sold row by row, as an on-sale fills a zone;
- random: 95 % of the seats sold at random (seeded), so few rows hold 4 adjacent free seats.

Best available (`OrderScripts.hold(best=(zone, 4))`) scans rows from the zone's `front` hint
for that quantity (models/seats/order_scripts.py, BEST_LUA) and leaves the hint at the row it
chose. Each sample is a hold, cancelled (untimed) after, which frees the same seats and leaves
the hint where it was: every sample meets the same state. Two hint states are measured: `cold`
(the hint and the rows' longest runs deleted before each hold: a scan from row 0 that remembers
nothing, as after a rebuild) and `warm` (the hint the previous hold left, as while an on-sale
fills a zone). A hold of the same 4 seats named (no search) shows what the hold costs without
the scan. The rows a hold scanned are counted here from the state written (the first row from
the hint with 4 adjacent free seats, checked against the row the script chose), not in the
script, which stays as production runs it. Purchases buy free seats behind the row best
available chooses (never read by its scan); the few hundred seats they sell leave the zone 95 %
sold.

Expiry: 10,000 holds of 1 to 4 seats, one buyer each, all due at one moment set just after the
last is made (none is due, and expired by a later hold's script, before); then the relay's
sweeper drains the event (`relay.sweeper.sweep_event`, 100 holds a call, the relay's default
SWEEP_BATCH), each call timed: one call must not block Redis for long. Then every seat must be
free, every buyer's count gone and every order EXPIRED.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import redis
import seating
from load_phases import script_stats
from seating import Seats

from models import seats
from models.catalog import ZoneSpec, row_label
from models.seats import Limits, keys
from models.seats.orders import OrderScripts
from models.seats.scripts import SeatScripts
from relay.sweeper import sweep_event

QUANTITY = 4
SOLD_SHARE = 0.95
SWEEP_BATCH = 100  # holds per sweep call: the relay's default (SWEEP_BATCH, plumbing/settings.py)
SLOWLOG_US = 1000  # a sweep call this long or longer is in the SLOWLOG during the drain
PRICE = Decimal("50.00")


class Timed:
    """A registered script whose every call's round trip is kept, in ms; with `redis_time`, also
    Redis's own µs for the call (INFO commandstats before and after, untimed; NaN when another
    script call ran in between)."""

    def __init__(self, script: Any, redis_time: redis.Redis | None = None) -> None:
        self.script = script
        self.redis_time = redis_time
        self.ms: list[float] = []
        self.redis_us: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.redis_time is not None:
            calls, usec = script_stats(self.redis_time)
        start = time.perf_counter()
        try:
            return self.script(*args, **kwargs)
        finally:
            self.ms.append((time.perf_counter() - start) * 1e3)
            if self.redis_time is not None:
                calls_after, usec_after = script_stats(self.redis_time)
                alone = calls_after - calls == 1
                self.redis_us.append(usec_after - usec if alone else float("nan"))


class Calls:
    """The seat and order scripts on one client, their script calls timed."""

    def __init__(self, r: redis.Redis) -> None:
        self.redis = r
        self.seats = SeatScripts(r)
        self.orders = OrderScripts(r)
        self.purchase = self.seats._purchase = Timed(self.seats._purchase, r)
        self.hold = self.orders._hold = Timed(self.orders._hold, r)


def zone_spec(s: Seats) -> ZoneSpec:
    return ZoneSpec(s.zone, s.rows, s.columns, PRICE, s.capacity, s.columns)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- seat state written directly -------------------------------------------------------------


def write_state(r: redis.Redis, s: Seats, bitmap: bytes) -> list[int]:
    """Replace the event's seat state by `bitmap` (bit = row × columns + column, 1 = sold):
    the bitmap, each row's and the zone's seats left, the event's sold and capacity (the event
    sells only this zone), nothing held, no owners, no hint. Returns the seats left per row."""
    if len(bitmap) != (s.capacity + 7) // 8:
        raise ValueError("one bit per seat")
    left = [s.columns - row_sold for row_sold in _sold_per_row(bitmap, s)]
    stale = [k for k in r.scan_iter(match=keys.event_prefix(s.event) + "*", count=1000)]
    pipe = r.pipeline(transaction=True)  # one slot: also on Redis Cluster
    if stale:
        pipe.delete(*stale)
    sold_key, left_key, event_key = keys.zone_keys(s.event, s.zone)
    pipe.set(sold_key, bitmap)
    mapping: dict[str, int] = {row_label(i): n for i, n in enumerate(left)}
    mapping["zone"] = sum(left)
    pipe.hset(left_key, mapping=mapping)
    pipe.hset(event_key, mapping={"sold": s.capacity - sum(left), "capacity": s.capacity})
    pipe.execute()
    return left


def _sold_per_row(bitmap: bytes, s: Seats) -> list[int]:
    bits = bits_of(bitmap, s)
    return [bits.count("1", i * s.columns, (i + 1) * s.columns) for i in range(s.rows)]


def bits_of(bitmap: bytes, s: Seats) -> str:
    """The bitmap as a string of '0'/'1', one per seat."""
    return bin(int.from_bytes(b"\x01" + bitmap, "big"))[3:][: s.capacity]


def front_bitmap(s: Seats, sold: int) -> bytes:
    """The first `sold` seats sold, row by row (whole bytes: SETRANGE-style 0xFF)."""
    if sold % 8:
        raise ValueError("whole bytes")
    return (b"\xff" * (sold // 8)).ljust((s.capacity + 7) // 8, b"\x00")


def random_bitmap(s: Seats, sold: int, seed: int = 7) -> bytes:
    """`sold` seats sold, chosen at random (seeded: the same state every run)."""
    free = random.Random(seed).sample(range(s.capacity), s.capacity - sold)
    bitmap = bytearray(b"\xff" * ((s.capacity + 7) // 8))
    for bit in [*free, *range(s.capacity, len(bitmap) * 8)]:  # and no bit past the last seat
        bitmap[bit >> 3] &= ~(0x80 >> (bit & 7)) & 0xFF
    return bytes(bitmap)


def first_block_row(bits: str, s: Seats, n: int, start: int = 0) -> int | None:
    """The first row from `start` with `n` adjacent free seats (where best available stops)."""
    block = "0" * n
    for i in range(start, s.rows):
        if block in bits[i * s.columns : (i + 1) * s.columns]:
            return i
    return None


# --- best available against a single-seat purchase ------------------------------------------


@dataclass
class BestCase:
    """One 95 %-sold state: hold and purchase round trips, and what the scan met."""

    name: str
    sold: int
    capacity: int
    rows: int
    row: int  # the row best available chose (0-based)
    columns: tuple[int, int]  # its first and last column (1-based)
    scanned_cold: int  # rows read from row 0 to the chosen row
    decoded_cold: int  # of which with ≥ 4 seats left (the row's bits decoded and searched)
    rows_with_block: int  # rows of the zone with 4 adjacent free seats
    # per series (purchase, chosen = a hold of the chosen 4 seats named, warm, cold): the round
    # trips in ms and Redis's own µs of each call
    ms: dict[str, list[float]] = field(default_factory=dict)
    redis_us: dict[str, list[float]] = field(default_factory=dict)
    ping_ms: list[float] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # what the real script calls confirmed

    def add(self, series: str, timed: Timed) -> None:
        """The last call of `timed` as a sample of `series`."""
        self.ms.setdefault(series, []).append(timed.ms[-1])
        self.redis_us.setdefault(series, []).append(timed.redis_us[-1])

    def p50(self, series: str) -> float:
        return statistics.median(self.ms[series])

    def ratio(self, series: str) -> float:
        return self.p50(series) / self.p50("purchase")

    def redis_p50(self, series: str) -> float:
        """Redis's own µs per call, median of the calls no other script call overlapped."""
        alone = [us for us in self.redis_us[series] if not math.isnan(us)]
        return statistics.median(alone) if alone else float("nan")

    def redis_ratio(self, series: str) -> float:
        return self.redis_p50(series) / self.redis_p50("purchase")


def _ticket(s: Seats, row: int, column: int) -> dict[str, Any]:
    return {
        "ticketId": str(uuid.uuid4()),
        "venueId": s.venue,
        "eventId": s.event,
        "zoneId": s.zone,
        "row": row_label(row),
        "column": str(column),
        "price": f"{PRICE:.2f}",
        "status": "PAID",
        "createdOn": "2030-01-01T19:00:00.000Z",
        "schemaVersion": 1,
    }


def _buyer(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _best_once(calls: Calls, s: Seats, zone: ZoneSpec, cold: bool) -> tuple[int, int, int]:
    """One best-available hold (timed), cancelled (untimed); (row, first, last column). Cold:
    nothing remembered (the `front` hint and the rows' longest runs deleted, as after a
    rebuild)."""
    if cold:
        calls.redis.hdel(keys.front_key(s.event, s.zone), QUANTITY)
        calls.redis.delete(keys.runs_key(s.event, s.zone))
    buyer = _buyer("best")
    held = calls.orders.hold(s.event, s.venue, buyer=buyer, best=(zone, QUANTITY))
    if held.outcome != "OK" or held.order is None:
        raise RuntimeError(f"best available answered {held.outcome}")
    cancelled = calls.orders.cancel(s.event, held.order.order_id, caller=buyer)
    if cancelled.outcome != "OK":
        raise RuntimeError(f"the cancel answered {cancelled.outcome}")
    seats = held.order.seats
    row = next(i for i in range(s.rows) if row_label(i) == seats[0].row)
    return row, int(seats[0].column), int(seats[-1].column)


def _chosen_once(calls: Calls, s: Seats, zone: ZoneSpec, row: int, first: int) -> None:
    """A hold of the 4 seats best available chooses, named (no search), cancelled untimed."""
    buyer = _buyer("chosen")
    cells = [(zone, row, first + k) for k in range(QUANTITY)]
    held = calls.orders.hold(s.event, s.venue, buyer=buyer, seats=cells)
    if held.outcome != "OK" or held.order is None:
        raise RuntimeError(f"the hold of named seats answered {held.outcome}")
    calls.orders.cancel(s.event, held.order.order_id, caller=buyer)


def _purchase_once(calls: Calls, s: Seats, zone: ZoneSpec, bit: int) -> None:
    row, column = divmod(bit, s.columns)
    sale = calls.seats.purchase(
        s.event, zone, row, column + 1, ticket=_ticket(s, row, column + 1), buyer=_buyer("seat")
    )
    if sale.outcome != "OK":
        raise RuntimeError(f"the purchase of a free seat answered {sale.outcome}")


def _check_state(calls: Calls, s: Seats, zone: ZoneSpec, bits: str, left: list[int]) -> list[str]:
    """Real script calls on the state written: a sold seat is SEAT_TAKEN for the purchase
    script, the zone's counters are what the availability script answers."""
    checks = []
    sold_bit = bits.index("1")
    row, column = divmod(sold_bit, s.columns)
    sale = calls.seats.purchase(
        s.event, zone, row, column + 1, ticket=_ticket(s, row, column + 1), buyer=_buyer("check")
    )
    if sale.outcome != "SEAT_TAKEN":
        raise RuntimeError(f"a sold seat answered {sale.outcome}")
    checks.append("a sold seat is SEAT_TAKEN")
    seats_left = calls.seats.availability(s.event, [s.zone])
    if seats_left != {s.zone: sum(left)}:
        raise RuntimeError(f"availability answered {seats_left}, not {sum(left)}")
    checks.append(f"availability {sum(left):,} seats left")
    return checks


def measure_best(
    r: redis.Redis,
    s: Seats,
    bitmap: bytes,
    name: str,
    rounds: int = 10,
    per_round: int = 20,
    cold_per_round: int = 5,
) -> BestCase:
    """The state written, checked, then `rounds` rounds of: `per_round` purchases, as many warm
    best-available holds, as many holds of the chosen seats named, `cold_per_round` cold
    best-available holds, as many PINGs (interleaved: a drift of the machine's load hits all)."""
    left = write_state(r, s, bitmap)
    bits = bits_of(bitmap, s)
    zone = zone_spec(s)
    calls = Calls(r)
    checks = _check_state(calls, s, zone, bits, left)
    expected = first_block_row(bits, s, QUANTITY)
    if expected is None:
        raise RuntimeError(f"no row of {s.event} has {QUANTITY} adjacent free seats")
    row, first, last = _best_once(calls, s, zone, cold=True)
    if row != expected or "1" in bits[row * s.columns + first - 1 : row * s.columns + last]:
        raise RuntimeError(
            f"best available chose row {row} columns {first}-{last}, expected row {expected}"
        )
    checks.append(
        f"best available chose row {row_label(row)}, the first with {QUANTITY} adjacent free seats"
    )
    out = BestCase(
        name=name,
        sold=s.capacity - sum(left),
        capacity=s.capacity,
        rows=s.rows,
        row=row,
        columns=(first, last),
        scanned_cold=row + 1,
        decoded_cold=sum(1 for n in left[: row + 1] if n >= QUANTITY),
        rows_with_block=sum(
            1 for i in range(s.rows) if "0" * QUANTITY in bits[i * s.columns : (i + 1) * s.columns]
        ),
        checks=checks,
    )
    # free seats behind the chosen row, last row first: never read by the scan
    free = [i for i in range(len(bits) - 1, (row + 1) * s.columns - 1, -1) if bits[i] == "0"]
    needed = rounds * per_round
    if len(free) < needed:
        raise RuntimeError("not enough free seats behind the chosen row for the purchases")
    for k in range(rounds):
        for i in range(per_round):
            _purchase_once(calls, s, zone, free[k * per_round + i])
            out.add("purchase", calls.purchase)
        for _ in range(per_round):
            _same(_best_once(calls, s, zone, cold=False), out)
            out.add("warm", calls.hold)
        for _ in range(per_round):
            _chosen_once(calls, s, zone, row, first)
            out.add("chosen", calls.hold)
        for _ in range(cold_per_round):
            _same(_best_once(calls, s, zone, cold=True), out)
            out.add("cold", calls.hold)
        for _ in range(per_round):
            start = time.perf_counter()
            r.ping()
            out.ping_ms.append((time.perf_counter() - start) * 1e3)
    return out


def _same(where: tuple[int, int, int], case: BestCase) -> None:
    if (where[0], (where[1], where[2])) != (case.row, case.columns):
        raise RuntimeError(f"a sample chose {where}, not the state's block: the state changed")


@dataclass
class FullScan:
    """Best available where no row has 4 adjacent free seats: every row read from row 0."""

    rows: int
    sold: int
    ms: list[float] = field(default_factory=list)  # nothing remembered: every row decoded
    redis_us: list[float] = field(default_factory=list)
    # after a seat of row A was freed: row A decoded, the others skipped by their longest runs
    again_ms: list[float] = field(default_factory=list)
    again_redis_us: list[float] = field(default_factory=list)

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def redis_p50(self) -> float:
        alone = [us for us in self.redis_us if not math.isnan(us)]
        return statistics.median(alone) if alone else float("nan")

    @property
    def again_p50(self) -> float:
        return statistics.median(self.again_ms)

    @property
    def again_redis_p50(self) -> float:
        alone = [us for us in self.again_redis_us if not math.isnan(us)]
        return statistics.median(alone) if alone else float("nan")


def without_blocks(bitmap: bytes, s: Seats, n: int = QUANTITY) -> bytes:
    """`bitmap` with one more seat sold in every n free seats in a row: no n-block is left."""
    out = bytearray(bitmap)
    bits = bits_of(bitmap, s)
    for row in range(s.rows):
        run = 0
        for column in range(s.columns):
            bit = row * s.columns + column
            run = run + 1 if bits[bit] == "0" else 0
            if run == n:
                out[bit >> 3] |= 0x80 >> (bit & 7)
                run = 0
    return bytes(out)


def measure_full_scan(r: redis.Redis, s: Seats, bitmap: bytes, samples: int = 3) -> FullScan:
    """The state written with no n-block (`without_blocks`), then `samples` pairs of
    best-available holds from row 0, each NOT_ENOUGH_ADJACENT_SEATS: one with nothing
    remembered (hint and rows' longest runs deleted: every row decoded, the longest a
    best-available call can keep Redis busy in that zone), then one as after a seat of row A
    was freed (hint deleted, row A's longest run deleted: what `free_cells` leaves)."""
    bitmap = without_blocks(bitmap, s)
    left = write_state(r, s, bitmap)
    if first_block_row(bits_of(bitmap, s), s, QUANTITY) is not None:
        raise RuntimeError("a block of adjacent free seats is left")
    zone = zone_spec(s)
    calls = Calls(r)
    out = FullScan(rows=s.rows, sold=s.capacity - sum(left))
    runs_key = keys.runs_key(s.event, s.zone)
    for _ in range(samples):
        for again in (False, True):
            r.hdel(keys.front_key(s.event, s.zone), QUANTITY)
            if again:
                r.hdel(runs_key, row_label(0))
            else:
                r.delete(runs_key)
            held = calls.orders.hold(s.event, s.venue, buyer=_buyer("full"), best=(zone, QUANTITY))
            if held.outcome != "NOT_ENOUGH_ADJACENT_SEATS":
                raise RuntimeError(f"best available answered {held.outcome} without a block")
            (out.again_ms if again else out.ms).append(calls.hold.ms[-1])
            (out.again_redis_us if again else out.redis_us).append(calls.hold.redis_us[-1])
    if r.bitcount(keys.zone_keys(s.event, s.zone)[0]) != out.sold:
        raise RuntimeError("a refused best available changed the seats")
    return out


# --- 10,000 holds expiring at once --------------------------------------------------------------


@dataclass
class Expiry:
    """Holds expiring at once and the drain that freed them."""

    holds: int
    seats: int
    create_s: float = 0.0
    hold_s: float = 0.0
    attempts: int = 0  # more than 1: the machine slowed down while the holds were made
    total_s: float = 0.0
    call_ms: list[float] = field(default_factory=list)  # each sweep call's round trip
    # Redis's own time (on the bench's server only): the mean per sweep call (INFO
    # commandstats over the drain) and the longest (SLOWLOG, calls of SLOWLOG_US or more)
    redis_mean_ms: float = float("nan")
    redis_max_ms: float = float("nan")
    expired_entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def placements(s: Seats, holds: int) -> list[list[tuple[int, int]]]:
    """Hold i gets 1 + i % 4 adjacent seats (row index, column from 1), packed row by row."""
    out, row, column = [], 0, 1
    for i in range(holds):
        n = 1 + i % 4
        if column + n - 1 > s.columns:
            row, column = row + 1, 1
        if row >= s.rows:
            raise ValueError("the zone is too small for the holds")
        out.append([(row, column + k) for k in range(n)])
        column += n
    return out


@contextmanager
def timed_sweeps(r: redis.Redis) -> Iterator[Timed]:
    """Every sweep script call on the client's order scripts (`seats.orders_for`, which the
    relay's sweeper calls) timed, inside the block."""
    orders = seats.orders_for(r)
    timed = orders._sweep = Timed(orders._sweep)
    try:
        yield timed
    finally:
        orders._sweep = timed.script


def measure_expiry(
    r: redis.Redis, s: Seats, holds: int = 10_000, own_server: bool = False
) -> Expiry:
    """`holds` holds, all due at one moment just after the last is made; then the sweeper
    drains them, each call timed (with `own_server`, Redis's own time of each call too, from
    its SLOWLOG, set to keep every call during the drain and restored after)."""
    zone = zone_spec(s)
    orders = OrderScripts(r)  # untimed: the holds are made as fast as one client makes them
    plan = placements(s, holds)
    out = Expiry(holds=holds, seats=sum(len(p) for p in plan))
    # when they fall due: twice what making them takes from now (a hold's mean time on a few
    # holds, cancelled) + 2 s, so none is due, and expired by a later hold, before the last is
    # made; where the machine slows down that much, made again with the rate seen
    write_state(r, s, bytes((s.capacity + 7) // 8))
    pilot = []
    for i in range(min(200, holds)):
        buyer = _buyer("pilot")
        started = time.perf_counter()
        held = orders.hold(s.event, s.venue, buyer=buyer, seats=[(zone, *c) for c in plan[i]])
        pilot.append(time.perf_counter() - started)
        orders.cancel(s.event, held.order.order_id, caller=buyer)
    per_hold = statistics.fmean(pilot)
    while True:
        out.attempts += 1
        out.hold_s = 2.0 + 2 * holds * per_hold
        write_state(r, s, bytes((s.capacity + 7) // 8))
        made, out.create_s = _make_holds(orders, s, zone, plan, out.hold_s)
        if made == holds:
            break
        if out.attempts == 3:
            raise RuntimeError(f"{made} of {holds} holds made before the first fell due, 3 times")
        per_hold = out.create_s / made
    holds_key = keys.holds_key(s.event)
    if r.zcard(holds_key) != holds:
        raise RuntimeError("holds expired before the drain")
    last_due = r.zrange(holds_key, -1, -1, withscores=True)[0][1]
    while _redis_ms(r) <= last_due:
        time.sleep(max(0.01, (last_due - _redis_ms(r)) / 1000))
    outbox = keys.outbox_stream(keys.bucket(s.event))
    entries = r.xlen(outbox)
    with timed_sweeps(r) as timed, _slowlog(r, own_server) as log:
        calls, usec = script_stats(r)
        start = time.perf_counter()
        sweep_event(r, s.event, SWEEP_BATCH)
        out.total_s = time.perf_counter() - start
        calls_after, usec_after = script_stats(r)
    out.call_ms = timed.ms
    if own_server:
        out.redis_mean_ms = (usec_after - usec) / max(1, calls_after - calls) / 1000
        logged = [e["duration"] for e in log if _command(e)[:2] == ["EVALSHA", timed.script.sha]]
        out.redis_max_ms = max(logged, default=0) / 1000  # 0: no call took SLOWLOG_US
    out.expired_entries = r.xlen(outbox) - entries
    out.problems = freed_problems(r, s, holds)
    return out


@contextmanager
def _slowlog(r: redis.Redis, own_server: bool) -> Iterator[list[dict[str, Any]]]:
    """The commands of SLOWLOG_US or more in the block (a script's commands are logged one by
    one too, so not every command: the log would overflow), from the server's SLOWLOG, its
    settings restored after; nothing on a server the bench does not own."""
    entries: list[dict[str, Any]] = []
    if not own_server:
        yield entries
        return
    saved = r.config_get("slowlog-*")
    r.config_set("slowlog-log-slower-than", SLOWLOG_US)
    r.config_set("slowlog-max-len", 10_000)
    r.slowlog_reset()
    try:
        yield entries
        entries.extend(r.slowlog_get(10_000))
    finally:
        for name, value in saved.items():
            r.config_set(name, value)
        r.slowlog_reset()


def _command(entry: dict[str, Any]) -> list[str]:
    command = entry.get("command", "")
    command = command.decode() if isinstance(command, bytes) else command
    return command.split()


def _make_holds(
    orders: OrderScripts, s: Seats, zone: ZoneSpec, plan: list[list[tuple[int, int]]], hold_s: float
) -> tuple[int, float]:
    """The holds of `plan`, one buyer each, all due `hold_s` from now; stops short when the due
    moment is near (a later hold's script would expire the first). (Holds made, seconds.)"""
    due = time.time() + hold_s
    start = time.perf_counter()
    for i, cells in enumerate(plan):
        left = due - time.time()
        if left < 0.5:
            return i, time.perf_counter() - start
        held = orders.hold(
            s.event,
            s.venue,
            buyer=f"expiry-{i}",
            seats=[(zone, *c) for c in cells],
            limits=Limits(),
            hold_seconds=left,
        )
        if held.outcome != "OK":
            raise RuntimeError(f"hold {i} answered {held.outcome}")
    return len(plan), time.perf_counter() - start


def _redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return seconds * 1000 + micros // 1000


def freed_problems(r: redis.Redis, s: Seats, holds: int) -> list[str]:
    """What is not as it must be once every hold expired: every seat free, no buyer counted."""
    sold_key, left_key, event_key = keys.zone_keys(s.event, s.zone)
    left = r.hgetall(left_key)
    found = {
        "sold bits": r.bitcount(sold_key),
        "held bits": r.bitcount(keys.held_key(s.event, s.zone)),
        "owners": r.hlen(keys.owners_key(s.event, s.zone)),
        "holders": r.hlen(keys.holder_key(s.event, s.zone)),
        "buyers counted": r.hlen(keys.buyers_key(s.event)),
        "holds left": r.zcard(keys.holds_key(s.event)),
        "event sold": int(r.hget(event_key, "sold") or 0),
        "zone seats not left": s.capacity - int(left.get("zone", 0)),
        "rows not all left": sum(
            1 for i in range(s.rows) if int(left.get(row_label(i), 0)) != s.columns
        ),
    }
    problems = [f"{what} {n}" for what, n in found.items() if n]
    pipe = r.pipeline(transaction=False)
    for key in r.scan_iter(match=keys.event_prefix(s.event) + "order:*", count=1000):
        pipe.hget(key, "doc")
    statuses: dict[str, int] = {}
    for doc in pipe.execute():
        status = json.loads(doc)["status"]
        statuses[status] = statuses.get(status, 0) + 1
    if statuses.get("EXPIRED", 0) != holds or statuses.get("HELD", 0):
        problems.append(f"orders {statuses}")
    return problems


# --- the phase ---------------------------------------------------------------------------------


@dataclass
class BoxOffice:
    front: BestCase
    random: BestCase
    full: FullScan
    expiry: Expiry
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return self.expiry.clean


def measure(
    r: redis.Redis,
    front: Seats = seating.BEST_FRONT,
    scattered: Seats = seating.BEST_RANDOM,
    expiry: Seats = seating.EXPIRY,
    *,
    holds: int = 10_000,
    share: float = SOLD_SHARE,
    rounds: int = 10,
    per_round: int = 20,
    say: Callable[[str], None] = print,
    own_server: bool = False,
) -> BoxOffice:
    """The whole phase on `r`, a database of the bench's own (its keys are left behind); with
    `own_server` (the bench's Redis server), the sweep calls' Redis times from its SLOWLOG."""
    started = time.monotonic()
    sold = round(front.capacity * share)
    say(
        f"box office: best available for {QUANTITY} vs a purchase, {sold:,} of "
        f"{front.capacity:,} seats sold from the front"
    )
    by_rows = measure_best(r, front, front_bitmap(front, sold), "front", rounds, per_round)
    say("box office: the same, sold at random")
    sold = round(scattered.capacity * share)
    scattered_bitmap = random_bitmap(scattered, sold)
    at_random = measure_best(r, scattered, scattered_bitmap, "random", rounds, per_round)
    say(f"box office: {holds:,} holds expiring at once, then the sweeper's drain")
    expired = measure_expiry(r, expiry, holds, own_server)
    say("box office: best available with no 4 adjacent free seats left (a scan of every row)")
    full = measure_full_scan(  # last: a second of Lua a call, with nothing measured after
        r, dataclasses.replace(scattered, event=f"{scattered.event}NoBlock"), scattered_bitmap
    )
    return BoxOffice(by_rows, at_random, full, expired, time.monotonic() - started)


def verdicts(result: BoxOffice) -> list[tuple[str, str, str, str]]:
    """The bench table's rows."""
    from report import at_most, fmt

    f, s, e, full = result.front, result.random, result.expiry, result.full
    return [
        (
            "best available",
            f"{QUANTITY} seats p50 {f.p50('warm'):.2f} ms, single-seat purchase p50 "
            f"{f.p50('purchase'):.2f} ms: {f.ratio('warm'):.2f} × (Redis's own time "
            f"{f.redis_ratio('warm'):.1f} ×), zone {f.sold / f.capacity:.0%} sold from the "
            f"front, hint warm; a hold of the same 4 seats named {f.ratio('chosen'):.2f} ×; "
            f"from row A (hint cold, {f.scanned_cold} rows read) {f.p50('cold'):.2f} ms = "
            f"{f.ratio('cold'):.2f} ×",
            "≤ 2 × the purchase",
            at_most(f.ratio("warm"), 2.0),
        ),
        (
            "best available, sold at random",
            f"p50 {s.p50('cold'):.2f} ms from row A ({s.scanned_cold} rows read, "
            f"{s.decoded_cold} searched) = {s.ratio('cold'):.1f} × the purchase's "
            f"{s.p50('purchase'):.2f} ms; hint warm (1 row) {s.p50('warm'):.2f} ms = "
            f"{s.ratio('warm'):.2f} ×; with no {QUANTITY} adjacent free seats left, every row "
            f"read and searched ({full.rows:,}): {full.p50:.1f} ms (in Redis "
            f"{fmt(full.redis_p50 / 1000, '.1f')} ms) to answer NOT_ENOUGH_ADJACENT_SEATS; "
            f"after a seat of row A is freed {full.again_p50:.2f} ms (in Redis "
            f"{fmt(full.again_redis_p50 / 1000, '.2f')} ms)",
            "none",
            "info",
        ),
        (
            "hold expiry",
            f"{e.holds:,} holds ({e.seats:,} seats) due at once freed in {e.total_s:.2f} s by "
            f"{len(e.call_ms)} sweep calls: p50 {percentile(e.call_ms, 0.5):.1f} ms, longest "
            f"{max(e.call_ms):.1f} ms (in Redis {fmt(e.redis_mean_ms, '.1f')} ms on average, "
            f"longest {fmt(e.redis_max_ms, '.1f')} ms); "
            + ("every seat free, no buyer counted" if e.clean else "; ".join(e.problems)),
            "all freed",
            "met" if e.clean else "FAILED",
        ),
    ]


SERIES = (
    ("purchase", "purchase, 1 seat"),
    ("chosen", "hold, 4 named seats"),
    ("warm", "best, hint warm"),
    ("cold", "best, hint cold"),
)


def render(result: BoxOffice) -> str:
    """Per state and call: round trip p50 and p99, Redis's own time, the ratio to the purchase;
    the rows scanned."""
    from report import Table, fmt

    t = Table(header=("state", *(title for _, title in SERIES), "rows scanned"))
    t.wrap = (16, 19, 19, 19, 19, 24)
    for case in (result.front, result.random):
        t.add(
            f"{case.sold:,}/{case.capacity:,} sold "
            + ("from the front" if case.name == "front" else "at random"),
            *(
                f"p50 {case.p50(k):.2f} ms, p99 {percentile(case.ms[k], 0.99):.2f} ms; "
                f"in Redis {case.redis_p50(k):.0f} µs"
                + ("" if k == "purchase" else f"; {case.ratio(k):.2f} ×")
                for k, _ in SERIES
            ),
            f"warm 1; cold {case.scanned_cold} (to row {row_label(case.row)}), "
            f"{case.decoded_cold} of them searched; {case.rows_with_block} of "
            f"{case.rows} rows have {QUANTITY} adjacent free seats",
        )
    e = result.expiry
    f = result.front
    full = result.full
    t.note(
        f"no block left: the random state with the {QUANTITY}th seat of every {QUANTITY} "
        f"adjacent free ones sold too ({full.sold:,} sold), {len(full.ms)} best-available "
        f"holds from row A with nothing remembered, each NOT_ENOUGH_ADJACENT_SEATS after "
        f"reading and searching all {full.rows:,} rows: p50 "
        f"{full.p50:.1f} ms, in Redis {fmt(full.redis_p50, '.0f')} µs "
        f"({fmt(full.redis_p50 / full.rows, '.0f')} µs a row); {len(full.again_ms)} more as "
        f"after a seat of row A was freed (row A searched, the other rows skipped by the "
        f"longest run kept for them): p50 {full.again_p50:.2f} ms, in Redis "
        f"{fmt(full.again_redis_p50, '.0f')} µs"
    )
    t.note(
        f"best available: one client, sequential calls, each script call timed on the client "
        f"(EVALSHA round trip; PING p50 {statistics.median(f.ping_ms):.3f} ms on the same "
        f"client) and in Redis (INFO commandstats µs before and after the call, untimed); per "
        f"state {len(f.ms['purchase'])} purchases, {len(f.ms['chosen'])} holds of named seats, "
        f"{len(f.ms['warm'])} warm and {len(f.ms['cold'])} cold best-available holds in "
        f"interleaved rounds, each hold cancelled after (untimed), so every sample meets the "
        f"same state; ratios of p50s to the purchase's. Cold = the zone's `front` hint for "
        f"{QUANTITY} and its rows' longest runs deleted before the hold (a scan from row A "
        f"that remembers nothing, as after a rebuild), warm = the hint the previous hold left "
        f"(as while an on-sale fills the zone). States written into Redis directly (bitmap, "
        f"row and zone counters, event counters; random: seeded) and checked by real script calls: "
        + "; ".join(f.checks)
        + f". Rows scanned are counted from the state written (a row with fewer than {QUANTITY} "
        "seats left costs one HGET; the others are decoded byte by byte and searched), not by the "
        "script"
    )
    t.note(
        f"hold expiry: {e.holds:,} holds of 1 to 4 adjacent seats, one buyer each, made in "
        f"{e.create_s:.1f} s, all due {e.hold_s:.1f} s after the first was made (none before "
        f"the last was made"
        + (f"; made {e.attempts} times, the machine slowed down" if e.attempts > 1 else "")
        + f"); once all were due, drained by relay.sweeper.sweep_event(r, event, {SWEEP_BATCH}) "
        f"(the relay's sweeper); Redis's own time "
        f"per call: the mean from INFO commandstats over the drain, the longest from the "
        f"SLOWLOG of the bench's server (set to keep commands of {SLOWLOG_US} µs or more "
        f"during the drain); "
        f"{e.expired_entries:,} outbox entries (EXPIRED orders) appended; then checked: seats, "
        f"held seats, owners, holders, buyers' counts, holds, row, zone and event counters, "
        f"every order EXPIRED. Phase wall time {result.seconds:.0f} s"
    )
    return t.render()


def figures(result: BoxOffice) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case in (result.front, result.random):
        out[f"best_{case.name}"] = {
            "sold": case.sold,
            "capacity": case.capacity,
            **{f"{k}_p50_ms": case.p50(k) for k, _ in SERIES},
            **{f"{k}_redis_p50_us": case.redis_p50(k) for k, _ in SERIES},
            **{f"{k}_ratio": case.ratio(k) for k, _ in SERIES if k != "purchase"},
            "row": row_label(case.row),
            "rows_scanned_cold": case.scanned_cold,
            "rows_searched_cold": case.decoded_cold,
            "rows_with_block": case.rows_with_block,
            "ping_p50_ms": statistics.median(case.ping_ms),
        }
    out["best_no_block"] = {
        "rows": result.full.rows,
        "sold": result.full.sold,
        "p50_ms": result.full.p50,
        "redis_p50_us": result.full.redis_p50,
        "after_free_p50_ms": result.full.again_p50,
        "after_free_redis_p50_us": result.full.again_redis_p50,
    }
    e = result.expiry
    out["expiry"] = {
        "holds": e.holds,
        "seats": e.seats,
        "sweep_batch": SWEEP_BATCH,
        "total_s": e.total_s,
        "calls": len(e.call_ms),
        "call_p50_ms": percentile(e.call_ms, 0.5),
        "call_max_ms": max(e.call_ms),
        "redis_mean_ms": e.redis_mean_ms,
        "redis_max_ms": e.redis_max_ms,
        "attempts": e.attempts,
        "problems": e.problems,
    }
    return out

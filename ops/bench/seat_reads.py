"""The seat-map phase: the 64-client purchases alone, then with buyers reading the hot event's
seat map at a steady high rate from the same purchase API, whose Redis shard decides the sale.

The map read is of the purchased event's other zone (seating.WATCHED: the same hash tag, so
the same Redis slot as the sales). The API keeps each answer for SEAT_MAP_CACHE_MS; a second
purchase API with the cache off (SEAT_MAP_CACHE_MS=0) shows what the reads would cost without
it. Rounds are interleaved (alone, kept, uncached, then the reverse order) and medians reported.
"""

from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from dataclasses import dataclass, field

import seating
import services
import wrk_load
from load_phases import CLIENTS, Rig, script_calls
from wrk_load import LoadResult

READ_CLIENTS = 16
STATES = ("alone", "kept", "uncached")


@dataclass
class SeatReads:
    """Per state: the purchase runs, the read runs beside them, the reads' Redis script calls."""

    rate: float  # seat-map reads per second asked for
    seconds: float
    purchases: dict[str, list[LoadResult]] = field(default_factory=dict)
    reads: dict[str, list[LoadResult]] = field(default_factory=dict)
    read_calls: dict[str, list[int]] = field(default_factory=dict)  # script calls less sales

    def p99(self, state: str) -> float:
        return statistics.median(r.p99_ms for r in self.purchases[state])

    def purchase_rate(self, state: str) -> float:
        return statistics.median(r.rate for r in self.purchases[state])

    def read_rate(self, state: str) -> float:
        return statistics.median(r.rate for r in self.reads[state])

    def read_p99(self, state: str) -> float:
        return statistics.median(r.p99_ms for r in self.reads[state])

    def calls_per_s(self, state: str) -> float:
        """Redis script calls per second the reads made (beyond the purchases' one each)."""
        return statistics.median(self.read_calls[state]) / self.seconds

    def change(self, state: str) -> float:
        """Median over rounds of purchase p99 with the reads ÷ alone in the same round, − 1."""
        pairs = zip(self.purchases["alone"], self.purchases[state], strict=False)
        return statistics.median(b.p99_ms / a.p99_ms for a, b in pairs if a.p99_ms) - 1

    @property
    def states(self) -> list[str]:
        return [s for s in STATES if s in self.purchases]


def _round(rig: Rig, seconds: float, path: str | None, rate: float, out: SeatReads, state: str):
    """One purchase run at 64 clients; with `path`, paced reads of it for the whole run."""
    box: dict[str, LoadResult] = {}
    reader = None
    if path is not None:
        args = wrk_load.paced(path, rate, READ_CLIENTS)

        def read() -> None:
            box["reads"] = wrk_load.run(
                rig.wrk, rig.purchase.url, args, connections=READ_CLIENTS, seconds=seconds + 2
            )

        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(1)  # the readers connected and at their pace before the purchases start
    calls_before = script_calls(rig.redis)
    purchases = rig.buy_run(seconds)  # settles: returns once the reads have stopped too
    calls = script_calls(rig.redis) - calls_before
    if reader is not None:
        reader.join()
        out.reads.setdefault(state, []).append(box["reads"])
        # every purchase sent is one script call (those in flight at the end are served
        # before the settle returns); the rest are the reads' (one per miss)
        out.read_calls.setdefault(state, []).append(max(0, calls - purchases.sent))
    out.purchases.setdefault(state, []).append(purchases)


def measure(
    rig: Rig, uncached: services.Service | None, rounds: int, seconds: float, rate: float
) -> SeatReads:
    """`rounds` rounds of alone / reads kept / reads uncached (when `uncached` is given), the
    order reversed every other round."""
    s = seating.WATCHED
    path = f"/purchase/api/v1/events/{s.event}/zones/{s.zone}/seats"
    out = SeatReads(rate, seconds)
    states = [st for st in STATES if st != "uncached" or uncached is not None]
    rig.buy_run(1)  # warm-up
    for n in range(rounds):
        for state in states if n % 2 == 0 else reversed(states):
            on = rig if state != "uncached" else dataclasses.replace(rig, purchase=uncached)
            _round(on, seconds, None if state == "alone" else path, rate, out, state)
            rig.next_seat = on.next_seat
    return out


def verdict(result: SeatReads) -> tuple[str, str, str, str]:
    """The bench table's row: purchase p99 with the kept reads against alone."""
    change = result.change("kept")
    parts = [
        f"purchase p99 {result.p99('alone'):.1f} ms alone, {result.p99('kept'):.1f} ms with "
        f"{result.read_rate('kept'):.0f} seat-map reads/s ({change:+.1%})"
    ]
    if "uncached" in result.purchases:
        parts.append(
            f"{result.p99('uncached'):.1f} ms with them uncached ({result.change('uncached'):+.1%})"
        )
    return (
        "seat-map reads",
        ", ".join(parts) + f" at {CLIENTS} clients",
        "p99 within +10 %",
        "met" if change <= 0.10 else f"MISSED by {change - 0.10:.0%} points",
    )


def render(result: SeatReads) -> str:
    """Purchases and reads per state, and the conditions."""
    from report import Table

    t = Table(
        header=("state", "purchases", "seat-map reads", "reads' Redis calls"), wrap=(10, 30, 34, 20)
    )
    for state in result.states:
        reads = (
            f"{result.read_rate(state):.0f}/s, p99 {result.read_p99(state):.1f} ms"
            if state in result.reads
            else "none"
        )
        calls = f"{result.calls_per_s(state):.1f}/s" if state in result.read_calls else "-"
        t.add(
            state,
            f"{result.purchase_rate(state):.0f}/s, p99 {result.p99(state):.1f} ms",
            reads,
            calls,
        )
    s = seating.WATCHED
    t.note(
        f"seat-map reads: {len(result.purchases['alone'])} rounds of {result.seconds:g} s per "
        f"state, interleaved; purchases at {CLIENTS} clients as in the throughput phase; reads "
        f"of {s.event}'s zone {s.zone} ({s.rows}×{s.columns} seats, the sold event's own Redis "
        f"slot) paced at {result.rate:g}/s over {READ_CLIENTS} connections by a second wrk; "
        "kept = the purchase API as configured (SEAT_MAP_CACHE_MS), uncached = a second "
        "purchase API with SEAT_MAP_CACHE_MS=0. Reads' Redis calls: script calls beyond one per "
        "purchase request. Medians of the rounds."
    )
    return t.render()


def figures(result: SeatReads) -> dict:
    return {
        state: {
            "purchase_rps": result.purchase_rate(state),
            "purchase_p99_ms": result.p99(state),
            **(
                {
                    "read_rps": result.read_rate(state),
                    "read_p99_ms": result.read_p99(state),
                    "read_redis_calls_per_s": result.calls_per_s(state),
                    "p99_change": result.change(state),
                }
                if state in result.reads
                else {}
            ),
        }
        for state in result.states
    }

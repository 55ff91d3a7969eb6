"""From the phases' results to what `make bench` prints: the table with each performance target
met or missed by how much, the conditions of each measurement, RSS, and the result line."""

from __future__ import annotations

import os
import time
from typing import Any

import box_office
import seat_reads
from box_office import BoxOffice
from load_phases import AcceptReject, FlashSale, Flatness, Throughput
from projection import Drain, Lag
from reads import Reads, figures, render, verdicts
from report import Table, at_least, at_most, fmt, result_line, rss_table
from seat_reads import SeatReads
from tokens import TokenCosts


def _rounds(values: list[float], spec: str = ".0f") -> str:
    return ", ".join(format(v, spec) for v in values)


def print_results(
    throughput: Throughput,
    flash: FlashSale,
    accept_reject: AcceptReject,
    flat: Flatness,
    drain: Drain,
    lag: Lag,
    reads: Reads,
    rss: list[tuple[str, list[float]]],
    standin_url: str,
    started: float,
    machine: str,
    seat_map: SeatReads,
    tokens: TokenCosts | None = None,
    box: BoxOffice | None = None,
) -> dict[str, Any]:
    """Print the machine, the table, the RSS and the result line (last); return the figures."""
    t = Table()
    ceiling, purchase = throughput.ceiling_rate, throughput.purchase_rate
    ratio = purchase / ceiling if ceiling else None
    p50, p99 = throughput.purchase_pct("p50_ms"), throughput.purchase_pct("p99_ms")
    cpu = sorted(throughput.purchase_cpu_ms)[len(throughput.purchase_cpu_ms) // 2]
    ceiling_cpu = sorted(throughput.ceiling_cpu_ms)[len(throughput.ceiling_cpu_ms) // 2]
    t.add(
        "ceiling",
        f"{ceiling:.0f} req/s (rounds {_rounds([r.rate for r in throughput.ceiling])}), "
        f"{ceiling_cpu:.2f} ms gunicorn CPU/req",
    )
    t.add(
        "purchase",
        f"{purchase:.0f} req/s = {fmt(ratio, '.2f')} × ceiling "
        f"(rounds {_rounds([r.rate for r in throughput.purchase])}), {cpu:.2f} ms gunicorn CPU/req",
        "≥ 0.80 × ceiling",
        at_least(ratio, 0.8),
    )
    t.add(
        "purchase latency",
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms at 64 clients",
        "p99 ≤ 50 ms",
        at_most(p99, 50),
    )
    if tokens is not None:
        t.add(
            "token verification",
            f"HS256 {tokens.hs256_ms * 1000:.0f} µs, RS256 {tokens.rs256_ms * 1000:.0f} µs CPU "
            f"for a token seen first ({tokens.rs256_ms / cpu:.0%} of a purchase's {cpu:.2f} ms); "
            f"{tokens.repeat_ms * 1000:.1f} µs for a token seen again (remembered 60 s)",
        )
    relay_p99 = _median(throughput.relay_p99_ms)
    drain_s = _median(throughput.drain_s)
    t.add(
        "relay latency",
        f"sale → acknowledged by SNS p50 {_median(throughput.relay_p50_ms):.1f} ms, p99 "
        f"{relay_p99:.1f} ms (rounds {_rounds(throughput.relay_p99_ms, '.1f')}), max "
        f"{_median(throughput.relay_max_ms):.0f} ms at 64 clients; {throughput.messages} "
        f"messages for {throughput.sales} sales ({throughput.distinct_tickets} distinct "
        f"tickets)",
        "p99 ≤ 100 ms",
        at_most(relay_p99, 100),
    )
    t.add(
        "relay drain",
        f"backlog drained {drain_s * 1e3:.0f} ms after the load ended (rounds "
        f"{_rounds([d * 1e3 for d in throughput.drain_s])} ms); outbox "
        f"{'empty' if throughput.drained else 'NOT empty'} after every round",
        "≤ 2 s",
        at_most(drain_s, 2.0),
    )
    relay_cpu = _median(throughput.relay_net_cpu_ms)
    t.add(
        "relay CPU",
        f"{relay_cpu:.3f} ms CPU/message net of idle; gross "
        f"{_median(throughput.relay_cpu_ms):.3f}; idle {throughput.relay_idle_ms_per_s:.0f} ms "
        f"CPU/s; {_per_call(throughput)}",
        "≤ 0.3 ms CPU/message",
        at_most(relay_cpu, 0.3),
    )
    r = flash.result
    codes = ", ".join(f"{k} {v}" for k, v in sorted(r.codes.items()))
    t.add(
        "flash sale",
        f"{r.requests} attempts on {flash.seats} seats: {flash.created} × 201 "
        f"({r.seats_sold} distinct seats), "
        f"{flash.rejected} × 409 ({codes}); {flash.redis_calls} Redis script calls; "
        f"{flash.outbox_appends} outbox entries; relayed: {flash.messages} messages at the "
        f"stand-in for {flash.published_tickets} distinct tickets and "
        f"{flash.published_seats} distinct seats, "
        f"{'the seats’ owners exactly' if flash.owners_published else 'NOT the seats’ owners'}"
        f"; {r.rate:.0f} req/s",
        f"exactly {flash.seats} × 201, {flash.attempts - flash.seats} × 409; 1 call each; "
        f"1 entry and 1 message per sale",
        "met" if flash.exact else "FAILED",
    )
    t.add(
        "oversold",
        f"{flash.oversold} (201s beyond the seats, seats answered 201 twice, seats or "
        f"tickets published twice); bitmap {flash.bitmap_sold}, event sold "
        f"{flash.event_sold}, zone left {flash.zone_left}",
        "0",
        "met" if flash.oversold == 0 else "FAILED",
    )
    ar = accept_reject
    ar_ratio = ar.ratio
    t.add(
        "reject vs accept",
        f"reject p50 {ar.reject_p50:.2f} ms, accept p50 {ar.accept_p50:.2f} ms: "
        f"{fmt(ar_ratio, '.2f')} at {ar.clients} clients; {ar.reject_appends} outbox entries "
        f"and {ar.reject_messages} messages for the rejections",
        "none: a sale and a refusal are one Redis call each; 0 entries for refusals",
        "info" if ar.reject_appends == ar.reject_messages == 0 else "FAILED",
    )
    flat_p50 = [sorted(x.p50_ms for x in runs)[len(runs) // 2] for runs in (flat.empty, flat.full)]
    change = flat.ratio - 1
    t.add(
        "flatness",
        f"purchase p50 {flat_p50[0]:.2f} ms with 0 sold, {flat_p50[1]:.2f} ms with "
        f"{flat.sold:,} sold: {change:+.1%}; the seat script in Redis "
        f"{_median(flat.check_empty_us):.1f} / {_median(flat.check_full_us):.1f} µs per call: "
        f"{flat.check_ratio - 1:+.1%}",
        "within ±10 %",
        "met" if abs(change) <= 0.10 else f"MISSED by {abs(change) - 0.10:.0%} points",
    )
    t.add(
        "worker",
        f"{drain.net_ms_per_ticket:.2f} ms CPU/ticket net of idle; gross "
        f"{drain.steady_ms_per_ticket:.2f} (10→90 % of the drain), "
        f"{drain.whole_ms_per_ticket:.2f} over all of it; of which main process "
        f"{drain.main_ms_per_ticket:.2f}, pool "
        f"{drain.steady_ms_per_ticket - drain.main_ms_per_ticket:.2f}; idle "
        f"{drain.idle_ms_per_s:.0f} ms "
        f"CPU/s; {drain.rows}/{drain.tickets} rows in {drain.seconds:.1f} s ({drain.rate:.0f}/s)",
        "≤ 1 ms CPU/ticket",
        at_most(drain.net_ms_per_ticket, 1.0),
    )
    bound = "≥ " if lag.readable < lag.sold else ""
    t.add(
        "lag",
        f"p50 {bound}{lag.p50_ms:.0f} ms, p99 {bound}{lag.p99_ms:.0f} ms, max {bound}"
        f"{lag.max_ms:.0f} ms over {lag.sold} purchases at {lag.rate:.0f}/s; "
        f"{lag.readable}/{lag.sold} rows readable; purchase p50 {lag.purchase_p50_ms:.0f} ms "
        f"via moto",
        "p99 ≤ 100 ms at 50/s",
        at_most(lag.p99_ms, 100),
    )
    for row in verdicts(reads):
        t.add(*row)
    t.add(*seat_reads.verdict(seat_map))
    for row in box_office.verdicts(box) if box is not None else []:
        t.add(*row)
    light_rate = sum(x.rate for x in ar.accept) / max(1, len(ar.accept))
    t.note(
        f"purchase path: the purchase API publishes nothing; the relay (Procfile `relay`) ran "
        f"beside it on the same cores and published the outbox to the stand-in SNS endpoint "
        f"{standin_url}, not moto: it acknowledged {throughput.messages} messages for the "
        f"{throughput.sales} sales of the measured rounds ({throughput.answered} answered 201 "
        f"before wrk stopped, the rest finished after) in {_calls(throughput.calls)}, using "
        f"{fmt(_median(throughput.standin_cpu_ms), '.2f')} ms of its own CPU per message"
    )
    t.note(
        "relay: per ticket, the moment the stand-in acknowledged its message − the ticket's "
        "createdOn (stamped by the purchase view just before its one Redis call, ms "
        "resolution, same clock): an upper bound of 201 → SNS by the few ms the script call "
        "and the answer take. wrk does not read purchase bodies (it would cost it CPU the "
        "server needs), and the outbox entry's id time is gone once the relay deleted it. "
        "Drain: the last acknowledgement − wrk's end; CPU: psutil on the relay process from "
        "the round's start to the drained outbox, net = minus its idle CPU per second "
        "(measured for 2 s before the rounds) × that time; "
        f"{_relay_settings()}"
    )
    t.note(
        "throughput: wrk, 1 thread, 64 connections, ceiling and purchase rounds interleaved, "
        "medians; distinct free seats in a 2,000,000-seat zone; gunicorn " + _gunicorn_settings()
    )
    t.note(
        f"reject vs accept: light load, where latency is the work of one request and not "
        f"queueing (at saturation both p50 are clients ÷ throughput): {ar.clients} clients, "
        f"closed loop, about {light_rate:.0f} purchases/s, {len(ar.accept)} + {len(ar.reject)} "
        f"runs of 1 s in A/R/R/A order; the ratio is the median over neighbouring runs "
        f"(a change of the machine's load between pairs cancels); the same zone; rejections are "
        f"SEAT_TAKEN on seats sold before: {ar.reject_redis_calls} Redis script calls for "
        f"{ar.reject_requests} rejections answered ({ar.reject_sent} sent), "
        f"{ar.reject_appends} outbox entries appended, {ar.reject_messages} messages at the "
        f"stand-in once the outbox was empty; p99 reject "
        f"{_median([x.p99_ms for x in ar.reject]):.2f} ms, accept "
        f"{_median([x.p99_ms for x in ar.accept]):.2f} ms"
    )
    t.note(
        f"flatness: {flat.clients} clients, {len(flat.empty)} + {len(flat.full)} runs of 1 s in "
        f"0/1M/1M/0 order, medians, the change being the median over neighbouring runs; "
        f"the 1M state is written to Redis directly (0xFF bitmap bytes "
        f"for 500 full rows, their row counters 0, zone and event counters to match); the seat "
        f"script's time is Redis's own (INFO commandstats, µs per EVALSHA) during those runs"
    )
    t.note(
        f"worker: the Procfile's `celery worker` draining {drain.tickets} tickets sold through "
        f"the purchase API and the relay to moto (SNS → SQS raw) before it started: CPU of its "
        f"main and pool "
        f"processes (psutil) ÷ rows in MariaDB, sampled every 100 ms; net = minus its idle CPU "
        f"per second (measured for 3 s after the drain) × the drain's seconds. moto's SQS "
        f"slows down with the queue's depth, so the drain rate is moto's"
    )
    if lag.readable < lag.sold:
        t.note(
            f"lag: {lag.sold - lag.readable} tickets were not readable when the bench stopped "
            f"waiting; they count with the time waited, so the lag figures are lower bounds"
        )
    if lag.rate < 0.9 * lag.target_rate or drain.rate < lag.rate:
        t.note(
            f"lag: the purchases reached {lag.rate:.0f}/s of the {lag.target_rate:.0f}/s asked "
            f"(purchase p50 {lag.purchase_p50_ms:.0f} ms, p99 "
            f"{lag.purchase_p99_ms:.0f} ms) and the worker drained {drain.rate:.0f}/s through "
            f"moto: where the drain is slower than the purchases, the queue and the lag grow "
            f"for as long as the run lasts"
        )
    t.note(
        f"lag: an open-loop client at {lag.rate:.0f}/s through the purchase API, the relay, "
        f"moto (SNS → SQS), the worker and MariaDB; lag = the row's persisted_on (MariaDB "
        f"NOW(6) at the insert; the commit follows in the same transaction) − the moment the "
        f"request was sent; nothing polls during the run; {lag.query_ok}/{lag.query_checked} "
        f"sampled tickets answered 200 on "
        f"GET /query/api/v1/tickets/<id>"
    )
    load = os.getloadavg()
    t.note(
        f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} at the end (others may "
        f"share it); bench wall time {time.monotonic() - started:.0f} s"
    )
    print()
    print(machine)
    print()
    print(t.render())
    print()
    print(render(reads))
    print()
    print(seat_reads.render(seat_map))
    print()
    if box is not None:
        print(box_office.render(box))
        print()
    print(rss_table(rss))
    print()
    line = result_line(
        purchase_rps=purchase,
        ceiling_rps=ceiling,
        p50_ms=p50,
        p99_ms=p99,
        reject_p50_ms=ar.reject_p50,
        relay_p99_ms=relay_p99,
        worker_ms_per_ticket=drain.net_ms_per_ticket,
        lag_p99_ms=lag.p99_ms,
        oversold=flash.oversold,
    )
    print(line, flush=True)
    return {
        "line": line,
        "machine": machine,
        "table": t.rows,
        "notes": t.notes,
        "rss": rss,
        "ceiling_rps": ceiling,
        "purchase_rps": purchase,
        "purchase_p50_ms": p50,
        "purchase_p99_ms": p99,
        "accept_p50_ms": ar.accept_p50,
        "reject_p50_ms": ar.reject_p50,
        "relay_p50_ms": _median(throughput.relay_p50_ms),
        "relay_p99_ms": relay_p99,
        "relay_p99_rounds_ms": throughput.relay_p99_ms,
        "relay_drain_s": drain_s,
        "relay_drain_rounds_s": throughput.drain_s,
        "relay_ms_cpu_per_message": relay_cpu,
        "relay_gross_ms_cpu_per_message": _median(throughput.relay_cpu_ms),
        "relay_idle_ms_cpu_per_s": throughput.relay_idle_ms_per_s,
        "purchase_ms_cpu_per_request": cpu,
        "flat_ratio": flat.ratio,
        "flat_p50_runs_ms": {
            "0": [x.p50_ms for x in flat.empty],
            str(flat.sold): [x.p50_ms for x in flat.full],
        },
        "worker_ms_per_ticket": drain.net_ms_per_ticket,
        "worker_gross_ms_per_ticket": drain.steady_ms_per_ticket,
        "lag_p99_ms": lag.p99_ms,
        "reads": figures(reads),
        "seat_map_reads": seat_reads.figures(seat_map),
        "box_office": box_office.figures(box) if box is not None else None,
        "oversold": flash.oversold,
    }


def _calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{n} {action}" for action, n in sorted(calls.items())) or "no calls"


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


def _gunicorn_settings() -> str:
    """The web processes' configuration as this run's environment sets it."""
    env = os.environ
    return (
        f"{env.get('GUNICORN_WORKER_CLASS', 'gthread')} "
        f"{env.get('GUNICORN_WORKERS', '2')}×{env.get('GUNICORN_THREADS', '8')} "
        "(gunicorn.conf.py)"
    )


def _relay_settings() -> str:
    """The relay's batching as this run's environment sets it (defaults: plumbing.settings)."""
    env = os.environ
    return (
        f"RELAY_BATCH_WINDOW_MS={env.get('RELAY_BATCH_WINDOW_MS', '10 (default)')}, "
        f"RELAY_IDLE_SLEEP_MS={env.get('RELAY_IDLE_SLEEP_MS', '20 (default)')}"
    )


def _per_call(throughput: Throughput) -> str:
    calls = throughput.calls.get("PublishBatch", 0)
    if not calls:
        return "no PublishBatch"
    return f"{throughput.messages / calls:.1f} messages per PublishBatch ({calls} calls)"


def print_class_comparison(rows: list[tuple[str, Throughput]]) -> None:
    """One line per gunicorn configuration: ceiling, purchase, ratio, latency, CPU."""
    t = Table(
        header=(
            "gunicorn",
            "ceiling/s",
            "ceiling p99",
            "purchase/s",
            "× ceiling",
            "p50",
            "p99",
            "CPU/purchase",
            "relay p99",
            "failures",
        ),
        wrap=(14, 10, 12, 10, 9, 9, 9, 12, 9, 8),
    )
    for name, r in rows:
        ratio = r.purchase_rate / r.ceiling_rate if r.ceiling_rate else None
        t.add(
            name,
            f"{r.ceiling_rate:.0f}",
            f"{_median([x.p99_ms for x in r.ceiling]):.0f} ms",
            f"{r.purchase_rate:.0f}",
            fmt(ratio, ".2f"),
            f"{r.purchase_pct('p50_ms'):.0f} ms",
            f"{r.purchase_pct('p99_ms'):.0f} ms",
            f"{_median(r.purchase_cpu_ms):.2f} ms",
            f"{_median(r.relay_p99_ms):.0f} ms",
            str(r.failures),
        )
    load = os.getloadavg()
    t.note(
        "64 clients, wrk 1 thread, ceiling and purchase rounds interleaved (the relay beside "
        "the purchase API, publishing to the stand-in), medians; CPU/purchase is gunicorn's "
        f"(master and workers); load average {load[0]:.1f} at the end"
    )
    print()
    print(t.render())

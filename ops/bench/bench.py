"""`make bench`: the purchase path measured against its ceiling, in one run, on this machine.

    python ops/bench/bench.py                     # every phase, a table, then the result line
    python ops/bench/bench.py --compare-classes   # ceiling and purchase per gunicorn worker class
    python ops/bench/bench.py --reads-only        # count, revenue, a list page at 0/100k/1M
    python ops/bench/bench.py --seat-reads-only   # purchase p99 alone vs beside seat-map reads
    python ops/bench/bench.py --box-office-only   # best available vs a purchase; 10,000 holds
                                                  # expiring at once (a Redis server only)

Everything runs on data of its own: a Redis server on a free port, the MariaDB database
`ticketing_bench` (fresh each run, `alembic upgrade head`), moto on a free port, the bench catalog
(ops/bench/seating.py), logs under .run/bench/. The purchase API sells into the outbox; beside it
the relay (Procfile `relay`) publishes the outbox to a stand-in SNS endpoint
(ops/bench/sns_standin.py) during the load phases, and to SNS on moto during the worker and lag
phases. wrk makes the HTTP load. Ctrl-C, SIGTERM or a failure stops everything the bench started.

The figures are measured, not asserted: the exit status is non-zero only on a correctness
failure: the flash sale not exact (a seat sold twice, a rejection appended to the outbox or
published, a Redis call too many, a sale not at SNS exactly once), a rejection of the
reject-vs-accept phase that appended to the outbox or reached SNS, or a box office hold that
expired without freeing its seats or its buyer's count.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "ops" / "local"), str(ROOT / "ops" / "bench")]

import box_office  # noqa: E402
import load_phases  # noqa: E402
import machine  # noqa: E402
import projection  # noqa: E402
import reads  # noqa: E402
import redis  # noqa: E402
import seat_reads  # noqa: E402
import seating  # noqa: E402
import services  # noqa: E402
import stack  # noqa: E402
import tokens  # noqa: E402
import wrk_load  # noqa: E402
from results import print_results  # noqa: E402
from services import BENCH_RUN, Service, say  # noqa: E402

STARTED = time.monotonic()
AUTHORIZATION = services.authorization()
os.environ["BENCH_AUTHORIZATION"] = AUTHORIZATION  # load.lua sends it with every request
SERVERS: list[subprocess.Popen] = []  # stopped last
PURCHASE_APP = services.procfile_command("purchase")[-1]  # "web:create_app('purchase')"
QUERY_APP = services.procfile_command("query")[-1]  # "web:create_app('query')"
MOTO_APP = "web:create_app('purchase,query')"  # the moto phases' sales, and the lag's reads
BOX_OFFICE_DB = 2  # the box office phase's database on the bench's Redis (0: the services', 1:
# the monitoring plane's): the relay never reads its outbox, and it is emptied before and after


@dataclass
class Setup:
    """The bench's own services and the environment every child gets."""

    env: dict[str, str]
    redis_url: str
    redis_pid: int
    database_url: str
    moto_url: str
    topic_arn: str
    queue_url: str
    standin: Service
    relay: Service  # publishing to the stand-in; replaced by one on moto for the moto phases


def clean_run_dir() -> None:
    """Logs, metrics and results of the last run go; the gevent install stays."""
    BENCH_RUN.mkdir(parents=True, exist_ok=True)
    for path in BENCH_RUN.iterdir():
        if path.name == "gevent":
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def set_up() -> Setup:
    clean_run_dir()
    redis_url, redis_proc = services.start_redis()
    database_url = services.fresh_database()
    moto_url = services.start_moto()
    SERVERS.extend(stack.children)  # Redis, moto (and MariaDB if it had to be started)
    messaging = services.create_messaging(moto_url)
    catalog = seating.write_catalog(BENCH_RUN / "catalog.json")
    env = {
        **services.base_env(),
        **stack.aws_env(moto_url),
        **messaging,
        "REDIS_URL": redis_url,
        "MONITOR_BROKER_URL": redis_url.rsplit("/", 1)[0] + "/1",
        "DATABASE_URL": database_url,
        "CATALOG_FILE": str(catalog),
    }
    services.migrate_and_load_catalog(env)
    standin = services.start_standin(messaging["TICKET_TOPIC_ARN"])
    relay = services.start_relay(env, "standin", standin.url)
    return Setup(
        env,
        redis_url,
        redis_proc.pid,
        database_url,
        moto_url,
        messaging["TICKET_TOPIC_ARN"],
        messaging["TICKET_QUEUE_URL"],
        standin,
        relay,
    )


def wait_until_serving(service: Service, path: str, method: str = "GET", seconds: float = 60):
    """Until the app answers 200 (gunicorn's port opens before its workers have booted)."""
    deadline = time.monotonic() + seconds
    body = load_phases.CEILING_BODY.encode() if method == "POST" else None
    while True:
        request = urllib.request.Request(
            service.url + path,
            data=body,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": AUTHORIZATION},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline or service.proc.poll() is not None:
            sys.exit(f"[bench] {service.name} does not answer {path}; see {service.log}")
        time.sleep(0.2)


def start_web(setup: Setup, overrides: dict[str, str], suffix: str = "") -> tuple[Service, Service]:
    """The ceiling app and the purchase API, same gunicorn settings. The purchase API publishes
    nothing itself: the relay takes its outbox to the stand-in."""
    env = {**setup.env, **overrides}
    ceiling = services.start_gunicorn(
        f"ceiling{suffix}", "ceiling_app:app", env, "--pythonpath", str(ROOT / "ops" / "bench")
    )
    purchase = services.start_gunicorn(f"purchase{suffix}", PURCHASE_APP, env)
    wait_until_serving(ceiling, "/ceiling", "POST")
    wait_until_serving(purchase, "/purchase/health")
    return ceiling, purchase


def rig_for(setup: Setup, wrk: str, ceiling: Service, purchase: Service) -> load_phases.Rig:
    return load_phases.Rig(
        wrk=wrk,
        redis=redis.Redis.from_url(setup.redis_url),
        ceiling=ceiling,
        purchase=purchase,
        standin_service=setup.standin,
        standin=load_phases.StandInClient(setup.standin.url),
        relay=setup.relay,
    )


def run_bench(args: argparse.Namespace, setup: Setup, wrk: str) -> int:
    """Every phase, then the table and the result line."""
    box = run_box_office(args, setup.redis_url)  # first: nothing else calls Redis yet
    ceiling, purchase = start_web(setup, {})
    moto_web = services.start_gunicorn("purchase-moto", MOTO_APP, setup.env)
    rig = rig_for(setup, wrk, ceiling, purchase)
    say(f"throughput: ceiling vs purchase, {args.rounds} interleaved rounds of {args.seconds:g} s")
    throughput = load_phases.throughput(rig, args.rounds, args.seconds)
    say("flash sale: 10,000 attempts on 1,000 seats, 64 clients")
    flash = load_phases.flash_sale(rig)
    say(f"accept vs reject latency at {args.light_clients} clients")
    accept_reject = load_phases.accept_vs_reject(rig, args.light_clients, runs=6, seconds=1)
    say("flatness: 0 vs 1,000,000 seats sold in the zone")
    flat = load_phases.flatness(rig, runs=8, seconds=1)
    seat_map = run_seat_reads(args, setup, rig)
    rss = [
        ("gunicorn purchase", services.rss_mib(purchase.processes())),
        ("gunicorn ceiling", services.rss_mib(ceiling.processes())),
        ("relay (to the stand-in)", services.rss_mib(setup.relay.processes())),
        ("sns stand-in", services.rss_mib(setup.standin.processes())),
    ]
    purchase.stop()
    ceiling.stop()
    if not rig.relayed():
        say("the outbox did not drain to the stand-in; the moto phases may see its leftovers")
    setup.relay.stop()
    say("relay: now publishing to SNS on moto for the worker and lag phases")
    moto_relay = services.start_relay(setup.env, "moto")

    wait_until_serving(moto_web, "/purchase/health")
    buyer = projection.Buyer(moto_web.url)
    say(f"worker: filling the queue with {args.drain_tickets} tickets (relay → SNS → SQS)")
    filled = projection.buy_all(buyer, seating.DRAIN, range(args.drain_tickets), threads=4)
    sold = sum(p.status == 201 for p in filled)
    deadline = time.monotonic() + 30
    while projection.queue_depth(setup.queue_url) < sold and time.monotonic() < deadline:
        time.sleep(0.2)
    say(f"worker: draining {sold} messages")
    worker = services.start_worker(setup.env)
    db = projection.connect(setup.database_url)
    drain = projection.measure_drain(worker, db, seating.DRAIN.event, sold)
    say(
        f"lag: {args.lag_rate:g} purchases/s for {args.lag_seconds:g} s through moto and the worker"
    )
    lag = projection.measure_lag(buyer, db, seating.LAG, args.lag_rate, args.lag_seconds)
    read = run_reads(args, setup, wrk)
    mariadb = services.find_listening(3306)
    rss += [
        ("gunicorn purchase+query", services.rss_mib(moto_web.processes())),
        ("relay (to moto)", services.rss_mib(moto_relay.processes())),
        ("celery worker", services.rss_mib(worker.processes())),
        ("moto server", services.rss_mib(_listener(setup.moto_url))),
        ("redis-server (bench's)", services.rss_mib(_pid(setup.redis_pid))),
        ("MariaDB (shared server)", services.rss_mib([mariadb] if mariadb else [])),
    ]
    with db.cursor() as cur:
        cur.execute("SELECT VERSION()")
        mariadb_version = cur.fetchone()[0]
    say("token verification: CPU per purchase, HS256 and RS256 (a JWKS served here)")
    token_costs = tokens.measure()
    figures = print_results(
        throughput,
        flash,
        accept_reject,
        flat,
        drain,
        lag,
        read,
        rss,
        setup.standin.url,
        STARTED,
        machine.describe(mariadb_version),
        seat_map,
        token_costs,
        box,
    )
    (BENCH_RUN / "results.json").write_text(json.dumps(figures, indent=1, default=str))
    refusals_clean = accept_reject.reject_appends == accept_reject.reject_messages == 0
    return 0 if flash.exact and flash.oversold == 0 and refusals_clean and box.clean else 1


def run_box_office(args: argparse.Namespace, redis_url: str) -> box_office.BoxOffice:
    """The box office phase on a database of its own on the bench's Redis server, emptied
    before and after (its 2,000,000-seat states and 10,000 orders are no other phase's)."""
    r = redis.Redis.from_url(
        f"{redis_url.rsplit('/', 1)[0]}/{BOX_OFFICE_DB}", decode_responses=True
    )
    r.flushdb()
    try:
        return box_office.measure(r, holds=args.expiring_holds, say=say, own_server=True)
    finally:
        r.flushdb()
        r.close()


def box_office_only(args: argparse.Namespace) -> int:
    """Only the box office phase, on a Redis server of its own (no MariaDB, moto or web)."""
    from report import Table

    clean_run_dir()
    redis_url, _ = services.start_redis()
    result = run_box_office(args, redis_url)
    t = Table()
    for row in box_office.verdicts(result):
        t.add(*row)
    print()
    print(box_office.render(result))
    print()
    print(t.render())
    (BENCH_RUN / "box_office.json").write_text(json.dumps(box_office.figures(result), indent=1))
    return 0 if result.clean else 1


def run_reads(args: argparse.Namespace, setup: Setup, wrk: str) -> reads.Reads:
    """The read phase: the tickets generated in MariaDB, then count, revenue and a list page
    through the query API at each size."""
    took = reads.seed(setup.database_url, setup.env)
    query = services.start_gunicorn("query", QUERY_APP, setup.env)
    wait_until_serving(query, "/query/health")
    say(
        f"reads: count, revenue and a list page at 0, 100,000 and 1,000,000 tickets, "
        f"{args.read_rounds} rotations at 1 client, 2 rounds at {reads.CLIENTS}"
    )
    result = reads.measure_all(wrk, query, args.read_rounds, 2, args.read_seconds)
    result.seed_seconds = took
    query.stop()
    return result


def run_seat_reads(args: argparse.Namespace, setup: Setup, rig: load_phases.Rig):
    """The seat-map phase: purchases alone, beside kept reads, beside uncached reads (a second
    purchase API with SEAT_MAP_CACHE_MS=0, stopped after)."""
    uncached = services.start_gunicorn(
        "purchase-uncached", PURCHASE_APP, {**setup.env, "SEAT_MAP_CACHE_MS": "0"}
    )
    wait_until_serving(uncached, "/purchase/health")
    say(
        f"seat-map reads: purchases at 64 clients alone and beside {args.seat_read_rate:g} "
        f"seat-map reads/s, kept and uncached, {args.rounds} rounds of {args.seconds:g} s"
    )
    try:
        return seat_reads.measure(rig, uncached, args.rounds, args.seconds, args.seat_read_rate)
    finally:
        uncached.stop()


def seat_reads_only(args: argparse.Namespace, setup: Setup, wrk: str) -> int:
    """Only the seat-map phase, and its table."""
    from report import Table

    ceiling, purchase = start_web(setup, {})
    rig = rig_for(setup, wrk, ceiling, purchase)
    result = run_seat_reads(args, setup, rig)
    t = Table()
    t.add(*seat_reads.verdict(result))
    print()
    print(seat_reads.render(result))
    print()
    print(t.render())
    (BENCH_RUN / "seat_reads.json").write_text(json.dumps(seat_reads.figures(result), indent=1))
    return 0


def reads_only(args: argparse.Namespace, setup: Setup, wrk: str) -> int:
    """Only the read phase: its side-by-side table and verdicts."""
    from report import Table

    result = run_reads(args, setup, wrk)
    t = Table()
    for row in reads.verdicts(result):
        t.add(*row)
    print()
    print(reads.render(result))
    print()
    print(t.render())
    (BENCH_RUN / "reads.json").write_text(json.dumps(reads.figures(result), indent=1))
    return 0


def _listener(url: str) -> list:
    found = services.find_listening(int(url.rsplit(":", 1)[1]))
    return [found] if found else []


def _pid(pid: int) -> list:
    try:
        return [services.psutil.Process(pid)]
    except services.psutil.Error:
        return []


CLASSES = [
    (
        "gthread 2×8",
        {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "8"},
    ),
    (
        "gthread 2×4",
        {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "4"},
    ),
    (
        "gthread 2×16",
        {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "16"},
    ),
    (
        "gthread 4×4",
        {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_WORKERS": "4", "GUNICORN_THREADS": "4"},
    ),
    ("sync 4", {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_WORKERS": "4", "GUNICORN_THREADS": "1"}),
    (
        "gevent 2",
        {"GUNICORN_WORKER_CLASS": "gevent", "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "1"},
    ),
]


def gevent_path() -> Path | None:
    """gevent installed under .run/bench/gevent (not into the project's venv), or None."""
    target = BENCH_RUN / "gevent"
    if not (target / "gevent").is_dir():
        say("installing gevent under .run/bench/gevent for the comparison")
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "gevent"],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            say(f"pip install gevent failed:\n{done.stdout}{done.stderr}")
            return None
    return target


def compare_classes(args: argparse.Namespace, setup: Setup, wrk: str) -> int:
    """Ceiling and purchase path per gunicorn worker class and counts, interleaved rounds."""
    from results import print_class_comparison

    rows = []
    next_seat = 0
    say("the relay runs beside every configuration, publishing to the stand-in")
    for name, overrides in CLASSES:
        overrides = dict(overrides)
        if overrides["GUNICORN_WORKER_CLASS"] == "gevent":
            path = gevent_path()
            if path is None:
                say("gevent is not installable here: skipped")
                continue
            overrides["PYTHONPATH"] = str(path)
        say(f"{name}: {args.rounds} rounds of {args.seconds:g} s")
        suffix = "-" + name.replace(" ", "-").replace("×", "x")
        ceiling, purchase = start_web(setup, overrides, suffix)
        rig = rig_for(setup, wrk, ceiling, purchase)
        rig.next_seat = next_seat
        result = load_phases.throughput(rig, args.rounds, args.seconds)
        next_seat = rig.next_seat
        rows.append((name, result))
        ceiling.stop()
        purchase.stop()
    print_class_comparison(rows)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-classes", action="store_true", help="gunicorn classes only")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per comparison")
    parser.add_argument("--seconds", type=float, default=4, help="seconds per throughput round")
    parser.add_argument("--light-clients", type=int, default=2, help="clients, accept vs reject")
    parser.add_argument("--drain-tickets", type=int, default=200, help="messages for the worker")
    parser.add_argument("--lag-rate", type=float, default=50, help="purchases/s in the lag phase")
    parser.add_argument("--lag-seconds", type=float, default=15)
    parser.add_argument("--read-rounds", type=int, default=4, help="1-client runs of the reads")
    parser.add_argument("--read-seconds", type=float, default=1, help="seconds per read run")
    parser.add_argument("--reads-only", action="store_true", help="the read phase alone")
    parser.add_argument(
        "--seat-read-rate", type=float, default=400, help="seat-map reads/s beside the purchases"
    )
    parser.add_argument(
        "--seat-reads-only", action="store_true", help="the seat-map read phase alone"
    )
    parser.add_argument(
        "--box-office-only", action="store_true", help="the box office phase alone (Redis only)"
    )
    parser.add_argument(
        "--expiring-holds", type=int, default=10_000, help="holds expiring at once, box office"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        if args.box_office_only:
            return box_office_only(args)
        wrk = wrk_load.ensure_wrk()
        setup = set_up()
        if args.compare_classes:
            return compare_classes(args, setup, wrk)
        if args.reads_only:
            return reads_only(args, setup, wrk)
        if args.seat_reads_only:
            return seat_reads_only(args, setup, wrk)
        return run_bench(args, setup, wrk)
    except KeyboardInterrupt:
        say("interrupted: stopping what the bench started")
        return 130
    finally:
        # what uses the servers first (the worker, gunicorn, wrk, the stand-in), then those
        services.stop_all([p for p in stack.children if p not in SERVERS], seconds=10)
        services.stop_all(list(stack.children), seconds=10)


if __name__ == "__main__":
    sys.exit(main())

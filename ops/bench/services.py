"""The processes the bench runs, each isolated from `make run` and the tests: a Redis server of
its own, a fresh MariaDB database, moto, the stand-in SNS endpoint, gunicorn, the relay and the
worker.

Built on `ops/local/stack.py` (finding or installing servers, spawning and stopping children,
which also happens on Ctrl-C and on failure) and `ops/local/aws_resources.py` (the topic, queue,
DLQ and subscription the way Terraform makes them).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import stack
from stack import BIN, ROOT, RUN, free_port, spawn, wait_for_port

BENCH_RUN = RUN / "bench"
BENCH_DATABASE = "ticketing_bench"

# What the bench sets itself; anything of these in the caller's environment is dropped, so a
# shell that points at `make run`'s data cannot leak into the bench (or the other way round).
_OWNED = (
    "REDIS_URL",
    "REDIS_CLUSTER",  # the bench's Redis is one server of its own
    "DATABASE_URL",
    "DATABASE_READ_URL",
    "MONITOR_BROKER_URL",
    "CATALOG_FILE",
    "TICKET_TOPIC_ARN",
    "TICKET_QUEUE_URL",
    "TICKET_DLQ_URL",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SNS",
    "AWS_ENDPOINT_URL_SQS",
    "PROMETHEUS_MULTIPROC_DIR",
    "GUNICORN_BIND",
    "WORKER_METRICS_PORT",
    "RELAY_METRICS_PORT",
    "JWT_SECRET",
    "JWT_ISSUER",
    "JWT_JWKS_URL",
    "JWT_AUDIENCE",
    "JWT_ROLES_CLAIM",
    "MAX_SEATS_PER_BUYER",
    "RATE_LIMIT_BURST",
)
# One bench buyer makes every purchase: its limits must not refuse the load, yet the script
# still counts its seats and attempts on every purchase, as it does for a real buyer.
BUYER_LIMITS = {"MAX_SEATS_PER_BUYER": str(10**9), "RATE_LIMIT_BURST": str(10**9)}


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def base_env() -> dict[str, str]:
    """The caller's environment without anything the bench owns (GUNICORN_* stays: the bench
    measures the gunicorn configuration it is given)."""
    from plumbing.settings import DEVELOPMENT_JWT_ISSUER, DEVELOPMENT_JWT_SECRET

    env = {k: v for k, v in os.environ.items() if k not in _OWNED}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(JWT_SECRET=DEVELOPMENT_JWT_SECRET, JWT_ISSUER=DEVELOPMENT_JWT_ISSUER, **BUYER_LIMITS)
    return env


@functools.cache
def authorization() -> str:
    """The Authorization header of every bench request: an operator (it buys, and reads the
    back office in the read phases) with a token of the development secret `base_env` gives the
    services, whatever the caller's environment says; one token for the run, as a real client
    keeps its token."""
    from cli.tokens import mint
    from plumbing.settings import DEVELOPMENT_JWT_ISSUER, DEVELOPMENT_JWT_SECRET
    from web.identity import OPERATOR

    token = mint(
        "bench-buyer", (OPERATOR,), secret=DEVELOPMENT_JWT_SECRET, issuer=DEVELOPMENT_JWT_ISSUER
    )
    return f"Bearer {token}"


def start_redis() -> tuple[str, subprocess.Popen]:
    """A Redis server of the bench's own on a free port: its command counts are ours alone."""
    port = free_port()
    proc = stack.start_redis(port, BENCH_RUN / "redis", "bench/redis.log")
    return f"redis://127.0.0.1:{port}/0", proc


def fresh_database() -> str:
    """The database `ticketing_bench` (or BENCH_DATABASE_URL), dropped and created anew."""
    url = os.environ.get("BENCH_DATABASE_URL") or ""
    if url and "bench" not in urlsplit(url).path:
        sys.exit(
            "[bench] BENCH_DATABASE_URL must name a database with 'bench' in it: it is dropped"
        )
    saved = os.environ.pop("DATABASE_URL", None)
    if url:
        os.environ["DATABASE_URL"] = url
    try:
        return stack.ensure_mysql(BENCH_DATABASE, fresh=True)
    finally:
        os.environ.pop("DATABASE_URL", None)
        if saved is not None:
            os.environ["DATABASE_URL"] = saved


def start_moto() -> str:
    return stack.start_moto(free_port(), "bench/moto.log")


def create_messaging(moto_url: str) -> dict[str, str]:
    """Topic, queue, DLQ and raw subscription on moto, as Terraform makes them."""
    os.environ.update(stack.aws_env(moto_url))
    from aws_resources import create_messaging as create

    return create("bench").env()


def run_checked(cmd: list[str], env: dict[str, str], what: str) -> None:
    """Run a set-up command; on failure show its output and stop."""
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"[bench] {what} failed:\n{done.stdout}{done.stderr}")


def migrate_and_load_catalog(env: dict[str, str]) -> None:
    say("migrating the bench database (alembic upgrade head) and loading the bench catalog")
    run_checked([str(BIN / "alembic"), "upgrade", "head"], env, "alembic upgrade head")
    run_checked([str(BIN / "flask"), "--app", "web", "catalog", "load"], env, "catalog load")


@dataclass
class Service:
    """A started process and where it listens."""

    name: str
    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        stop(self.proc)

    def processes(self) -> list[psutil.Process]:
        """The process and its children (gunicorn workers, Celery pool processes)."""
        try:
            parent = psutil.Process(self.proc.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def stop(proc: subprocess.Popen, seconds: float = 15) -> None:
    """SIGTERM the process group, then SIGKILL after `seconds`; forget it."""
    stop_all([proc], seconds)


def stop_all(procs: list[subprocess.Popen], seconds: float = 15) -> None:
    """SIGTERM every process group at once, wait for them together, SIGKILL what is left."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc in stack.children:
            stack.children.remove(proc)


def start_standin(topic_arn: str) -> Service:
    """The stand-in SNS endpoint (ops/bench/sns_standin.py) in a process of its own."""
    port = free_port()
    log_name = "bench/sns-standin.log"
    proc = spawn(
        [
            sys.executable,
            str(ROOT / "ops" / "bench" / "sns_standin.py"),
            "--topic-arn",
            topic_arn,
            "--port",
            str(port),
        ],
        log_name,
    )
    wait_for_port("127.0.0.1", port, "the stand-in SNS endpoint")
    return Service("sns stand-in", proc, f"http://127.0.0.1:{port}", RUN / log_name)


def start_gunicorn(name: str, app: str, env: dict[str, str], *extra: str) -> Service:
    """gunicorn with the project's gunicorn.conf.py (and so the GUNICORN_* environment), as
    the Procfile runs it, on a free port; waits until it answers."""
    port = free_port()
    log_name = f"bench/gunicorn-{name}.log"
    metrics_dir = BENCH_RUN / f"metrics-{name}"
    env = {
        **env,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    cmd = [str(BIN / "gunicorn"), "--config", "gunicorn.conf.py", *extra, app]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=open(RUN / log_name, "ab"),  # noqa: SIM115 - lives as long as the child
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.children.append(proc)
    wait_for_port("127.0.0.1", port, f"gunicorn {name}", seconds=60)
    return Service(name, proc, f"http://127.0.0.1:{port}", RUN / log_name)


def procfile_command(process_type: str) -> list[str]:
    """A Procfile line as argv (the bench runs the worker exactly as deployed)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return shlex.split(command.strip())
    raise KeyError(f"no {process_type!r} in the Procfile")


def start_worker(env: dict[str, str]) -> Service:
    """The Celery worker as the Procfile runs it; returns once it logged `ready.`."""
    log_name = "bench/worker.log"
    log = RUN / log_name
    offset = log.stat().st_size if log.exists() else 0
    argv = procfile_command("worker")
    argv[0] = str(BIN / argv[0])
    env = {**env, "WORKER_METRICS_PORT": str(free_port())}
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab"),  # noqa: SIM115 - lives as long as the child
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.children.append(proc)
    deadline = time.monotonic() + 60
    while True:
        with open(log, "rb") as f:
            f.seek(offset)
            if b"ready." in f.read():
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"[bench] the worker did not start; see {log}")
        time.sleep(0.02)
    return Service("worker", proc, "", log)


def start_relay(env: dict[str, str], name: str, sns_url: str | None = None) -> Service:
    """The relay as the Procfile runs it (`python -m relay`), reading the bench's outbox and
    publishing to `sns_url` (the stand-in) or, without it, to SNS on moto; returns once it
    logged that it reads the outbox. Its URL is the SNS endpoint it publishes to."""
    log_name = f"bench/relay-{name}.log"
    log = RUN / log_name
    argv = procfile_command("relay")
    argv[0] = str(BIN / argv[0])
    relay_env = {**env, "RELAY_METRICS_PORT": ""}
    if sns_url:
        relay_env["AWS_ENDPOINT_URL_SNS"] = sns_url
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=relay_env,
        stdout=open(log, "ab"),  # noqa: SIM115 - lives as long as the child
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.children.append(proc)
    deadline = time.monotonic() + 60
    while b"reading" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"[bench] the relay did not start; see {log}")
        time.sleep(0.05)
    endpoint = sns_url or env.get("AWS_ENDPOINT_URL_SNS") or env.get("AWS_ENDPOINT_URL", "")
    return Service(f"relay {name}", proc, endpoint, log)


def find_listening(port: int) -> psutil.Process | None:
    """The process listening on 127.0.0.1:port (the shared MariaDB), if visible."""
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
                return psutil.Process(conn.pid)
    return None


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU of the processes, with their reaped children."""
    total = 0.0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def own_cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU of one process, without its children."""
    try:
        t = process.cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system


def rss_mib(processes: list[psutil.Process]) -> list[float]:
    """Resident memory of each process, MiB."""
    sizes = []
    for p in processes:
        with contextlib.suppress(psutil.Error):
            sizes.append(p.memory_info().rss / 2**20)
    return sizes

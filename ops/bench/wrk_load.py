"""HTTP load from wrk: a C load generator, so that on these shared cores the bench measures the
server and not a Python client. Runs `load.lua` (request bodies, status and seat counting) and
parses the one result line its done() prints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import purchase_requests
import stack

SCRIPT = Path(__file__).with_name("load.lua")


@dataclass(frozen=True)
class PathLatency:
    """One path's answers and latency percentiles (ms) in a rotate run."""

    answers: int
    p50_ms: float
    p90_ms: float
    p99_ms: float


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: counts, latency percentiles (ms) and what load.lua counted."""

    requests: int
    seconds: float
    sent: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)
    seats_sold: int = 0
    double_sales: int = 0
    paths: tuple[PathLatency, ...] = ()  # rotate mode: per path, in the order given

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failures(self) -> int:
        """Socket errors, timeouts and HTTP statuses ≥ 400."""
        return sum(self.errors.values())


def parse_result(output: str) -> LoadResult:
    """The BENCH_RESULT line of load.lua's done()."""
    for line in output.splitlines():
        if line.startswith("BENCH_RESULT "):
            data = json.loads(line.removeprefix("BENCH_RESULT "))
            break
    else:
        raise RuntimeError(f"wrk printed no BENCH_RESULT line:\n{output}")
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        sent=data["sent"],
        p50_ms=data["p50_us"] / 1e3,
        p90_ms=data["p90_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        p999_ms=data["p999_us"] / 1e3,
        max_ms=data["max_us"] / 1e3,
        errors=data["errors"],
        statuses={int(k): v for k, v in data["statuses"].items()},
        codes=data["codes"],
        seats_sold=data["seats_sold"],
        double_sales=data["double_sales"],
        paths=tuple(
            PathLatency(p["n"], p["p50_us"] / 1e3, p["p90_us"] / 1e3, p["p99_us"] / 1e3)
            for p in data.get("paths", [])
        ),
    )


def ensure_wrk() -> str:
    """wrk's path; installs Debian's package when missing and root, else stops with a message."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit(
            "[bench] wrk is missing: install it (Debian/Ubuntu: sudo apt-get install wrk) and "
            "run make bench again. A Python load generator on the same cores would measure itself."
        )
    stack.apt_install("wrk")
    found = shutil.which("wrk")
    if not found:
        sys.exit("[bench] wrk still missing after apt-get install wrk")
    return found


def run(
    wrk: str,
    base_url: str,
    script_args: list[str],
    *,
    connections: int,
    seconds: float,
    timeout_s: int = 10,
) -> LoadResult:
    """One wrk run of load.lua with one thread (the server needs the cores more)."""
    cmd = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s}s",
        "-s",
        str(SCRIPT),
        base_url,
        "--",
        *script_args,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    stack.children.append(proc)
    watchdog = threading.Timer(seconds + timeout_s + 30, proc.kill)
    watchdog.start()
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "BENCH_QUOTA_DONE":
                proc.send_signal(signal.SIGINT)  # ends wrk's sleep: it prints its results
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        stack.children.remove(proc)
    output = "".join(lines)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited with {proc.returncode}:\n{output}")
    return parse_result(output)


def fixed(path: str, body: str) -> list[str]:
    """The same POST each time."""
    return ["fixed", path, body]


def get(path: str) -> list[str]:
    """The same GET each time."""
    return ["get", path]


def rotate(*paths: str) -> list[str]:
    """GETs of each path in turn on one connection (run with connections=1)."""
    return ["rotate", *paths]


def paced(path: str, rate: float, connections: int) -> list[str]:
    """The same GET, each connection pausing connections / rate between its requests: about
    `rate` requests per second as long as the answers are quicker than that pause."""
    return ["paced", path, f"{connections * 1000 / rate:.3f}"]


def seats(venue: str, event: str, zone: int, columns: int, first: int, last: int) -> list[str]:
    """Purchases of distinct seats first, first + 1, … (wrapping after last)."""
    return [
        "seats",
        purchase_requests.PATH,
        venue,
        event,
        str(zone),
        str(columns),
        str(first),
        str(last),
        *purchase_requests.header_args(),
    ]


def flash(
    venue: str, event: str, zone: int, columns: int, n_seats: int, attempts: int, per_seat: int
) -> list[str]:
    """Exactly `attempts` purchases, `per_seat` consecutive ones racing for each seat."""
    return [
        "flash",
        purchase_requests.PATH,
        venue,
        event,
        str(zone),
        str(columns),
        str(n_seats),
        str(attempts),
        str(per_seat),
        *purchase_requests.header_args(),
    ]

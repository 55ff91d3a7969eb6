"""Test support: real processes (a Celery worker, the relay, gunicorn) started from the
Procfile's commands, free ports, and polling with a deadline."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def wait_until(check: Callable[[], T], seconds: float = 30, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        time.sleep(0.1)


def procfile_command(process_type: str) -> list[str]:
    """The argv of a Procfile line."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(": ")
        if name == process_type:
            return shlex.split(command)
    raise KeyError(process_type)


class _Observed:
    """A test's subprocess with a log file and a Prometheus endpoint on `metrics_port`."""

    log_path: Path
    metrics_port: int

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.log().count(text)

    def metrics(self) -> dict[str, float]:
        """The process's Prometheus samples: {'name{labels}': value}."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = r.read().decode()
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }


class Worker(_Observed):
    """A real `celery worker` subprocess with its own log file."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, hostname: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.hostname = hostname

    @classmethod
    @contextlib.contextmanager
    def start(cls, env: dict[str, str]) -> Iterator[Worker]:
        """The Procfile's worker command (its pool and concurrency), with a hostname of its own."""
        hostname = f"test-{uuid.uuid4().hex[:6]}@localhost"
        log_path = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])
        program, *args = procfile_command("worker")
        cmd = [str(BIN / program), *args, "--hostname", hostname]
        env = {"WORKER_METRICS_PORT": str(free_port()), **env}
        # as in a container: the worker makes its own metrics directory (not the test process's)
        full_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**full_env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = cls(proc, log_path, hostname)
        worker.metrics_port = int(env["WORKER_METRICS_PORT"])
        try:
            wait_until(
                lambda: "ready." in worker.log() or proc.poll() is not None, 60, "worker ready"
            )
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{worker.log()}")
            yield worker
        finally:
            worker.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Relay(_Observed):
    """A real relay subprocess (the Procfile's `relay` command) with its own log file."""

    def __init__(
        self, proc: subprocess.Popen, log_path: Path, metrics_port: int, env: dict[str, str]
    ) -> None:
        self.proc = proc
        self.log_path = log_path
        self.metrics_port = metrics_port
        self.env = env

    @classmethod
    def spawn(cls, env: dict[str, str] | None = None) -> Relay:
        """Start one and return at once (the caller stops it: `stop()` or `kill()`)."""
        program, *args = procfile_command("relay")
        metrics_port = free_port()
        env = {"RELAY_METRICS_PORT": str(metrics_port), **(env or {})}
        # as in a container: the relay makes its own metrics directory
        full_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        log_path = Path(tempfile.mkstemp(prefix="relay-", suffix=".log")[1])
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(BIN / program) if (BIN / program).exists() else program, *args],
                cwd=ROOT,
                env={**full_env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(proc, log_path, metrics_port, env)

    @classmethod
    @contextlib.contextmanager
    def start(cls, env: dict[str, str] | None = None) -> Iterator[Relay]:
        """A relay reading the outbox until the block ends (then SIGTERM)."""
        relay = cls.spawn(env)
        try:
            relay.wait_ready()
            yield relay
        finally:
            relay.stop()

    def wait_ready(self) -> None:
        wait_until(
            lambda: "reading" in self.log() or self.proc.poll() is not None, 60, "relay ready"
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"relay exited:\n{self.log()}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, and its exit status (SIGKILL if it does not exit within `timeout`)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: a relay that dies without a word."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], app: str = "web:create_app()", log: Path | None = None
) -> Iterator[str]:
    """The web processes as `make run` serves them (purchase, query, events on one base URL),
    in gunicorn on a free port with `env` on top of this process's; yields the base URL.
    `app` names another Procfile app (`web:create_app('purchase')`); `log` keeps the output."""
    port = free_port()
    if log is None:
        log = Path(tempfile.mkstemp(prefix="gunicorn-", suffix=".log")[1])
    with open(log, "wb") as output:
        web = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                app,
            ],
            cwd=ROOT,
            env={**os.environ, **env, "GUNICORN_ACCESSLOG": ""},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)


class Flower:
    """The Procfile's `flower` command on a free loopback port, against `broker`."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, url: str) -> None:
        self.proc = proc
        self.log_path = log_path
        self.url = url

    @classmethod
    @contextlib.contextmanager
    def start(
        cls, broker: str, *extra_args: str, env: dict[str, str] | None = None
    ) -> Iterator[Flower]:
        """Its options as the Procfile gives them (`extra_args` after them win); the broker
        in place of the Procfile's `${MONITOR_BROKER_URL:-…}`."""
        import requests

        port = free_port()
        program, *args = procfile_command("flower")
        args = [broker if a.startswith("${MONITOR_BROKER_URL") else a for a in args]
        args = [a for a in args if not a.startswith("--port")]
        cmd = [str(BIN / program), *args, f"--port={port}", "--address=127.0.0.1", *extra_args]
        log_path = Path(tempfile.mkstemp(prefix="flower-", suffix=".log")[1])
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true", **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        flower = cls(proc, log_path, f"http://127.0.0.1:{port}")
        try:
            wait_for_port(port, 60)
            wait_until(
                lambda: requests.get(f"{flower.url}/healthcheck", timeout=10).ok, 30, "Flower"
            )
            yield flower
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """Flower's resident memory."""
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

"""Test helpers: a real Celery worker process, a TCP proxy that can cut the database off,
a direct-to-queue task sender, the test catalog, and polling."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
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


def test_catalog_document() -> dict[str, Any]:
    """The default catalog plus a tiny venue whose caps reach every counter in a few sales."""
    with open(ROOT / "models" / "catalog.json", encoding="utf-8") as f:
        document = json.load(f)
    document["venues"].append(
        {
            "venueId": "TinyVenue",
            "name": "Tiny test venue",
            "zones": [
                # 2 rows × 3 seats, at most 2 sold per row
                {"zoneId": 1, "rows": 2, "columns": 3, "price": "10.50", "rowCapacity": 2},
                # 2 × 2 seats, at most 3 sold in the zone
                {"zoneId": 2, "rows": 2, "columns": 2, "price": "20.00", "capacity": 3},
                {"zoneId": 3, "rows": 3, "columns": 3, "price": "30.25"},
            ],
        }
    )
    document["events"] += [
        {
            "eventId": "TinyEvent",
            "venueId": "TinyVenue",
            "name": "Tiny",
            "type": "TEST",
            "date": "2027-01-01T20:00:00Z",
        },
        {
            "eventId": "TinyCapped",
            "venueId": "TinyVenue",
            "name": "Tiny, 2 seats",
            "type": "TEST",
            "date": "2027-01-02T20:00:00Z",
            "capacity": 2,
        },
    ]
    return document


def procfile_command(process_type: str) -> list[str]:
    """The argv of a Procfile line."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(": ")
        if name == process_type:
            return shlex.split(command)
    raise KeyError(process_type)


class Worker:
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

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.log().count(text)

    def metrics(self) -> dict[str, float]:
        """The worker's Prometheus samples: {'name{labels}': value}."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = r.read().decode()
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `block()` cuts every connection and refuses new
    ones (the database is unreachable), `unblock()` lets them through again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._blocked = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stop = False
        self._open_listener()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _open_listener(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        s.settimeout(0.2)
        self._listener = s

    def _accept_loop(self) -> None:
        while not self._stop:
            listener = self._listener
            if listener is None:
                time.sleep(0.05)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def block(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def unblock(self) -> None:
        if self._listener is None:
            self._open_listener()

    def close(self) -> None:
        self._stop = True
        self.block()


def direct_sender(queue_url: str, topic_name: str) -> Any:
    """A Celery app that sends task messages straight to one SQS queue, as the worker's own
    retries do (same exchange name as the worker's config, so retries route back to it)."""
    from celery import Celery
    from kombu import Exchange, Queue

    name = queue_url.rstrip("/").rsplit("/", 1)[-1]
    app = Celery(f"sender-{name}", set_as_current=False)
    app.conf.update(
        broker_url="sqs://",
        broker_transport_options={
            "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            "predefined_queues": {name: {"url": queue_url}},
            "sqs_base64_encoding": False,
        },
        task_queues=[Queue(name, Exchange(topic_name, type="direct"), routing_key=name)],
        task_default_queue=name,
        task_default_exchange=topic_name,
        task_default_routing_key=name,
        task_ignore_result=True,
    )
    return app


def ticket_message(**overrides: Any) -> dict[str, Any]:
    """A valid ticket event (Venue1/Event1 zone 1), with fields replaced by `overrides`."""
    ticket = {
        "ticketId": str(uuid.uuid4()),
        "venueId": "Venue1",
        "eventId": "Event1",
        "zoneId": 1,
        "row": "A",
        "column": "1",
        "price": "100.00",
        "status": "PAID",
        "createdOn": "2026-11-26T12:00:00.000Z",
        "schemaVersion": 1,
    }
    ticket.update(overrides)
    return ticket


def queue_counts(queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    import boto3

    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def tap_queue(topic_arn: str) -> str:
    """A new queue subscribed raw to the topic: it receives a copy of every publish."""
    import boto3

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"tap-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    boto3.client("sns").subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"}
    )
    return url


def receive_all(queue_url: str) -> list[str]:
    """Receive and delete whatever is visible now; the message bodies."""
    import boto3

    sqs = boto3.client("sqs")
    bodies = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            return bodies
        for m in messages:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


@contextlib.contextmanager
def gunicorn(env: dict[str, str]) -> Iterator[str]:
    """The web processes as `make run` serves them (purchase, query, events on one base URL),
    in gunicorn on a free port with `env` on top of this process's; yields the base URL."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="gunicorn-", suffix=".log", delete=False) as log:
        web = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
                "web:create_app()",
            ],
            cwd=ROOT,
            env={**os.environ, **env, "GUNICORN_ACCESSLOG": ""},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)

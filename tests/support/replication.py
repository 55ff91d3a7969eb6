"""Test support: a local Redis primary and replica (real `redis-server` processes) whose
replication link the test holds, releases or loses with the primary.

The replica connects to the primary through `Link`, a TCP relay in this process. Holding it is
replication lag as a failover sees it: the primary has written, the replica has not received.
Stopping the replica (SIGSTOP) is not the same: what the primary sent waits in the replica's
socket buffer and is applied after SIGCONT, even when the primary died in between.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.processes import free_port, wait_for_port, wait_until

REDIS_SERVER = shutil.which("redis-server")


class Link:
    """Forwards connections from a free loopback port to `upstream_port`. While held, what the
    upstream side sends is kept here instead of delivered; `release` delivers it. When the
    upstream side closes (the primary died), what is held is dropped: it died with it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._held: list[bytes] | None = None  # None: forwarding
        self._downstream: socket.socket | None = None
        self.dropped = 0  # bytes held when the upstream side closed
        self.upstream_closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        with self._lock:
            if self._held is None:
                self._held = []

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held or [], None
            if self._downstream is not None:
                with contextlib.suppress(OSError):
                    self._downstream.sendall(b"".join(held))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
            except OSError:
                down.close()  # the primary is gone: the replica sees a refused link
                continue
            with self._lock:
                self._downstream = down
            threading.Thread(target=self._to_replica, args=(up, down), daemon=True).start()
            threading.Thread(target=self._to_primary, args=(down, up), daemon=True).start()

    def _to_replica(self, up: socket.socket, down: socket.socket) -> None:
        while True:
            try:
                data = up.recv(65536)
            except OSError:
                data = b""
            with self._lock:
                if not data:
                    if self._held:
                        self.dropped += sum(map(len, self._held))
                        self._held = []
                    _close(up, down)
                    self.upstream_closed.set()
                    return
                if self._held is not None:
                    self._held.append(data)
                    continue
                try:
                    down.sendall(data)
                except OSError:
                    _close(up, down)
                    return

    def _to_primary(self, down: socket.socket, up: socket.socket) -> None:
        while True:
            try:
                data = down.recv(65536)
                if not data:
                    break
                up.sendall(data)
            except OSError:
                break
        _close(up, down)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


@dataclass
class Pair:
    """A primary and its replica, replicating through `link`."""

    directory: Path
    primary_port: int
    replica_port: int
    primary_process: subprocess.Popen
    replica_process: subprocess.Popen
    link: Link

    @property
    def primary_url(self) -> str:
        return f"redis://127.0.0.1:{self.primary_port}/0"

    def primary(self) -> redis.Redis:
        return redis.Redis(port=self.primary_port, decode_responses=True, socket_timeout=10)

    def replica(self) -> redis.Redis:
        return redis.Redis(port=self.replica_port, decode_responses=True, socket_timeout=10)

    def link_up(self) -> bool:
        return self.replica().info("replication").get("master_link_status") == "up"

    def caught_up(self) -> bool:
        """The replica has applied everything the primary wrote."""
        written = self.primary().info("replication")["master_repl_offset"]
        return self.replica().info("replication").get("slave_repl_offset", -1) >= written

    def kill_primary(self) -> None:
        """SIGKILL: no shutdown, nothing more sent to the replica."""
        self.primary_process.send_signal(signal.SIGKILL)
        self.primary_process.wait()

    def promote_replica(self) -> redis.Redis:
        """REPLICAOF NO ONE, by hand, as a failover does; the promoted node's client."""
        promoted = self.replica()
        promoted.replicaof("NO", "ONE")
        wait_until(lambda: promoted.info("replication")["role"] == "master", 30, "promotion")
        return promoted


def _server(directory: Path, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            REDIS_SERVER or "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", str(directory), "--logfile", str(directory / f"redis-{port}.log")),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@contextlib.contextmanager
def primary_and_replica() -> Iterator[Pair]:
    """A fresh primary and a replica of it whose link is up; both stop when the block ends."""
    with tempfile.TemporaryDirectory(prefix="redis-failover-") as name:
        directory = Path(name)
        primary_port = replica_port = free_port()
        while replica_port == primary_port:
            replica_port = free_port()
        primary = _server(directory, primary_port, "--repl-diskless-sync-delay", "0")
        processes = [primary]
        link = Link(primary_port)
        try:
            wait_for_port(primary_port)
            replica = _server(directory, replica_port, "--replicaof", "127.0.0.1", str(link.port))
            processes.append(replica)
            wait_for_port(replica_port)
            pair = Pair(directory, primary_port, replica_port, primary, replica, link)
            wait_until(pair.link_up, 30, "master_link_status:up")
            yield pair
        finally:
            link.close()
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()

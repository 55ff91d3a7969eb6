"""Test support: proxies between a client and a real server: a TCP one to cut the server off,
an HTTP one to count AWS calls and lose their answers."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

from tests.support.processes import free_port


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target.

    `block()` cuts every connection and refuses new ones (the server is unreachable: clients
    hear so at once), `unblock()` lets them through again.

    `black_hole()` answers nothing any more, and nobody hears so: every open connection stays
    open and silent, and new ones are accepted and never answered (a server that hangs, a
    network path that drops packets). `heal()` forwards new connections again; a connection
    that lived through the black hole stays silent until its client gives it up, as a
    half-open TCP connection does after a failover.

    `drop_answers()` still forwards what clients send, and throws away what the server answers
    (the uncertain failure: the server acted, the client never hears it); `heal()` ends it.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._frozen: set[socket.socket] = set()
        self._hole = False
        self._mute = False
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
            with self._lock:
                if self._hole:  # accepted, never answered
                    self._conns.append(client)
                    self._frozen.add(client)
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
            while not self._stop:
                with self._lock:
                    frozen = a in self._frozen
                if frozen:  # keep both ends open, read and forward nothing
                    time.sleep(0.2)
                    continue
                ready, _, _ = select.select([a, b], [], [], 0.2)
                with self._lock:
                    if a in self._frozen:  # went silent while waiting: forward nothing
                        continue
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is b and self._mute:
                        continue  # the server's answer is lost on the way back
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
            self._frozen.clear()

    def unblock(self) -> None:
        if self._listener is None:
            self._open_listener()

    def black_hole(self) -> None:
        with self._lock:
            self._hole = True
            self._frozen.update(self._conns)

    def drop_answers(self) -> None:
        self._mute = True

    def heal(self) -> None:
        with self._lock:
            self._hole = False
            self._mute = False

    def close(self) -> None:
        self._stop = True
        self.block()


class HttpProxy:
    """An HTTP proxy in front of one AWS endpoint (moto) that counts the calls passing through
    it and can fail them the ways a network does.

    Modes: `forward` (pass request and answer), `drop_answer` (the request reaches the server,
    which acts on it; the answer is thrown away and the connection closed: the client cannot
    know what happened), `hold_answer` (the server acts on the request; its answer waits until
    `release()`, then goes to the client if it still listens), `down` (every connection is
    closed before anything is forwarded: the server is unreachable), `drop_one_answer` (as
    drop_answer for the next call, then `forward`).
    """

    MODES = ("forward", "drop_answer", "hold_answer", "down", "drop_one_answer")

    def __init__(self, target_url: str) -> None:
        import http.client
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        target = urllib.parse.urlsplit(target_url)
        proxy = self
        self.mode = "forward"
        self.calls: list[tuple[str, int]] = []  # (action, entries) of each forwarded call
        self.lock = threading.Lock()
        self._released = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = proxy.mode
                if mode == "down":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request("POST", self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                proxy._record(body)
                if mode == "drop_one_answer":
                    with proxy.lock:
                        mode = proxy.mode
                        if mode == "drop_one_answer":
                            mode, proxy.mode = "drop_answer", "forward"
                if mode == "hold_answer":
                    proxy._released.wait(300)
                if mode == "drop_answer":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _record(self, body: bytes) -> None:
        from urllib.parse import parse_qs

        params = parse_qs(body.decode(errors="replace"))
        action = params.get("Action", ["?"])[0]
        entries = sum(
            1
            for key in params
            if key.startswith("PublishBatchRequestEntries.member.") and key.endswith(".Id")
        )
        with self.lock:
            self.calls.append((action, entries))

    def set_mode(self, mode: str) -> None:
        assert mode in self.MODES, mode
        self._released.clear()
        self.mode = mode

    def release(self) -> None:
        """Let held answers go (to clients that still listen)."""
        self._released.set()

    def batches(self) -> list[int]:
        """Entries of each PublishBatch that reached the server, in order."""
        with self.lock:
            return [n for action, n in self.calls if action == "PublishBatch"]

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

"""A stand-in SNS endpoint for the bench: acknowledges publishes fast, so the bench measures the
purchase path and the relay, not moto (which serves about 130 publishes/s on this machine).

botocore's SNS model speaks the *query* protocol: each call is a form-encoded POST
(`Action=Publish&TopicArn=…&Message=…`, batch entries as `PublishBatchRequestEntries.member.N.*`)
answered with XML. This server speaks just enough of it for the relay and the health checks:
`PublishBatch` (per-entry `Successful` / `Failed`), `Publish` and `GetTopicAttributes`, on one
topic ARN; anything else is an XML error, so a change in what the code calls shows up as errors
instead of passing silently. It counts what it acknowledged, and while recording keeps each
message with the moment it acknowledged it (the relay's latency is measured from that moment).
A bench phase reads and resets it through a small JSON control API under `/_standin/`:

    GET  /_standin/stats                 calls per action, messages acknowledged, failed entries
    POST /_standin/reset?record=1        zero the counts; keep each message and its time (or not)
    GET  /_standin/messages              the recorded message texts (JSON list)
    GET  /_standin/tickets               per recorded message [acknowledged at (unix s), ticket
                                         id, the ticket's createdOn (unix s)], decoded on request
                                         (a sale is a PAID order of one seat: its ticket)
    POST /_standin/fail?entries=N        fail the next N messages (a batch entry in `Failed`,
                                         a single Publish with HTTP 500)

Run it as `python ops/bench/sns_standin.py --topic-arn ARN [--port N]`; it prints
`listening on PORT`. One asyncio thread, HTTP/1.1 keep-alive, no parsing beyond what each answer
needs: a recorded message stays percent-encoded until it is asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit
from xml.sax.saxutils import escape

XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/"
ENTRY_PREFIX = b"PublishBatchRequestEntries.member."
MAX_BATCH = 10


class SnsError(Exception):
    """An SNS error answer: HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class StandIn:
    """The state and the answers of the stand-in; transport-free, so tests can call it directly."""

    def __init__(self, topic_arn: str) -> None:
        self.topic_arn = topic_arn
        self._serial = 0
        self.reset(record=False)

    def reset(self, record: bool) -> None:
        """Zero every count; record the message texts from now on if `record`."""
        self.calls: dict[str, int] = {}
        self.messages = 0
        self.failed = 0
        self.errors = 0
        self.fail_next = 0
        self.record = record
        self._raw: list[bytes] = []  # percent-encoded, as received
        self.acked_at: list[float] = []  # unix time each recorded message was acknowledged

    @property
    def recorded(self) -> list[str]:
        """The recorded message texts, in the order acknowledged."""
        return [unquote_plus(raw.decode("ascii")) for raw in self._raw]

    def tickets(self) -> list[list[Any]]:
        """Per recorded message: [acknowledged at, ticket id, the ticket's createdOn], times in
        unix seconds; a message that is not a ticket task gives [acknowledged at, None, None]."""
        out: list[list[Any]] = []
        for at, text in zip(self.acked_at, self.recorded, strict=True):
            try:
                [ticket] = sale_tickets(decode_task(text))
                created = datetime.fromisoformat(ticket["createdOn"].replace("Z", "+00:00"))
                out.append([at, ticket["ticketId"], created.timestamp()])
            except (KeyError, TypeError, ValueError):
                out.append([at, None, None])
        return out

    def stats(self) -> dict[str, Any]:
        """What was acknowledged since the last reset."""
        return {
            "calls": dict(self.calls),
            "messages": self.messages,
            "failed": self.failed,
            "errors": self.errors,
            "recorded": len(self._raw),
        }

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, str, bytes]:
        """One HTTP request → (status, content type, body)."""
        if target.startswith("/_standin/"):
            return self._control(method, target)
        if method != "POST":
            return self._error(SnsError(405, "InvalidAction", "SNS calls are POSTs"))
        form = dict(p.partition(b"=")[::2] for p in body.split(b"&") if p)
        action = form.get(b"Action", b"").decode("ascii", "replace")
        self.calls[action] = self.calls.get(action, 0) + 1
        answers = {
            "Publish": self._publish,
            "PublishBatch": self._publish_batch,
            "GetTopicAttributes": self._topic_attributes,
        }
        try:
            if action not in answers:
                raise SnsError(400, "InvalidAction", f"The stand-in does not serve {action!r}")
            if unquote_plus(form.get(b"TopicArn", b"").decode("ascii")) != self.topic_arn:
                raise SnsError(404, "NotFound", "Topic does not exist")
            return answers[action](form)
        except SnsError as exc:
            return self._error(exc)

    def _next_id(self) -> str:
        self._serial += 1
        return f"standin-{self._serial}"

    def _take_failure(self) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            self.failed += 1
            return True
        return False

    def _accept(self, raw_message: bytes, now: float) -> None:
        self.messages += 1
        if self.record:
            self._raw.append(raw_message)
            self.acked_at.append(now)

    def _publish(self, form: dict[bytes, bytes]) -> tuple[int, str, bytes]:
        message = form.get(b"Message")
        if not message:
            raise SnsError(400, "InvalidParameter", "Message is required")
        if self._take_failure():
            raise SnsError(500, "InternalError", "failure injected by the bench")
        self._accept(message, time.time())
        result = f"<MessageId>{self._next_id()}</MessageId>"
        return _ok("Publish", result)

    def _publish_batch(self, form: dict[bytes, bytes]) -> tuple[int, str, bytes]:
        entries: dict[int, dict[str, bytes]] = {}
        for key, value in form.items():
            if key.startswith(ENTRY_PREFIX):
                number, _, field = key[len(ENTRY_PREFIX) :].partition(b".")
                if field in (b"Id", b"Message"):
                    entries.setdefault(int(number), {})[field.decode()] = value
        if not entries:
            raise SnsError(
                400, "EmptyBatchRequest", "The batch request doesn't contain any entries"
            )
        if len(entries) > MAX_BATCH:
            raise SnsError(400, "TooManyEntriesInBatchRequest", "More than 10 entries")
        ids = [unquote_plus(e.get("Id", b"").decode("ascii")) for e in entries.values()]
        if len(set(ids)) != len(ids) or not all(ids):
            raise SnsError(400, "BatchEntryIdsNotDistinct", "Two or more batch entries share an Id")
        ok, failed = [], []
        now = time.time()  # the moment this call is answered, give or take its own parsing
        for entry_id, entry in zip(ids, entries.values(), strict=True):
            if not entry.get("Message"):
                failed.append(_failed_entry(entry_id, "InvalidParameter", "Empty message", True))
            elif self._take_failure():
                failed.append(_failed_entry(entry_id, "InternalError", "injected", False))
            else:
                self._accept(entry["Message"], now)
                ok.append(
                    f"<member><Id>{escape(entry_id)}</Id>"
                    f"<MessageId>{self._next_id()}</MessageId></member>"
                )
        result = f"<Successful>{''.join(ok)}</Successful><Failed>{''.join(failed)}</Failed>"
        return _ok("PublishBatch", result)

    def _topic_attributes(self, _form: dict[bytes, bytes]) -> tuple[int, str, bytes]:
        attributes = {
            "TopicArn": self.topic_arn,
            "DisplayName": "",
            "SubscriptionsConfirmed": "1",
            "SubscriptionsPending": "0",
            "SubscriptionsDeleted": "0",
        }
        entries = "".join(
            f"<entry><key>{k}</key><value>{escape(v)}</value></entry>"
            for k, v in attributes.items()
        )
        return _ok("GetTopicAttributes", f"<Attributes>{entries}</Attributes>")

    def _error(self, exc: SnsError) -> tuple[int, str, bytes]:
        self.errors += 1
        kind = "Sender" if exc.status < 500 else "Receiver"
        xml = (
            f'<ErrorResponse xmlns="{XMLNS}"><Error><Type>{kind}</Type><Code>{exc.code}</Code>'
            f"<Message>{escape(exc.message)}</Message></Error>"
            f"<RequestId>{self._next_id()}</RequestId></ErrorResponse>"
        )
        return exc.status, "text/xml", xml.encode()

    def _control(self, method: str, target: str) -> tuple[int, str, bytes]:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        answer: Any
        if parts.path == "/_standin/stats":
            answer = self.stats()
        elif parts.path == "/_standin/messages":
            answer = self.recorded
        elif parts.path == "/_standin/tickets":
            answer = self.tickets()
        elif parts.path == "/_standin/reset" and method == "POST":
            self.reset(record=query.get("record") == "1")
            answer = self.stats()
        elif parts.path == "/_standin/fail" and method == "POST":
            self.fail_next = int(query.get("entries", "1"))
            answer = {"failNext": self.fail_next}
        else:
            return 404, "application/json", b'{"error":"no such control endpoint"}'
        return 200, "application/json", json.dumps(answer).encode()


def _ok(action: str, result: str) -> tuple[int, str, bytes]:
    xml = (
        f'<{action}Response xmlns="{XMLNS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>standin</RequestId></ResponseMetadata></{action}Response>"
    )
    return 200, "text/xml", xml.encode()


def _failed_entry(entry_id: str, code: str, message: str, sender_fault: bool) -> str:
    return (
        f"<member><Id>{escape(entry_id)}</Id><Code>{code}</Code><Message>{message}</Message>"
        f"<SenderFault>{'true' if sender_fault else 'false'}</SenderFault></member>"
    )


def decode_task(message: str) -> dict[str, Any]:
    """The Celery task inside a recorded message (kombu's JSON envelope, body base64 inside):
    {"task", "id", "args", "kwargs"}. For checking what was published, never for building."""
    envelope = json.loads(message)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, _embed = json.loads(body)
    headers = envelope.get("headers", {})
    return {"task": headers.get("task"), "id": headers.get("id"), "args": args, "kwargs": kwargs}


def sale_tickets(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The tickets a decoded task carries: a sale's order (`apply_order`, PAID: each seat with
    the order's eventId, createdOn, orderId and version) or an older release's ticket task
    (`persist_ticket`: its ticket); none for anything else."""
    if task["task"] == "tasks.orders.apply_order":
        order = task["kwargs"]["order"]
        if order["status"] != "PAID":
            return []
        shared = {k: order[k] for k in ("eventId", "createdOn", "orderId", "version")}
        return [{**seat, **shared} for seat in order["seats"]]
    if task["task"] == "tasks.tickets.persist_ticket":
        return [task["kwargs"]["ticket"]]
    return []


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    501: "Not Implemented",
}


class _HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length bodies (what botocore sends)."""

    def __init__(self, standin: StandIn, live: set[_HttpProtocol]) -> None:
        self.standin = standin
        self.live = live
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.live.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target = lines[0].split(" ")[:2]
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = value.strip().lower() == "close"
                elif name == "transfer-encoding":  # botocore never chunks a query body
                    self._answer(501, "text/plain", b"chunked bodies are not served", True)
                    return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            status, content_type, payload = self.standin.handle(method, target, body)
            self._answer(status, content_type, payload, close)

    def _answer(self, status: int, content_type: str, payload: bytes, close: bool) -> None:
        assert self.transport is not None
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
            "x-amzn-RequestId: standin\r\n"
        )
        if close:
            head += "Connection: close\r\n"
        head += "\r\n"
        self.transport.write(head.encode() + payload)
        if close:
            self.transport.close()
            self.transport = None


async def serve(standin: StandIn, port: int, ready: Callable[[int], None]) -> None:
    """Serve until cancelled; `ready(port)` once listening."""
    loop = asyncio.get_running_loop()
    live: set[_HttpProtocol] = set()
    server = await loop.create_server(
        lambda: _HttpProtocol(standin, live), "127.0.0.1", port, backlog=1024
    )
    ready(server.sockets[0].getsockname()[1])
    try:
        async with server:
            await server.serve_forever()
    finally:
        for connection in list(live):
            connection.close()


def serve_in_thread(topic_arn: str) -> tuple[StandIn, int, Callable[[], None]]:
    """For tests: the stand-in on a free port in a daemon thread; returns (state, port, stop)."""
    standin = StandIn(topic_arn)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []

    def on_ready(p: int) -> None:
        port.append(p)
        started.set()

    task_holder: list[asyncio.Task] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task_holder.append(loop.create_task(serve(standin, 0, on_ready)))
        try:
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task_holder[0])
            loop.run_until_complete(asyncio.sleep(0))  # let the closed transports finish
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True, name="sns-standin")
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the stand-in SNS endpoint did not start")

    def stop() -> None:
        loop.call_soon_threadsafe(task_holder[0].cancel)
        thread.join(5)

    return standin, port[0], stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topic-arn", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        asyncio.run(
            serve(
                StandIn(args.topic_arn),
                args.port,
                lambda port: print(f"listening on {port}", flush=True),
            )
        )


if __name__ == "__main__":
    main()

"""The worker's Celery events leave through a thread of their own, so the monitoring plane can
never hold up the sale.

Celery publishes an event where it happens: on the worker's event loop (task batches, worker
heartbeats) and in the pool's threads, holding one lock. A monitoring Redis that accepts and
never answers would block that publish, then every thread waiting for the lock, then the event
loop that receives and acknowledges the SQS messages: no ticket would be persisted while Flower
is blind. Here a publish only appends the event to a bounded buffer; one sender thread writes
the buffer to Redis on a connection with timeouts (`celeryconfig.monitor_transport_options`),
and after a failure reconnects with a growing pause. When the buffer is full the oldest events
give way, counted in `ticketing_monitor_events_dropped_total`: an outage of the monitoring
plane costs what Flower would have seen of it, nothing more.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from typing import Any

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher
from kombu import Producer

from plumbing import metrics

log = logging.getLogger(__name__)

#: Events waiting for the sender: single ones, or batches of task events (Celery sends those by
#: the batch, of up to its buffer_limit, 24). A few MB at the very worst.
BUFFER = 256
#: Seconds between reconnection attempts after a failure: from the first to the last, doubling.
PAUSES = (0.5, 5.0)
#: At shutdown, how long the sender may take to write what is still buffered.
CLOSE_SECONDS = 2.0


class QueuedEventDispatcher(EventDispatcher):
    """Celery's event dispatcher; a publish is handed to a sender thread and never waits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._outbox: deque[tuple[Any, str]] = deque(maxlen=BUFFER)
        self._ready = threading.Condition()
        self._stopping = False
        self._closing = threading.Event()
        self._sender: threading.Thread | None = None
        super().__init__(*args, **kwargs)
        # The sender makes connections of its own. Celery's event loop would connect this one
        # when it starts, on its own thread, only to ask it for AMQP heartbeats, which Redis
        # does not have: a silent Redis would hold the worker's start there. Not shown to it.
        self.connection = None

    def _publish(self, event: Any, producer: Any, routing_key: str, **_: Any) -> None:
        # Called with self.mutex held, on the event loop and in the pool's threads: no I/O here.
        if producer is None:  # disabled or closed, as in Celery's
            return
        with self._ready:
            if len(self._outbox) == BUFFER:
                metrics.MONITOR_EVENTS_DROPPED.inc(_count(self._outbox[0][0]))
            self._outbox.append((event, routing_key))
            self._ready.notify()
            if self._sender is None and not self._stopping:
                self._sender = threading.Thread(
                    target=self._send_loop, name="events-sender", daemon=True
                )
                self._sender.start()

    def extend_buffer(self, other: EventDispatcher) -> None:
        """Take over what another dispatcher had not sent yet (the consumer restarted)."""
        super().extend_buffer(other)
        for event, routing_key in getattr(other, "_outbox", ()):
            self._publish(event, self.producer, routing_key)

    def close(self) -> None:
        """Stop taking events; give the sender a moment to write what is buffered."""
        super().close()
        with self._ready:
            self._stopping = True
            self._closing.set()
            self._ready.notify()
            sender = self._sender
        if sender is not None and sender is not threading.current_thread():
            sender.join(CLOSE_SECONDS)

    def _wait_for_events(self) -> bool:
        with self._ready:
            while not self._outbox and not self._stopping:
                self._ready.wait()
            return bool(self._outbox)

    def _take(self) -> list[tuple[Any, str]]:
        with self._ready:
            batch = list(self._outbox)
            self._outbox.clear()
            return batch

    def _send_loop(self) -> None:
        from tasks.consumer import monitor_connection

        pause, connection, producer = PAUSES[0], None, None
        try:
            while self._wait_for_events():
                batch: list[tuple[Any, str]] = []
                sent = 0
                try:
                    if producer is None:
                        connection = monitor_connection()
                        producer = Producer(
                            connection.channel(),  # one attempt, bounded by the timeouts
                            exchange=self.exchange,
                            serializer=self.serializer,
                            auto_declare=False,
                        )
                    batch = self._take()
                    for event, routing_key in batch:
                        self._send(producer, event, routing_key)
                        sent += 1
                    pause = PAUSES[0]
                except Exception as exc:  # Redis silent, gone or refusing: the sale goes on
                    # what was being written is lost; what waits in the buffer is tried again
                    lost = sum(_count(event) for event, _ in batch[sent:])
                    metrics.MONITOR_EVENTS_DROPPED.inc(lost)
                    with self._ready:
                        waiting = sum(_count(event) for event, _ in self._outbox)
                    log.warning(
                        "events to the monitoring Redis failed: %d lost, %d waiting, next try "
                        "in %.1fs: %r",
                        lost,
                        waiting,
                        pause,
                        exc,
                    )
                    _release(connection)
                    connection, producer = None, None
                    if self._closing.wait(pause):
                        return
                    pause = min(pause * 2, PAUSES[1])
        finally:
            _release(connection)

    def _send(self, producer: Producer, event: Any, routing_key: str) -> None:
        producer.publish(
            event,
            routing_key=routing_key,
            exchange=self.exchange.name,
            declare=[self.exchange],
            serializer=self.serializer,
            headers=self.headers,
            delivery_mode=self.delivery_mode,
        )


def _release(connection: Any) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):  # a broken connection may fail to close
            connection.release()


def _count(event: Any) -> int:
    return len(event) if isinstance(event, list) else 1


class MonitorEvents(Events):
    """The app's `events`: Celery's, with the queued dispatcher."""

    dispatcher_cls = "tasks.events:QueuedEventDispatcher"

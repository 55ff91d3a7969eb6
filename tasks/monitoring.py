"""Remote control over Redis, so Flower (and `celery inspect`) can talk to workers whose tasks
come from SQS, which carries neither broadcast nor replies.

A consumer bootstep runs Celery's mailbox node on its own Redis connection in a thread — the
pattern of Celery's own gevent pidbox loop. Replies must not go through the app's producer pool:
that is the SQS connection, where they would vanish. The node gets a copy of the mailbox without
the pool, so it replies on its own Redis channel.

Thread safety: the node runs control commands in this thread. Read-only commands (ping, stats,
active, reserved, registered, conf, active_queues, …) only read worker state. Mutating ones are
refused here: pool grow/shrink and autoscale resize the pool from a foreign thread, and
add/cancel consumer, rate limits and revoke change consumer state the main loop owns; on this
deployment the number of processes is the ECS task count, not a live knob.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from copy import copy
from typing import Any

from celery import bootsteps
from celery.utils.collections import AttributeDict
from celery.worker import control
from kombu.utils.encoding import safe_str

from tasks.consumer import monitor_connection

log = logging.getLogger(__name__)

REFUSED = frozenset(
    {
        "pool_grow",
        "pool_shrink",
        "autoscale",
        "add_consumer",
        "cancel_consumer",
        "rate_limit",
        "time_limit",
        "revoke",
        "revoke_by_stamped_headers",
        "terminate",
        "shutdown",
        "pool_restart",
        "enable_events",
        "disable_events",
        "election",
    }
)


def _handlers() -> dict[str, Any]:
    """Celery's control handlers, minus the ones that mutate state from this thread."""
    handlers = dict(control.Panel.data)

    def refused(state: Any, **kwargs: Any) -> dict[str, str]:
        return {"error": "refused: not supported by this worker's remote control over Redis"}

    for name in REFUSED & handlers.keys():
        handlers[name] = refused
    return handlers


class SilentSubscription(ConnectionError):
    """The subscription's connection stopped answering PINGs."""


def _check_subscription(channel: Any) -> None:
    """PING the subscription after MONITOR_HEALTH_CHECK_SECONDS of silence; raise when two
    PINGs went unanswered.

    A subscription that died silently (a half-open connection: the Redis failed over, a
    network path dropped it) reads nothing, exactly like a quiet one, and would leave the node
    deaf for good. kombu checks this on its event loop's timer; this thread has none. The
    caller then makes a new connection.
    """
    subscription = channel.subclient  # redis-py's PubSub, with health_check_interval set
    if subscription.connection is None:
        return
    if subscription.health_check_response_counter >= 2:
        raise SilentSubscription("no answer to two PINGs on the remote control subscription")
    subscription.check_health()


class RedisRemoteControl(bootsteps.StartStopStep):
    """Consumer bootstep: a mailbox node on Redis, served by a daemon thread."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        mailbox = copy(c.app.control.mailbox)
        # reply on the node's own Redis channel, never through the app's pool (SQS)
        mailbox._producer_pool = None
        mailbox.__dict__.pop("producer_pool", None)  # a pool the original had already made
        self.node = mailbox.Node(
            safe_str(c.hostname),
            handlers=_handlers(),
            state=AttributeDict(app=c.app, hostname=c.hostname, consumer=c, tset=set),
        )

    def start(self, c: Any) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(c,), name="redis-pidbox", daemon=True
        )
        self._thread.start()

    def stop(self, c: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    shutdown = stop

    def _on_message(self, body: Any, message: Any) -> None:
        try:
            self.node.handle_message(body, message)
        except KeyError as exc:
            log.error("no such control command: %s", exc)
        except Exception:
            log.exception("control command failed")

    def _loop(self, c: Any) -> None:
        while not self._stop.is_set():
            try:
                with monitor_connection() as connection:
                    self.node.channel = connection.channel()
                    consumer = self.node.listen(callback=self._on_message)
                    consumer.on_decode_error = c.on_decode_error
                    log.info("remote control listening on %s", connection.as_uri())
                    while not self._stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            connection.drain_events(timeout=1.0)
                        _check_subscription(self.node.channel)
            except Exception as exc:  # Redis gone: the worker keeps consuming; retry later
                log.warning("remote control connection lost: %r", exc)
                self._stop.wait(2)

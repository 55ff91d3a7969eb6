"""Several PublishBatch calls of one relay on the wire at once, settled by its loop thread: on
real Redis, with the relay's own loop and envelopes, and a slow stand-in for SNS beside them
(it records how many calls overlap; the relay's calls against moto are in test_relay.py)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from models.seats import keys
from plumbing import settings
from relay.envelopes import Envelopes
from relay.loop import Relay
from tests.support.outbox import add_tickets, stream_lengths, tickets_for


class SlowSns:
    """Publishes everything after 0.2 s; counts the calls in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.messages = 0

    def publish_batch(self, entries: list[dict]) -> list[None]:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(0.2)
        with self.lock:
            self.in_flight -= 1
            self.messages += len(entries)
        return [None] * len(entries)


def drain(relay: Relay, r, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while stream_lengths(r) and time.monotonic() < deadline:
        relay.turn()


def test_the_calls_of_a_turn_overlap_and_every_entry_is_deleted_once(redis_client):
    add_tickets(redis_client, tickets_for(80), bucket_no=keys.bucket("Event1"))
    sns = SlowSns()
    config = replace(settings.get(), relay_senders=4)
    relay = Relay(redis_client, sns, Envelopes(), config, consumer="senders-test")
    relay._ensure_groups()
    started = time.monotonic()
    drain(relay, redis_client)
    print(f"80 entries in {time.monotonic() - started:.2f} s, {sns.most} calls at once")
    assert stream_lengths(redis_client) == 0 and not relay.held
    assert sns.messages == 80
    assert sns.most >= 2


def test_one_sender_sends_one_call_at_a_time(redis_client):
    add_tickets(redis_client, tickets_for(30), bucket_no=keys.bucket("Event1"))
    sns = SlowSns()
    config = replace(settings.get(), relay_senders=1)
    relay = Relay(redis_client, sns, Envelopes(), config, consumer="one-sender")
    relay._ensure_groups()
    drain(relay, redis_client)
    assert stream_lengths(redis_client) == 0 and sns.messages == 30 and sns.most == 1

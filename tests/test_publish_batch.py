"""Group-commit publishing against moto's real SNS: the batched message is the stock one, and a
refused entry fails its own publisher only."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from celery import Celery

import celeryconfig
from messaging import publisher
from models.tickets import SCHEMA_VERSION
from tests.support.aws import receive_all, tap_queue
from tests.support.processes import wait_until


def publisher_app(**group_commit: Any) -> Celery:
    """A producer app like the purchase API's; `group_commit` overrides its batching options
    (None for the stock one-Publish-per-message path)."""
    app = Celery(f"publisher-{uuid.uuid4().hex[:6]}", set_as_current=False)
    app.config_from_object("celeryconfig")
    app.conf.update(celeryconfig.publisher_overrides())
    options = app.conf.broker_transport_options
    if group_commit.get("disabled"):
        options.pop("sns_group_commit")
    else:
        options["sns_group_commit"] = {**options["sns_group_commit"], **group_commit}
    return app


def ticket(**changes: Any) -> dict[str, Any]:
    return {
        "ticketId": str(uuid.uuid4()),
        "venueId": "Venue1",
        "eventId": "Event1",
        "zoneId": 1,
        "row": "A",
        "column": "1",
        "price": "100.00",
        "status": "PAID",
        "createdOn": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "schemaVersion": SCHEMA_VERSION,
        **changes,
    }


def publish_together(tickets: list[dict]) -> list[str | Exception]:
    """Publish all at the same instant from as many threads; each one's id or exception."""
    start = threading.Barrier(len(tickets))

    def one(t: dict) -> str | Exception:
        start.wait()
        try:
            return publisher.publish_ticket(t)
        except publisher.PublishFailed as exc:
            return exc

    with ThreadPoolExecutor(len(tickets)) as pool:
        return list(pool.map(one, tickets))


def collect(queue_url: str, count: int) -> list[str]:
    """At least `count` bodies from the queue, then whatever else arrives within a second."""
    bodies: list[str] = []

    def enough() -> bool:
        bodies.extend(receive_all(queue_url))
        return len(bodies) >= count

    wait_until(enough, 10, f"{count} messages on the tap queue")
    time.sleep(1)  # a message too many would show up now
    return bodies + receive_all(queue_url)


def test_batched_message_is_exactly_the_stock_kombu_message(monkeypatch, session_settings):
    """The same ticket sent through PublishBatch and through kombu's own Publish arrives as the
    same SQS body (but for kombu's random delivery tag and the sending app's reply-to id)."""
    tap = tap_queue(session_settings.topic_arn)
    same = ticket()
    for app in (publisher_app(), publisher_app(disabled=True)):
        monkeypatch.setattr(publisher, "publisher_app", lambda app=app: app)
        assert publisher.publish_ticket(same) == same["ticketId"]
    bodies = collect(tap, 2)
    batched, stock = (json.loads(b) for b in bodies)
    for envelope in (batched, stock):
        envelope["properties"].pop("delivery_tag")
        envelope["properties"].pop("reply_to")
    assert batched == stock
    assert batched["headers"]["id"] == same["ticketId"]


def test_refused_entry_fails_only_its_own_publish(monkeypatch, session_settings):
    """SNS refuses a message over 256 KB per entry; its batch-mates are delivered, and only
    its publisher hears PublishFailed (the purchase then releases only that seat)."""
    tap = tap_queue(session_settings.topic_arn)
    app = publisher_app(window=0.5)  # wide enough that the concurrent publishes share a batch
    monkeypatch.setattr(publisher, "publisher_app", lambda: app)
    good = [ticket(column=str(c)) for c in range(1, 6)]
    too_big = ticket(venueId="V" * 300_000)
    outcomes = publish_together([*good[:2], too_big, *good[2:]])
    assert isinstance(outcomes[2], publisher.PublishFailed)
    assert "InvalidParameter" in str(outcomes[2])
    assert outcomes[:2] + outcomes[3:] == [t["ticketId"] for t in good]

    arrived = [json.loads(b)["headers"]["id"] for b in collect(tap, len(good))]
    assert sorted(arrived) == sorted(t["ticketId"] for t in good)


def test_concurrent_publishes_share_a_batch(monkeypatch):
    """Proof that batching happens: 10 publishes at once with a wide window are one call."""
    from prometheus_client import REGISTRY

    def batches() -> float:
        return REGISTRY.get_sample_value("ticketing_publish_batch_size_count") or 0.0

    app = publisher_app(window=0.5)
    monkeypatch.setattr(publisher, "publisher_app", lambda: app)
    before = batches()
    outcomes = publish_together([ticket(column=str(c)) for c in range(1, 11)])
    assert all(isinstance(o, str) for o in outcomes), outcomes
    assert batches() - before < 10


@pytest.mark.parametrize("size", [0, 11])
def test_batch_size_is_within_sns_limits(monkeypatch, size):
    from plumbing import settings

    monkeypatch.setenv("PUBLISH_BATCH_MAX", str(size))
    with pytest.raises(settings.SettingsError):
        settings.load()

"""Idempotency keys on POST /purchase/api/v1/tickets, against real Redis and moto."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.support.aws import receive_all, tap_queue
from tests.support.processes import wait_until
from tests.test_purchase_api import GOOD, URL, assert_problem, sold_bits


def buy(client, key: str | None, **changes):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(URL, json={**GOOD, **changes}, headers=headers)


def published(tap: str, expected: int) -> list[str]:
    """The messages on a tap queue, after waiting for `expected` and a second more."""
    bodies: list[str] = []
    wait_until(lambda: bodies.extend(receive_all(tap)) or len(bodies) >= expected, 10, "messages")
    time.sleep(1)  # a second publish would have arrived by now
    return bodies + receive_all(tap)


def test_without_a_key_a_retry_cannot_learn_its_ticket(client):
    """Why keys: a buyer whose 201 was lost retries and is told its own seat is taken."""
    assert buy(client, None).status_code == 201
    assert_problem(buy(client, None), 409, "SEAT_TAKEN")


def test_same_key_same_body_gives_the_original_answer_once(client, redis_client, session_settings):
    tap = tap_queue(session_settings.topic_arn)
    key = str(uuid.uuid4())
    first = buy(client, key)
    assert first.status_code == 201
    second = buy(client, key, row="a")  # the same request: rows are case-insensitive
    assert second.status_code == 201
    assert second.get_json() == first.get_json()
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert sold_bits(redis_client) == 1
    assert len(published(tap, 1)) == 1


def test_same_key_different_body_is_422(client, redis_client):
    key = str(uuid.uuid4())
    assert buy(client, key).status_code == 201
    assert_problem(buy(client, key, column="2"), 422, "IDEMPOTENCY_KEY_REUSED")
    assert sold_bits(redis_client) == 1


def test_same_key_for_another_event_is_422(client, redis_client):
    """The per-event record is in another slot; the global guard catches the reuse."""
    key = str(uuid.uuid4())
    assert buy(client, key).status_code == 201
    assert_problem(buy(client, key, eventId="Event2"), 422, "IDEMPOTENCY_KEY_REUSED")
    assert sold_bits(redis_client) == 1


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 256, "clé"])
def test_invalid_key_is_400(client, key, redis_client):
    body = assert_problem(buy(client, key), 400, "VALIDATION_FAILED")
    assert "Idempotency-Key" in body["errors"]
    assert sold_bits(redis_client) == 0


def test_a_rejected_purchase_stores_nothing(client):
    assert buy(client, None).status_code == 201
    key = str(uuid.uuid4())
    assert_problem(buy(client, key), 409, "SEAT_TAKEN")
    assert_problem(buy(client, key), 409, "SEAT_TAKEN")  # decided again, not replayed


def test_record_lives_24_hours_in_the_events_slot(client, redis_client):
    from models import seats
    from web import purchase

    key = "order-42"
    assert buy(client, key).status_code == 201
    record = seats.idempotency_key("Event1", purchase._sha256(key))
    assert record.startswith("seats:{Event1}:")
    assert redis_client.hget(record, "state") == "done"
    assert 86000 < redis_client.ttl(record) <= 86400
    assert 86000 < redis_client.ttl("idem:{" + purchase._sha256(key) + "}") <= 86400


def test_concurrent_duplicates_give_exactly_one_ticket(app, client, redis_client, session_settings):
    tap = tap_queue(session_settings.topic_arn)
    key, n = str(uuid.uuid4()), 20
    barrier = threading.Barrier(n)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def attempt() -> None:
        own = app.test_client()
        barrier.wait()
        response = buy(own, key)
        with lock:
            answers.append((response.status_code, response.get_json(force=True)))

    threads = [threading.Thread(target=attempt) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [body["ticketId"] for status, body in answers if status == 201]
    in_progress = [body for status, body in answers if status == 409]
    print(
        f"\n{n} concurrent same-key requests: {len(created)} x 201 "
        f"({len(set(created))} ticket id), {len(in_progress)} x 409 IN_PROGRESS"
    )
    assert len(created) + len(in_progress) == n
    assert len(set(created)) == 1
    assert all(body["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS" for body in in_progress)
    assert sold_bits(redis_client) == 1
    assert len(published(tap, 1)) == 1
    again = buy(client, key)  # once done, every repeat is the original 201
    assert (again.status_code, again.get_json()["ticketId"]) == (201, created[0])


def test_pending_record_answers_409_in_progress_with_retry_after(client, redis_client):
    from models import seats
    from web import purchase

    key = str(uuid.uuid4())
    assert buy(client, key).status_code == 201
    record = seats.idempotency_key("Event1", purchase._sha256(key))
    redis_client.hset(record, "state", "pending")  # as while the first request publishes
    response = buy(client, key)
    assert_problem(response, 409, "IDEMPOTENCY_KEY_IN_PROGRESS")
    assert response.headers["Retry-After"] == "1"


def test_publish_failure_then_retry_with_the_same_key_succeeds(client, redis_client, monkeypatch):
    from celery import Celery

    import celeryconfig
    from messaging import publisher
    from tests.test_purchase_api import free_port_number

    unreachable = Celery("unreachable-broker", set_as_current=False)
    unreachable.config_from_object("celeryconfig")
    unreachable.conf.update(celeryconfig.publisher_overrides())
    unreachable.conf.broker_url = f"sqs://testing:testing@127.0.0.1:{free_port_number()}"
    unreachable.conf.broker_transport_options["is_secure"] = False
    monkeypatch.setattr(publisher, "publisher_app", lambda: unreachable)

    key = str(uuid.uuid4())
    assert_problem(buy(client, key), 503, "SERVICE_UNAVAILABLE")
    assert sold_bits(redis_client) == 0
    assert list(redis_client.scan_iter("seats:*:idem:*")) == []  # released with the seat

    monkeypatch.undo()
    response = buy(client, key)
    assert response.status_code == 201
    assert buy(client, key).get_json()["ticketId"] == response.get_json()["ticketId"]
    assert sold_bits(redis_client) == 1

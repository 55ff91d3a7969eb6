"""Idempotency keys on POST /purchase/api/v1/tickets, against real Redis.

The key's record is written by the sale's own script, with the answer, so a record is never
pending; a repeat is answered by the same script without a decision. Keys are scoped to the
buyer and the event: the record lives in the event's slot, so the one call that sells can write
it, and only a sale writes one."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from models.seats import keys
from tests.test_purchase_api import GOOD, URL, assert_problem, sold_bits


def buy(client, key: str | None, **changes):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(URL, json={**GOOD, **changes}, headers=headers)


def outbox_len(redis_client) -> int:
    return sum(redis_client.xlen(stream) for stream in keys.outbox_streams())


def test_without_a_key_a_retry_cannot_learn_its_ticket(client):
    """Why keys: a buyer whose 201 was lost retries and is told its own seat is taken."""
    assert buy(client, None).status_code == 201
    assert_problem(buy(client, None), 409, "SEAT_TAKEN")


def test_same_key_same_body_gives_the_original_answer_once(client, redis_client):
    key = str(uuid.uuid4())
    first = buy(client, key)
    assert first.status_code == 201
    second = buy(client, key, row="a")  # the same request: rows are case-insensitive
    assert second.status_code == 201
    assert second.get_json() == first.get_json()
    assert second.headers["Location"] == first.headers["Location"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert sold_bits(redis_client) == 1
    assert outbox_len(redis_client) == 1  # one event: the repeat appended nothing


def test_same_key_different_body_is_422(client, redis_client):
    key = str(uuid.uuid4())
    assert buy(client, key).status_code == 201
    assert_problem(buy(client, key, column="2"), 422, "IDEMPOTENCY_KEY_REUSED")
    assert sold_bits(redis_client) == 1


def test_the_same_key_for_another_event_is_another_key(client, redis_client):
    """Keys are scoped to the event (one slot, one call): the same key for another event is a
    separate purchase, not a reuse."""
    key = str(uuid.uuid4())
    first = buy(client, key)
    other = buy(client, key, eventId="Event2")
    assert (first.status_code, other.status_code) == (201, 201)
    assert first.get_json()["ticketId"] != other.get_json()["ticketId"]
    assert buy(client, key, eventId="Event2").get_json() == other.get_json()


@pytest.mark.parametrize("key", ["", " ", "a b", "x" * 256, "clé"])
def test_invalid_key_is_400(client, key, redis_client):
    body = assert_problem(buy(client, key), 400, "VALIDATION_FAILED")
    assert "Idempotency-Key" in body["errors"]
    assert sold_bits(redis_client) == 0


def test_a_rejected_purchase_stores_nothing(client, redis_client):
    assert buy(client, None).status_code == 201
    key = str(uuid.uuid4())
    assert_problem(buy(client, key), 409, "SEAT_TAKEN")
    assert_problem(buy(client, key), 409, "SEAT_TAKEN")  # decided again, not replayed
    assert list(redis_client.scan_iter("*idem*")) == []


def test_record_lives_24_hours_in_the_events_slot(client, redis_client):
    from web import purchase

    key = "order-42"
    assert buy(client, key).status_code == 201
    record = purchase.idempotency_record("Event1", "test-operator", key)
    assert record.startswith("seats:" + keys.tag("Event1") + ":Event1:")
    assert json.loads(redis_client.hget(record, "ticket"))["eventId"] == "Event1"
    assert 86000 < redis_client.ttl(record) <= 86400
    assert list(redis_client.scan_iter("*idem*")) == [record]  # no other record


def test_concurrent_duplicates_give_exactly_one_ticket(app, client, redis_client):
    """20 requests with one key at once: one decision; every answer is the same 201."""
    key, n = str(uuid.uuid4()), 20
    barrier = threading.Barrier(n)
    answers: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def attempt() -> None:
        own = app.test_client()
        own.environ_base.update(client.environ_base)  # the same buyer
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
    assert len(created) == n, answers
    assert len(set(created)) == 1
    assert sold_bits(redis_client) == 1
    assert outbox_len(redis_client) == 1
    again = buy(client, key)  # once done, every repeat is the original 201
    assert (again.status_code, again.get_json()["ticketId"]) == (201, created[0])


def test_a_key_is_the_buyers_own(app, client, redis_client):
    """Another buyer replaying a guessed key with a guessed body gets a purchase of its own (here
    SEAT_TAKEN), never the first buyer's ticket."""
    from tests.support.tokens import bearer

    key = "guessable-key-1"
    assert buy(client, key).status_code == 201
    stranger = app.test_client()
    stranger.environ_base["HTTP_AUTHORIZATION"] = bearer("stranger")["Authorization"]
    answer = buy(stranger, key)
    assert_problem(answer, 409, "SEAT_TAKEN")
    assert "Idempotent-Replayed" not in answer.headers
    assert buy(client, key).headers["Idempotent-Replayed"] == "true"  # the owner still replays

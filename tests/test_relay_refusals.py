"""One entry of a batch refused by SNS: only it is retried, or parked, while its batch-mates are
published once. SNS (and moto) refuse single entries of a mixed batch too rarely to provoke, so
the SNS endpoint here is the bench's stand-in (ops/bench/sns_standin.py), a real HTTP server of
the query protocol that answers a chosen entry in `Failed`; the relay is the real process."""

from __future__ import annotations

import json

import pytest
import sns_standin

from models.seats import keys
from tests.support.outbox import add_tickets, parked, stream_lengths, tickets_for
from tests.support.processes import Relay, wait_until


def relayed_ids(state) -> list[str]:
    return [sns_standin.decode_task(m)["id"] for m in state.recorded]


@pytest.mark.parametrize("max_attempts", ["5", "1"])
def test_only_the_refused_entry_is_retried_or_parked(
    standin, redis_client, own_outbox, max_attempts
):
    state, url = standin
    state.reset(record=True)
    state.fail_next = 1  # the first message of the next call is answered in `Failed`
    tickets = tickets_for(5)
    env = {
        "AWS_ENDPOINT_URL_SNS": url,
        "RELAY_MAX_ATTEMPTS": max_attempts,
        "RELAY_BATCH_WINDOW_MS": "200",  # the five go out as one batch
    }
    with Relay.start(env) as relay:
        add_tickets(redis_client, tickets, keys.bucket("Event1"))
        wait_until(lambda: stream_lengths(redis_client) == 0, 30, "the outbox emptied")
    stats = state.stats()
    ids = relayed_ids(state)
    assert stats["failed"] == 1
    if max_attempts == "5":  # retried alone, published once: all five, each once
        assert sorted(ids) == sorted(t["ticketId"] for t in tickets)
        assert stats["calls"] == {"PublishBatch": 2}
        assert "SNS refused outbox entry" in relay.log()
    else:  # parked at its first refusal; its four batch-mates published once
        [(_, fields)] = parked(redis_client)
        parked_id = json.loads(fields["ticket"])["ticketId"]
        assert len(ids) == 4 and len(set(ids)) == 4 and parked_id not in ids
        assert sorted([*ids, parked_id]) == sorted(t["ticketId"] for t in tickets)
        assert stats["calls"] == {"PublishBatch": 1}
        assert "parked" in relay.log()

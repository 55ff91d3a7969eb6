"""The relay's one-pass form encoding of PublishBatch: the same pairs as urlencode's, and what
moto's SNS (a real form decoder) publishes is the message sent, byte for byte."""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qsl

import pytest
from aws_resources import create_messaging

from relay import form_body
from relay.sns import Sns
from tests.support.aws import receive_all, tap_queue
from tests.support.processes import wait_until

AWKWARD = 'ünïcødé {"json": [1, 2]} +/=&%?#~ spaces\n' * 5  # over LONG: escaped byte by byte


@pytest.mark.parametrize("value", ["", "short +/=&", AWKWARD, "x" * 65, "€" * 40])
def test_the_encoding_decodes_to_the_same_pairs(value):
    params = {"Action": "PublishBatch", "A.member.1.Message": value, "Version": "2010-03-31"}
    encoded = form_body.encode(params)
    assert encoded.isascii()
    assert parse_qsl(encoded, keep_blank_values=True) == list(params.items())


def test_botocore_sends_the_encoded_body_and_sns_publishes_the_message_unchanged(
    session_settings,
):
    # a topic of its own: these are not task messages, and the session worker would take them
    topic_arn = create_messaging(f"fb{uuid.uuid4().hex[:8]}").topic_arn
    tap = tap_queue(topic_arn)
    sns = Sns(topic_arn, session_settings.aws_region, 2.0, 5.0)
    sent: list[object] = []
    sns.client.meta.events.register(
        "before-send.sns.PublishBatch", lambda request, **_: sent.append(request.body)
    )
    bodies = [json.dumps({"n": n, "text": AWKWARD}) for n in range(10)]
    outcomes = sns.publish_batch([{"Message": b} for b in bodies])
    assert outcomes == [None] * 10
    [body] = sent
    text = body.decode() if isinstance(body, bytes) else str(body)
    assert "=%7b%22%6e%22" in text  # our encoding went out: every byte of the message escaped
    got: list[str] = []
    wait_until(lambda: got.extend(receive_all(tap)) or len(got) >= 10, 10, "10 messages")
    assert sorted(got) == sorted(bodies)

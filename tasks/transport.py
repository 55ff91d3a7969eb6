"""The worker's transport: kombu's SQS transport with batched acks and tolerant decoding.

Each change is a channel class of its own (`tasks.ack_batching`, `tasks.tolerant_decoding`);
this module only puts them together, under the scheme `sqs-tickets` (celeryconfig).
"""

from __future__ import annotations

from kombu.transport.SQS import Transport as SQSTransport

from tasks.ack_batching import AckBatchingChannel
from tasks.tolerant_decoding import TolerantDecodingChannel


class Channel(AckBatchingChannel, TolerantDecodingChannel):
    """Acks batched; an undecodable body passed on for Celery to reject towards the DLQ."""


class Transport(SQSTransport):
    Channel = Channel

"""`python -m relay` (Procfile `relay`): relay the outbox to SNS, and sweep expired holds, until
SIGTERM, then exit 0."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from types import FrameType

from plumbing import logs, settings

log = logging.getLogger("relay")


def main() -> int:
    """Start the relay and its sweeper; SIGTERM or SIGINT finish the batch in flight and stop
    them."""
    logs.configure("relay")
    config = settings.get()

    from models import seats
    from relay import monitoring
    from relay.envelopes import Envelopes
    from relay.loop import Relay
    from relay.sns import Sns
    from relay.sweeper import Sweeper

    name = f"{socket.gethostname()}-{os.getpid()}"
    sns = Sns(
        config.topic_arn,
        config.aws_region,
        connect_timeout=config.broker_connect_timeout,
        read_timeout=config.broker_read_timeout,
        senders=config.relay_senders,
    )
    relay = Relay(seats.client(), sns, Envelopes(), config, consumer=name)
    sweeper = Sweeper(seats.client(), config)  # a thread: draining holds never delays a publish

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("relay %s: signal %d, stopping after the batch in flight", name, signum)
        relay.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    monitoring.start_metrics()
    heartbeat = monitoring.Heartbeat(name, relay.holding)
    heartbeat.start()
    sweeper.start()
    try:
        relay.run()
    finally:
        sweeper.stop()
        heartbeat.stop()
        monitoring.stop_metrics()
    return 0


if __name__ == "__main__":
    sys.exit(main())

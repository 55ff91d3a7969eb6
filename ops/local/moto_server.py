"""moto's server with one fix for its SQS: a delete takes the queue's lock.

moto 5.2's `Queue.delete_message` rebuilds the queue's message list without the lock that
`add_message` holds, so a message SNS delivers while a delete is rebuilding the list is lost,
and two concurrent deletes can undo each other (the message comes back as a redelivery). Our
worker deletes 10 messages per DeleteMessageBatch while purchases keep publishing, which made
"every 201 persisted" tests lose a message now and then. Real SQS has no such race; locally,
tests, `make run` and `make bench` start moto through this module.
"""

from __future__ import annotations

import sys

from moto.server import main
from moto.sqs.models import Queue

_delete_message = Queue.delete_message


def _locked_delete_message(self: Queue, receipt_handle: str) -> None:
    with self._messages_lock:  # a Condition on an RLock: add_message takes the same one
        _delete_message(self, receipt_handle)


Queue.delete_message = _locked_delete_message

if __name__ == "__main__":
    sys.exit(main())

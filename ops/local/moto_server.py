"""moto's server with two fixes: a delete takes the queue's lock, and, where a test has IAM
enforced, SNS calls are authorised the way AWS authorises them.

moto 5.2's `Queue.delete_message` rebuilds the queue's message list without the lock that
`add_message` holds, so a message SNS delivers while a delete is rebuilding the list is lost,
and two concurrent deletes can undo each other (the message comes back as a redelivery). Our
worker deletes 10 messages per DeleteMessageBatch while purchases keep publishing, which made
"every 201 persisted" tests lose a message now and then. Real SQS has no such race; locally,
tests, `make run` and `make bench` start moto through this module.

With IAM enforced (`/moto-api/reset-auth`, tests/test_deploy_iam.py only), moto checks SNS calls
against the resource "*" and PublishBatch as `sns:PublishBatch`. AWS checks them against the
topic (TopicArn) and authorises PublishBatch by `sns:Publish`, which is all the relay's role
has; here they are checked the same way. Without enforcement nothing changes.
"""

from __future__ import annotations

import sys

from moto.iam.access_control import IAMRequestBase
from moto.server import main
from moto.sns.responses import SNSResponse
from moto.sqs.models import Queue

_delete_message = Queue.delete_message


def _locked_delete_message(self: Queue, receipt_handle: str) -> None:
    with self._messages_lock:  # a Condition on an RLock: add_message takes the same one
        _delete_message(self, receipt_handle)


Queue.delete_message = _locked_delete_message

# IAM actions AWS checks for an API call whose name differs (the SNS API permissions reference)
AWS_ACTIONS = {"sns:PublishBatch": "sns:Publish"}

_request_init = IAMRequestBase.__init__


def _request_init_as_aws(self: IAMRequestBase, *args: object, **kwargs: object) -> None:
    _request_init(self, *args, **kwargs)
    self._action = AWS_ACTIONS.get(self._action, self._action)


def _sns_resource(self: SNSResponse) -> str:
    return self._get_param("TopicArn") or self._get_param("TargetArn") or "*"


IAMRequestBase.__init__ = _request_init_as_aws
SNSResponse._determine_resource = _sns_resource

if __name__ == "__main__":
    sys.exit(main())

# SNS topic → raw-delivery subscription → SQS queue (the Celery broker) → redrive → DLQ.
# Exactly what ops/local/aws_resources.py creates locally (tests/test_terraform.py compares the
# values with its constants). The worker never subscribes or edits the policy (celeryconfig.py).

locals {
  # Above the worker's longest retry countdown (TASK_RETRY_BACKOFF_CAP, 20 s): a longer countdown
  # would make SQS redeliver the waiting message. aws_resources.DEFAULT_VISIBILITY_TIMEOUT.
  visibility_timeout_seconds = 60
  # Long polling, as the worker's wait_time_seconds in celeryconfig.py.
  receive_wait_time_seconds = 10
  # A poison message reaches the DLQ after this many receives. aws_resources.DEFAULT_MAX_RECEIVE_COUNT.
  max_receive_count = 5
  # 14 days, the SQS maximum: time for an operator to look at a dead letter.
  dlq_message_retention_seconds = 1209600
}

resource "aws_sns_topic" "events" {
  name = "${var.prefix}-events"
  # AWS-managed key: publishers need no key grant, and the queues are SSE-SQS.
  kms_master_key_id = "alias/aws/sns"
}

resource "aws_sqs_queue" "dlq" {
  name                      = "${var.prefix}-sql-dlq"
  message_retention_seconds = local.dlq_message_retention_seconds
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "tickets" {
  name                       = "${var.prefix}-sql"
  visibility_timeout_seconds = local.visibility_timeout_seconds
  receive_wait_time_seconds  = local.receive_wait_time_seconds
  sqs_managed_sse_enabled    = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = local.max_receive_count
  })
}

data "aws_iam_policy_document" "queue" {
  statement {
    sid       = "topic-sends"
    effect    = "Allow"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.tickets.arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.events.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "tickets" {
  queue_url = aws_sqs_queue.tickets.id
  policy    = data.aws_iam_policy_document.queue.json
}

resource "aws_sns_topic_subscription" "tickets" {
  topic_arn            = aws_sns_topic.events.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.tickets.arn
  raw_message_delivery = true

  # The policy must exist before SNS delivers the first message.
  depends_on = [aws_sqs_queue_policy.tickets]
}

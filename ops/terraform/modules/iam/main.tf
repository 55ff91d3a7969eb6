# Task roles: what each process may call on AWS, nothing more. (Each service's *execution* role,
# for the image pull, its log group and its own secrets, is in modules/ecs_service.)
#   relay:    publish to the topic (sns:Publish, which also authorises sns:PublishBatch): it
#             carries the outbox's entries from Redis to SNS
#   worker:   consume the queue, and send to it (a Celery retry goes straight back to its own
#             queue); the DLQ is reached only through the redrive policy, never sent to
#   events:   read the depth of the queue and of the DLQ (/events/health/deep)
#   ops:      the operator's commands (ops/scripts/ops-task.sh): `seats rebuild` and
#             `reconcile` read the queue's depth (and peek the DLQ); `dlq list` peeks the DLQ;
#             `dlq redrive` moves its messages back (StartMessageMoveTask, or receive, send to the
#             queue, delete)
#   purchase, query, flower, release: no AWS API at all (a purchase writes the seat state and
#             its outbox entry in Redis, the relay publishes it; `catalog load`, run in the
#             release task, needs MySQL and Redis only: an event that must be rebuilt is left to
#             the ops task)
#
# With existing_role_arn set (accounts where no IAM role may be created, such as AWS Academy
# Learner Lab and its LabRole), nothing here is created and every process gets that role.

locals {
  services    = ["purchase", "query", "events", "relay", "worker", "flower", "release", "ops"]
  create_iam  = var.existing_role_arn == ""
  policy_docs = local.create_iam ? local.policies : {}

  policies = {
    relay = [{
      # sns:Publish also authorises sns:PublishBatch (up to 10 outbox entries a call)
      actions   = ["sns:Publish"]
      resources = [var.topic_arn]
    }]
    worker = [{
      actions = [
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
      ]
      resources = [var.queue_arn]
    }]
    events = [{
      actions   = ["sqs:GetQueueAttributes"]
      resources = [var.queue_arn, var.dlq_arn]
    }]
    ops = [
      {
        # depths (drain checks, dlq redrive's count) and the queues' ARNs (redrive)
        actions   = ["sqs:GetQueueAttributes"]
        resources = [var.queue_arn, var.dlq_arn]
      },
      {
        # peek (dlq list, reconcile) and move (redrive): what StartMessageMoveTask needs on
        # its source, and what the receive-send-delete fallback does there
        actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:StartMessageMoveTask"]
        resources = [var.dlq_arn]
      },
      {
        actions   = ["sqs:SendMessage"] # the redrive's destination
        resources = [var.queue_arn]
      },
    ]
  }
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "task" {
  for_each           = local.create_iam ? toset(local.services) : toset([])
  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "task" {
  for_each = local.policy_docs

  dynamic "statement" {
    for_each = each.value
    content {
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.policy_docs
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.task[each.key].id
  policy   = data.aws_iam_policy_document.task[each.key].json
}

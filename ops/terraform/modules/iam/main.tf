# Task roles: what each process may call on AWS, nothing more. (Each service's *execution* role,
# for the image pull, its log group and its own secrets, is in modules/ecs_service.)
#   purchase: publish to the topic (+ read its attributes for /purchase/health)
#   worker:   consume the queue, and send to it (a Celery retry goes straight back to its own
#             queue); the DLQ is reached only through the redrive policy, never sent to
#   events:   read the depth of the queue and of the DLQ (/events/health)
#   query, flower, release: no AWS API at all

locals {
  services = ["purchase", "query", "events", "worker", "flower", "release"]

  policies = {
    purchase = [{
      # sns:Publish also authorises sns:PublishBatch (group-commit publishing)
      actions   = ["sns:Publish", "sns:GetTopicAttributes"]
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
  for_each           = toset(local.services)
  name               = "${var.name}-${each.key}-task"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "task" {
  for_each = local.policies

  dynamic "statement" {
    for_each = each.value
    content {
      actions   = statement.value.actions
      resources = statement.value.resources
    }
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.policies
  name     = "${var.name}-${each.key}"
  role     = aws_iam_role.task[each.key].id
  policy   = data.aws_iam_policy_document.task[each.key].json
}

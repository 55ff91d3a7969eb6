# Alarms that need an operator: a dead letter (a ticket that could not be persisted), a ticket
# queue that is not being drained, an outbox that is not being relayed (an entry parked, the
# oldest too old, no relay running), error rates, latency. All notify the alarm topic.

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.name}-dlq-not-empty"
  alarm_description   = "A ticket message reached the DLQ: `flask --app web dlq list`, fix, then `dlq redrive` (README)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.dlq_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "oldest_message_age" {
  alarm_name          = "${var.name}-ticket-queue-oldest-message-age"
  alarm_description   = "Tickets wait in the queue: workers down, stuck or too few (see /events/health)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.oldest_message_age_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "dlq_oldest_message_age" {
  alarm_name          = "${var.name}-dlq-oldest-message-age"
  alarm_description   = "A dead letter is three days from being deleted by SQS: redrive it now (`dlq redrive` in the ops task)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = var.dlq_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.dlq_retention_seconds - 3 * 86400
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# --- the load balancer: 5xx and 503 rates (metric math over RequestCount)

locals {
  alb_dimensions = { LoadBalancer = var.alb_arn_suffix }
  namespace      = "Ticketing/${var.name}" # the metrics turned out of the services' JSON logs
}

resource "aws_cloudwatch_metric_alarm" "alb_5xx_rate" {
  alarm_name          = "${var.name}-alb-5xx-rate"
  alarm_description   = "More than ${var.error_rate_threshold_percent}% of requests answered 5xx (by the ALB or the tasks) for 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.error_rate_threshold_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "rate"
    expression  = "100 * (FILL(elb, 0) + FILL(target, 0)) / IF(requests > 0, requests, 1)"
    label       = "5xx per 100 requests"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = {
      requests = "RequestCount"
      elb      = "HTTPCode_ELB_5XX_Count"
      target   = "HTTPCode_Target_5XX_Count"
    }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/ApplicationELB"
        metric_name = metric_query.value
        dimensions  = local.alb_dimensions
        stat        = "Sum"
        period      = 60
      }
    }
  }
}

# 503: the ALB's own (no healthy task) and the purchase service's SERVICE_UNAVAILABLE /
# OUTCOME_UNKNOWN answers (Redis or its replica too slow), counted from its JSON log.
resource "aws_cloudwatch_log_metric_filter" "purchases_unavailable" {
  name           = "${var.name}-purchases-unavailable"
  log_group_name = var.purchase_log_group
  pattern        = "{ ($.outcome = \"SERVICE_UNAVAILABLE\") || ($.outcome = \"OUTCOME_UNKNOWN\") }"
  metric_transformation {
    name          = "PurchasesUnavailable"
    namespace     = local.namespace
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "alb_503_rate" {
  alarm_name          = "${var.name}-503-rate"
  alarm_description   = "More than ${var.error_rate_threshold_percent}% of requests answered 503 for 5 minutes: no healthy task, or purchases refused (see /purchase/health/deep from the ops task)."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.error_rate_threshold_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "rate"
    expression  = "100 * (FILL(elb503, 0) + FILL(purchase503, 0)) / IF(requests > 0, requests, 1)"
    label       = "503 per 100 requests"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = { requests = "RequestCount", elb503 = "HTTPCode_ELB_503_Count" }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/ApplicationELB"
        metric_name = metric_query.value
        dimensions  = local.alb_dimensions
        stat        = "Sum"
        period      = 60
      }
    }
  }

  metric_query {
    id = "purchase503"
    metric {
      namespace   = local.namespace
      metric_name = aws_cloudwatch_log_metric_filter.purchases_unavailable.metric_transformation[0].name
      stat        = "Sum"
      period      = 60
    }
  }
}

# --- a ticket_conflict row: the only trace of a 201 whose seat MySQL had already given to
# another ticket. The worker logs each persisted ticket with its outcome; CONFLICT is that row.
resource "aws_cloudwatch_log_metric_filter" "ticket_conflicts" {
  name           = "${var.name}-ticket-conflicts"
  log_group_name = var.worker_log_group
  pattern        = "{ $.outcome = \"CONFLICT\" }"
  metric_transformation {
    name          = "TicketConflicts"
    namespace     = local.namespace
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "ticket_conflict" {
  alarm_name          = "${var.name}-ticket-conflict"
  alarm_description   = "A sold ticket met a seat MySQL had given to another: a buyer holds a 201 for a seat that is not theirs. See the ticket_conflict table."
  namespace           = local.namespace
  metric_name         = aws_cloudwatch_log_metric_filter.ticket_conflicts.metric_transformation[0].name
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# --- the services' own Prometheus numbers: plumbing/emf.py writes them as embedded-metric-format
# lines on stdout (METRICS_EMF_SECONDS), the awslogs driver ships them and CloudWatch Logs turns
# them into metrics of the same namespace, dimension Service (the Procfile type), names as in
# /metrics (reference.md): counters as increases per interval (use Sum), histograms as _count,
# _sum, _p50, _p99 per task and interval (use Maximum: the slowest task).

resource "aws_cloudwatch_metric_alarm" "purchase_latency_p99" {
  alarm_name          = "${var.name}-purchase-latency-p99"
  alarm_description   = "The slowest purchase task's p99 answer time was above ${var.purchase_p99_alarm_seconds} s in 3 of 5 minutes: Redis, its replica (WAIT) or CPU (see the ${var.name} dashboard)."
  namespace           = local.namespace
  metric_name         = "ticketing_purchase_seconds_p99"
  dimensions          = { Service = "purchase" }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3 # the lines arrive every minute but not on the minute: M of N
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.purchase_p99_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

data "aws_region" "current" {}

resource "aws_cloudwatch_dashboard" "service" {
  dashboard_name = var.name
  dashboard_body = templatefile("${path.module}/dashboard.json.tftpl", {
    namespace = local.namespace
    region    = data.aws_region.current.name
  })
}

# --- the relay (the outbox → SNS). Its EMF lines (dimension Service = relay): the age of the
# oldest outbox entry (a gauge, use Maximum: the task that sees the oldest), and the entries it
# parked in the dead-letter stream after SNS kept refusing them (a counter, use Sum).

resource "aws_cloudwatch_metric_alarm" "relay_parked" {
  alarm_name          = "${var.name}-relay-parked"
  alarm_description   = "The relay parked an outbox entry SNS kept refusing: a sale whose ticket message is not on its way. The relay's log says why; the entry waits in the outbox's dead-letter stream."
  namespace           = local.namespace
  metric_name         = "ticketing_relay_parked_total"
  dimensions          = { Service = "relay" }
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching" # a counter that never moved is not sent: nothing parked
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# M of N: the lines arrive once a minute per task but not on the minute. No line at all means
# no relay task ever saw an entry wait (or none runs: relay_not_running says so).
resource "aws_cloudwatch_metric_alarm" "outbox_age" {
  alarm_name          = "${var.name}-outbox-age"
  alarm_description   = "The oldest outbox entry (a sale not yet published to SNS) was older than ${var.outbox_age_alarm_seconds} s in 2 of 3 minutes: relays stuck, SNS refusing or slow, or too few relays (max reached)."
  namespace           = local.namespace
  metric_name         = "ticketing_outbox_age_seconds"
  dimensions          = { Service = "relay" }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.outbox_age_alarm_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Running tasks from Container Insights (enabled on the cluster), not the relay's own lines: a
# relay that is down writes nothing, and its gauges are not sent until they first move. A minute
# without the metric counts as breaching (a service without tasks may report nothing), so the
# alarm also fires when the service is gone. Three minutes: a crashed task is replaced in about one.
resource "aws_cloudwatch_metric_alarm" "relay_not_running" {
  alarm_name          = "${var.name}-relay-not-running"
  alarm_description   = "No relay task ran for 3 minutes: purchases are sold in Redis but their tickets are not published (the outbox grows). See the relay service's events and log."
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = var.cluster_name, ServiceName = var.relay_service_name }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

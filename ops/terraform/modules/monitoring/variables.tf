variable "name" {
  description = "Name prefix of the alarms and the alarm topic."
  type        = string
}

variable "queue_name" {
  description = "The ticket queue (age of its oldest message is alarmed)."
  type        = string
}

variable "dlq_name" {
  description = "The dead-letter queue (any message in it is alarmed)."
  type        = string
}

variable "oldest_message_age_threshold_seconds" {
  description = "Alarm when the oldest ticket message waits longer than this."
  type        = number
}

variable "alarm_email" {
  description = "E-mail subscribed to the alarm topic; empty for none (subscribe later)."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the alarm topic (its policy lets CloudWatch use it)."
  type        = string
}

variable "dlq_retention_seconds" {
  description = "How long the DLQ keeps a message; the oldest-dead-letter alarm fires three days before SQS would delete it."
  type        = number
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (the LoadBalancer dimension of AWS/ApplicationELB)."
  type        = string
}

variable "purchase_log_group" {
  description = "Log group of the purchase service (one JSON line per purchase answer, with its outcome)."
  type        = string
}

variable "worker_log_group" {
  description = "Log group of the worker (one JSON line per persisted ticket, with its outcome)."
  type        = string
}

variable "error_rate_threshold_percent" {
  description = "Alarm when this percentage of requests (5 minutes) end in a 5xx, or purchases in a 503."
  type        = number
  default     = 1
}

variable "purchase_p99_alarm_seconds" {
  description = "Alarm when the slowest purchase task's p99 answer time (its EMF metric) is above this many seconds in 3 of 5 minutes."
  type        = number
  default     = 1
}

variable "cluster_name" {
  description = "ECS cluster of the services (ClusterName dimension of Container Insights)."
  type        = string
}

variable "relay_service_name" {
  description = "ECS service of the relay (its running task count is alarmed)."
  type        = string
}

variable "outbox_age_alarm_seconds" {
  description = "Alarm when the oldest outbox entry is older than this in 2 of 3 minutes."
  type        = number
  default     = 30
}

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

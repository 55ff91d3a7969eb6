variable "name" {
  description = "Name prefix of the roles."
  type        = string
}

variable "topic_arn" {
  description = "The ticket topic the purchase API publishes to."
  type        = string
}

variable "queue_arn" {
  description = "The ticket queue the worker consumes."
  type        = string
}

variable "dlq_arn" {
  description = "The dead-letter queue the events API reads the depth of."
  type        = string
}

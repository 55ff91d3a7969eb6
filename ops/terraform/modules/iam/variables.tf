variable "name" {
  description = "Name prefix of the roles."
  type        = string
}

variable "topic_arn" {
  description = "The ticket topic the relay publishes the outbox to."
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

variable "existing_role_arn" {
  description = "An existing role every task uses (AWS Academy Learner Lab: LabRole); empty: one least-privilege role per process type is created."
  type        = string
  default     = ""
}

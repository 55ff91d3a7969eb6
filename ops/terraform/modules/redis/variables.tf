variable "name" {
  description = "Name prefix (replication group id, secret name)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cache (two AZs)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group admitting Redis from the ECS tasks only."
  type        = string
}

variable "node_type" {
  description = "ElastiCache node type of the primary and of the replica."
  type        = string
}

variable "engine_version" {
  description = "Redis engine version."
  type        = string
}

variable "snapshot_retention_days" {
  description = "Days of daily snapshots kept."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key for data at rest and the URL secret."
  type        = string
}

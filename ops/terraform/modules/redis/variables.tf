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

variable "description" {
  description = "What the replication group holds (its AWS description)."
  type        = string
}

variable "cluster_mode_enabled" {
  description = "Redis Cluster (shards, configuration endpoint) or one primary with replicas."
  type        = bool
}

variable "num_node_groups" {
  description = "Shards, each a primary with its replicas; 1 without cluster mode."
  type        = number
  default     = 1

  validation {
    condition     = var.num_node_groups >= 1 && var.num_node_groups <= 90
    error_message = "num_node_groups must be between 1 and 90."
  }
}

variable "replicas_per_node_group" {
  description = "Replicas of each shard's primary, in other AZs; at least 1 for automatic failover and Multi-AZ."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas_per_node_group >= 1 && var.replicas_per_node_group <= 5
    error_message = "replicas_per_node_group must be between 1 (failover needs a replica) and 5."
  }
}

variable "node_type" {
  description = "ElastiCache node type of every node (primaries and replicas)."
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

variable "alarm_topic_arn" {
  description = "SNS topic the memory alarms notify."
  type        = string
}

variable "memory_alarm_percent" {
  description = "Alarm when a node's used memory passes this percentage of maxmemory (noeviction: writes are refused at 100)."
  type        = number
  default     = 80
}

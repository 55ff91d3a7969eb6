variable "name" {
  description = "Name prefix of every resource (cluster, load balancer, database, roles …)."
  type        = string
  default     = "ticketing"
}

variable "aws_region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "availability_zones" {
  description = "The two availability zones of aws_region the subnets, Aurora and Redis span."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]
}

variable "vpc_cidr" {
  description = "CIDR block of the platform's own VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "one_nat_gateway_per_az" {
  description = "One NAT gateway per AZ (tasks keep AWS API access through an AZ outage, ~$33/month more) instead of one shared."
  type        = bool
  default     = false
}

variable "messaging_prefix" {
  description = "Prefix of the SNS topic and SQS queues, as ops/local/aws_resources.py: ticket-events, ticket-sql, ticket-sql-dlq."
  type        = string
  default     = "ticket"
}

variable "image_tag" {
  description = "Tag the services run. build-and-push.sh pushes every image under its git SHA and moves this tag to it."
  type        = string
  default     = "live"
}

variable "certificate_arn" {
  description = "ACM certificate ARN for HTTPS on the ALB (and Flower's listener). Empty: plain HTTP, for a first try without a domain."
  type        = string
  default     = ""
}

variable "jwt_issuer" {
  description = "Issuer (iss) of another identity provider's tokens. Empty: a Cognito user pool is created and issues them (modules/identity)."
  type        = string
  default     = ""
}

variable "jwt_jwks_url" {
  description = "Key set URL (RS256) of that provider; required with jwt_issuer."
  type        = string
  default     = ""
  validation {
    condition     = var.jwt_jwks_url == "" || startswith(var.jwt_jwks_url, "https://")
    error_message = "jwt_jwks_url must be an https:// URL."
  }
}

variable "jwt_audience" {
  description = "The aud the other provider's tokens carry for this API (empty: not checked)."
  type        = string
  default     = "ticketing"
}

variable "flower_allowed_cidrs" {
  description = "CIDR blocks that may reach Flower's listener (e.g. your office or VPN). Empty: Flower unreachable from outside."
  type        = list(string)
  default     = []
}

variable "flower_username" {
  description = "User name of Flower's basic auth (the password is generated into Secrets Manager)."
  type        = string
  default     = "admin"
}

variable "task_sizes" {
  description = "Fargate CPU units and memory (MiB) per process type."
  type = map(object({
    cpu    = number
    memory = number
  }))
  default = {
    purchase = { cpu = 512, memory = 1024 }
    query    = { cpu = 512, memory = 1024 }
    events   = { cpu = 256, memory = 512 }
    relay    = { cpu = 256, memory = 512 }
    worker   = { cpu = 512, memory = 1024 }
    flower   = { cpu = 256, memory = 512 }
    release  = { cpu = 256, memory = 512 }
    ops      = { cpu = 256, memory = 512 }
  }
}

variable "worker_backlog_per_task_target" {
  description = "Visible ticket messages per worker task the autoscaler aims for (acceptable lag / seconds per message)."
  type        = number
  default     = 100
}

variable "db_engine_version" {
  description = "Aurora MySQL engine version (MySQL 8.0 compatible)."
  type        = string
  default     = "8.0.mysql_aurora.3.08.0"
}

variable "db_instance_class" {
  description = "Instance class of the Aurora writer and reader (Performance Insights needs db.t4g.medium or larger)."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_name" {
  description = "Database (schema) name."
  type        = string
  default     = "ticketing"
}

variable "db_master_username" {
  description = "Aurora master user name; its password is generated. The services' users are named after it: <name>_query, <name>_worker, <name>_release."
  type        = string
  default     = "ticketing"
  validation {
    # MySQL user names: at most 32 characters, and "_release" adds 8
    condition     = can(regex("^[A-Za-z0-9_]{1,24}$", var.db_master_username))
    error_message = "db_master_username must be 1-24 of [A-Za-z0-9_] (the service users append _query, _worker, _release)."
  }
}

variable "db_backup_retention_days" {
  description = "Days of Aurora automated backups (point-in-time recovery)."
  type        = number
  default     = 7
}

variable "redis_node_type" {
  description = "ElastiCache node type of every node of the seat cluster."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_num_node_groups" {
  description = "Shards of the seat cluster (events spread over them by hash tag); ElastiCache reshards online when it changes."
  type        = number
  default     = 2
}

variable "redis_replicas_per_node_group" {
  description = "Replicas of each seat-cluster shard, in other AZs (failover; the purchase path waits for one: REDIS_WAIT_REPLICAS=1)."
  type        = number
  default     = 1
  validation {
    condition     = var.redis_replicas_per_node_group >= 1
    error_message = "Every shard needs a replica: automatic failover, and the purchase path's WAIT 1."
  }
}

variable "redis_wait_timeout_ms" {
  description = "REDIS_WAIT_TIMEOUT_MS of the purchase service: how long a purchase waits for a replica to acknowledge its write (WAIT 1 <ms>, pipelined with the seat script)."
  type        = number
  default     = 50
  validation {
    condition     = var.redis_wait_timeout_ms >= 1 # WAIT with 0 blocks for ever
    error_message = "redis_wait_timeout_ms must be at least 1 (0 would make WAIT block for ever)."
  }
}

variable "monitor_redis_node_type" {
  description = "ElastiCache node type of the monitoring plane's Redis (primary + replica, no cluster mode)."
  type        = string
  default     = "cache.t4g.micro"
}

variable "redis_engine_version" {
  description = "ElastiCache Redis engine version."
  type        = string
  default     = "7.1"
}

variable "redis_snapshot_retention_days" {
  description = "Days of daily Redis snapshots kept."
  type        = number
  default     = 7
}

variable "deletion_protection" {
  description = "Protect the ALB and the Aurora cluster from deletion. Set false and apply before `terraform destroy`."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups, in days."
  type        = number
  default     = 30
}

variable "oldest_message_age_alarm_seconds" {
  description = "Alarm when the oldest ticket message has waited longer than this many seconds."
  type        = number
  default     = 300
}

variable "purchase_p99_alarm_seconds" {
  description = "Alarm when the slowest purchase task's p99 answer time is above this many seconds in 3 of 5 minutes."
  type        = number
  default     = 1
}

variable "metrics_emf_seconds" {
  description = "Seconds between the services' embedded-metric-format lines (their Prometheus numbers as CloudWatch metrics); 0 turns them off."
  type        = number
  default     = 60
  validation {
    condition     = var.metrics_emf_seconds >= 0
    error_message = "metrics_emf_seconds must be 0 (off) or a positive number of seconds."
  }
}

variable "alarm_email" {
  description = "E-mail address subscribed to the alarms (confirm the e-mail AWS sends). Empty: none."
  type        = string
  default     = ""
}

variable "existing_role_arn" {
  description = <<-EOT
    Accounts where no IAM role may be created (AWS Academy Learner Lab: the account's LabRole,
    arn:aws:iam::<account>:role/LabRole). Set: every task runs with this role as task and
    execution role, and nothing IAM is created; also left out are what needs a role or a key of
    its own: VPC flow logs (a delivery role), RDS Enhanced Monitoring (a monitoring role) and the
    customer-managed KMS key (AWS managed keys encrypt instead; the alarm topic is then
    unencrypted, as CloudWatch cannot publish to a topic under the AWS managed SNS key).
    Empty (default): least privilege, one role per process type.
  EOT
  type        = string
  default     = ""
  validation {
    condition     = var.existing_role_arn == "" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/", var.existing_role_arn))
    error_message = "existing_role_arn must be an IAM role ARN (arn:aws:iam::<account>:role/<name>) or empty."
  }
}

variable "relay_scale_out_age_seconds" {
  description = "Add a relay task while the oldest outbox entry is older than this; two while it is older than four times this."
  type        = number
  default     = 5
}

variable "relay_scale_in_age_seconds" {
  description = "Remove a relay task (down to one) after 10 minutes with the oldest outbox entry younger than this."
  type        = number
  default     = 1
}

variable "outbox_age_alarm_seconds" {
  description = "Alarm when the oldest outbox entry (a sale not yet on SNS) is older than this in 2 of 3 minutes."
  type        = number
  default     = 30
}

variable "enable_waf" {
  description = "AWS WAF on the public ALB: per-IP rate limits, operators' paths blocked, known bad inputs (about $10/month plus requests). Always off with existing_role_arn (Learner Lab may not create a web ACL)."
  type        = bool
  default     = true
}

variable "waf_rate_limit" {
  description = "Requests one client IP may send per waf_rate_window_seconds, any path, before WAF answers 429 (the default: 10 a second on average). Raise it, or set enable_waf = false, to load-test from one machine."
  type        = number
  default     = 3000
  validation {
    condition     = var.waf_rate_limit >= 10
    error_message = "waf_rate_limit must be at least 10 (WAF's minimum for a rate-based rule)."
  }
}

variable "waf_purchase_rate_limit" {
  description = "POST /purchase… requests one client IP may send per waf_rate_window_seconds before WAF answers 429 (room for a few buyers behind one NAT address)."
  type        = number
  default     = 100
  validation {
    condition     = var.waf_purchase_rate_limit >= 10
    error_message = "waf_purchase_rate_limit must be at least 10 (WAF's minimum for a rate-based rule)."
  }
}

variable "waf_rate_window_seconds" {
  description = "Window the WAF rate limits count over: 60, 120, 300 or 600 seconds."
  type        = number
  default     = 300
  validation {
    condition     = contains([60, 120, 300, 600], var.waf_rate_window_seconds)
    error_message = "waf_rate_window_seconds must be 60, 120, 300 or 600."
  }
}

variable "name" {
  description = "Process type (Procfile name); also the container name."
  type        = string
}

variable "prefix" {
  description = "Name prefix of the family, service, log group and roles."
  type        = string
}

variable "command" {
  description = "The Procfile line of this process type, verbatim; run as [\"bash\", \"-c\", command]."
  type        = string
}

variable "image" {
  description = "Image reference (repository URL and tag)."
  type        = string
}

variable "cpu" {
  description = "Task CPU units (256 = 0.25 vCPU)."
  type        = number
}

variable "memory" {
  description = "Task memory in MiB."
  type        = number
}

variable "environment" {
  description = "Plain environment variables (nothing secret)."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables taken from Secrets Manager: name => secret ARN."
  type        = map(string)
  default     = {}
}

variable "task_role_arn" {
  description = "Task role: the AWS APIs the process may call."
  type        = string
}

variable "kms_key_arn" {
  description = "KMS key of the log group and of the secrets."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the log group, in days."
  type        = number
}

variable "container_port" {
  description = "Port the container listens on; null for none (worker, release)."
  type        = number
  default     = null
}

variable "stop_timeout" {
  description = "Seconds between SIGTERM and SIGKILL (Fargate allows up to 120)."
  type        = number
  default     = 30
}

variable "create_service" {
  description = "false: task definition only, run as a one-off task (release)."
  type        = bool
  default     = true
}

variable "cluster_arn" {
  description = "ECS cluster of the service."
  type        = string
  default     = null
}

variable "cluster_name" {
  description = "ECS cluster name (autoscaling resource id and metric dimension)."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
  default     = []
}

variable "security_group_ids" {
  description = "Security groups of the tasks."
  type        = list(string)
  default     = []
}

variable "target_group_arn" {
  description = "ALB target group the service registers in; null for none."
  type        = string
  default     = null
}

variable "desired_count" {
  description = "Tasks at creation (autoscaling takes over when min_count/max_count are set)."
  type        = number
  default     = 1
}

variable "min_count" {
  description = "Autoscaling minimum; null: no autoscaling."
  type        = number
  default     = null
}

variable "max_count" {
  description = "Autoscaling maximum."
  type        = number
  default     = null
}

variable "cpu_target" {
  description = "Target average CPU utilisation in percent; null: not scaled on CPU."
  type        = number
  default     = null
}

variable "backlog_queue_name" {
  description = "SQS queue whose backlog per task drives scaling; null: not scaled on backlog."
  type        = string
  default     = null
}

variable "backlog_per_task_target" {
  description = "Target visible messages per running task."
  type        = number
  default     = null
}

variable "dependencies" {
  description = "Resources (e.g. ALB listeners) that must exist before the service."
  type        = list(string)
  default     = []
}

variable "health_check_path" {
  description = "Shallow health path the container probes itself on (container_port); null: no container health check."
  type        = string
  default     = null
}

variable "execution_role_arn" {
  description = "An existing execution role (AWS Academy Learner Lab: LabRole); null: one is created with only this task's secrets."
  type        = string
  default     = null
}

variable "age_scaling" {
  description = <<-EOT
    Step scaling on the age of the oldest waiting entry the service reports through EMF:
    namespace and metric_name of the gauge (dimension Service = name), add a task while it is
    above scale_out_above_seconds (two when more than far_above_seconds above that), remove one
    after 10 minutes below scale_in_below_seconds. null: not scaled on age.
  EOT
  type = object({
    namespace               = string
    metric_name             = string
    scale_out_above_seconds = number
    far_above_seconds       = number
    scale_in_below_seconds  = number
  })
  default = null
}

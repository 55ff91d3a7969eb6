variable "name" {
  description = "Name prefix of the load balancer and target groups."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the target groups."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets of the load balancer."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the load balancer."
  type        = string
}

variable "app_port" {
  description = "Port the web containers listen on."
  type        = number
}

variable "flower_port" {
  description = "Port of the Flower listener and container."
  type        = number
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS; empty serves plain HTTP on port 80 (first try only)."
  type        = string
}

variable "deletion_protection" {
  description = "Refuse to delete the load balancer."
  type        = bool
}

variable "idle_timeout" {
  description = "Seconds an idle connection stays open; gunicorn's keep-alive (gunicorn.conf.py) must be longer, so that the ALB, not the backend, closes idle connections."
  type        = number
  default     = 30
}

variable "waf_enabled" {
  description = "Attach a WAF web ACL (rate limits, operators' paths, known bad inputs) to the load balancer."
  type        = bool
}

variable "waf_rate_limit" {
  description = "Requests one client IP may send in waf_rate_window_seconds before WAF answers 429."
  type        = number
}

variable "waf_purchase_rate_limit" {
  description = "POST /purchase… requests one client IP may send in waf_rate_window_seconds before WAF answers 429."
  type        = number
}

variable "waf_rate_window_seconds" {
  description = "The window the WAF rate limits count over (60, 120, 300 or 600 seconds)."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key of the WAF log group (null: the AWS managed key)."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the WAF log group, in days."
  type        = number
}

variable "name" {
  description = "Name prefix for every resource."
  type        = string
}

variable "availability_zones" {
  description = "The two availability zones (names) of the subnets."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "Give exactly two availability zones."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC; split into two public and two private subnets."
  type        = string
}

variable "one_nat_gateway_per_az" {
  description = "One NAT gateway per AZ (survives an AZ outage, ~$33/month more) instead of one shared."
  type        = bool
}

variable "app_port" {
  description = "Port the web containers (gunicorn) listen on."
  type        = number
}

variable "flower_port" {
  description = "Port of the Flower listener on the ALB and of the Flower container."
  type        = number
}

variable "flower_allowed_cidrs" {
  description = "CIDR blocks allowed to reach Flower's ALB listener."
  type        = list(string)
}

variable "https_enabled" {
  description = "Whether the ALB serves HTTPS on 443 (a certificate was given)."
  type        = bool
}

variable "log_retention_days" {
  description = "Retention of the VPC flow log group, in days."
  type        = number
}

variable "kms_key_arn" {
  description = "KMS key encrypting the flow log group."
  type        = string
}

variable "flow_logs_enabled" {
  description = "VPC flow logs to CloudWatch (needs a delivery role created here); false where no role may be created."
  type        = bool
  default     = true
}

variable "name" {
  description = "Name prefix (cluster identifier, secret names)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the cluster (two AZs)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group admitting MySQL from the ECS tasks only."
  type        = string
}

variable "engine_version" {
  description = "Aurora MySQL engine version (MySQL 8.0 compatible)."
  type        = string
}

variable "instance_class" {
  description = "Instance class of the writer and of the reader."
  type        = string
}

variable "database_name" {
  description = "Schema the application uses."
  type        = string
}

variable "master_username" {
  description = "Master user name."
  type        = string
}

variable "backup_retention_days" {
  description = "Days of automated backups (point-in-time recovery window)."
  type        = number
}

variable "deletion_protection" {
  description = "Refuse to delete the cluster (set false, apply, then destroy)."
  type        = bool
}

variable "kms_key_arn" {
  description = "KMS key for storage, Performance Insights and the URL secrets."
  type        = string
}

variable "enhanced_monitoring" {
  description = "RDS Enhanced Monitoring (OS metrics every 60 s; needs a monitoring role created here); false where no role may be created."
  type        = bool
  default     = true
}

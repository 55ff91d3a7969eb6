output "key_arn" {
  description = "ARN of the platform key; null without one (every resource then uses its AWS managed key)."
  value       = var.create_key ? aws_kms_key.this[0].arn : null
}

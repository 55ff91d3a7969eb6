output "task_role_arns" {
  description = "Task role ARN per process type."
  value       = { for k, role in aws_iam_role.task : k => role.arn }
}

output "task_role_arns" {
  description = "Task role ARN per process type (all existing_role_arn when it is set)."
  value = (
    local.create_iam
    ? { for k, role in aws_iam_role.task : k => role.arn }
    : { for k in local.services : k => var.existing_role_arn }
  )
}

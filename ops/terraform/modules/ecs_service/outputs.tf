output "task_definition_family" {
  description = "Task definition family (run-task takes it and picks the latest revision)."
  value       = aws_ecs_task_definition.this.family
}

output "service_name" {
  description = "Service name; null for a one-off task definition."
  value       = var.create_service ? aws_ecs_service.this[0].name : null
}

output "log_group_name" {
  description = "Log group of the containers."
  value       = aws_cloudwatch_log_group.this.name
}

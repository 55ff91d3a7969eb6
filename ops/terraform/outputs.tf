output "alb_dns_name" {
  description = "DNS name of the load balancer."
  value       = module.alb.dns_name
}

output "base_url" {
  description = "Base URL of the API: /purchase, /query, /events."
  value       = module.alb.base_url
}

output "flower_url" {
  description = "Flower (from flower_allowed_cidrs, basic auth)."
  value       = module.alb.flower_url
}

output "aws_region" {
  description = "Region of the deployment."
  value       = var.aws_region
}

output "ecr_repository_url" {
  description = "Repository the image is pushed to."
  value       = module.ecr.repository_url
}

output "image_tag" {
  description = "Tag the task definitions run (moved by build-and-push.sh)."
  value       = var.image_tag
}

output "ecs_cluster_name" {
  description = "ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "ecs_services" {
  description = "ECS services, one per deployed Procfile process type."
  value = [
    module.purchase.service_name,
    module.query.service_name,
    module.events.service_name,
    module.relay.service_name,
    module.worker.service_name,
    module.flower.service_name,
  ]
}

output "release_task_definition" {
  description = "Family of the one-off release (migration) task."
  value       = module.release.task_definition_family
}

output "release_log_group" {
  description = "Log group of the release task."
  value       = module.release.log_group_name
}

output "ops_task_definition" {
  description = "Family of the one-off ops task (ops/scripts/ops-task.sh runs the operators' commands in it)."
  value       = module.ops.task_definition_family
}

output "ops_log_group" {
  description = "Log group of the ops task."
  value       = module.ops.log_group_name
}

output "private_subnet_ids" {
  description = "Subnets for one-off tasks (run-task)."
  value       = module.network.private_subnet_ids
}

output "ops_security_group_id" {
  description = "Security group of the one-off tasks, release and ops (run-task): Aurora, the seat cluster and HTTPS out, no ingress."
  value       = module.network.service_security_group_ids["ops"]
}

output "target_group_arns" {
  description = "ALB target groups of purchase, query, events."
  value       = module.alb.target_group_arns
}

output "ticket_topic_arn" {
  description = "TICKET_TOPIC_ARN."
  value       = module.messaging.topic_arn
}

output "ticket_queue_url" {
  description = "TICKET_QUEUE_URL."
  value       = module.messaging.queue_url
}

output "ticket_dlq_url" {
  description = "TICKET_DLQ_URL."
  value       = module.messaging.dlq_url
}

output "aurora_writer_endpoint" {
  description = "Aurora cluster (writer) endpoint."
  value       = module.aurora.writer_endpoint
}

output "aurora_reader_endpoint" {
  description = "Aurora reader endpoint."
  value       = module.aurora.reader_endpoint
}

output "redis_configuration_endpoint" {
  description = "Configuration endpoint of the seat cluster (REDIS_URL, with REDIS_CLUSTER=true)."
  value       = module.redis.endpoint
}

output "monitor_redis_endpoint" {
  description = "Primary endpoint of the monitoring plane's Redis (MONITOR_BROKER_URL)."
  value       = module.monitor_redis.endpoint
}

output "flower_basic_auth_secret_arn" {
  description = "Secret holding Flower's user:password (aws secretsmanager get-secret-value)."
  value       = aws_secretsmanager_secret.flower_basic_auth.arn
}

output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = module.monitoring.alarm_topic_arn
}

output "jwt_issuer" {
  description = "The issuer whose tokens the services accept (Cognito's, unless jwt_issuer was given)."
  value       = module.identity.issuer
}

output "cognito_user_pool_id" {
  description = "The user pool of buyers and operators (add operators to its `operator` group); empty with another provider."
  value       = module.identity.user_pool_id
}

output "cognito_client_id" {
  description = "The buyers' app client id (for the sign-in of a front end); empty with another provider."
  value       = module.identity.client_id
}

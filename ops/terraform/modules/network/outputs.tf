output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets (ALB)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Private subnets (tasks, Aurora, Redis)."
  value       = aws_subnet.private[*].id
}

output "alb_security_group_id" {
  description = "Security group of the ALB."
  value       = aws_security_group.alb.id
}

output "service_security_group_ids" {
  description = "Security group per service (purchase, query, events, relay, worker, flower, ops: the release and ops tasks)."
  value       = { for service, group in aws_security_group.service : service => group.id }
}

output "aurora_security_group_id" {
  description = "Security group of the Aurora cluster."
  value       = aws_security_group.store["aurora"].id
}

output "redis_security_group_id" {
  description = "Security group of the seat cluster (Redis)."
  value       = aws_security_group.store["redis"].id
}

output "monitor_redis_security_group_id" {
  description = "Security group of the monitoring plane's Redis."
  value       = aws_security_group.store["monitor_redis"].id
}

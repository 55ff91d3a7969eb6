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

output "tasks_security_group_id" {
  description = "Security group of every ECS task."
  value       = aws_security_group.tasks.id
}

output "relay_security_group_id" {
  description = "Security group of the relay's tasks (Redis and the AWS APIs, no ingress)."
  value       = aws_security_group.relay.id
}

output "aurora_security_group_id" {
  description = "Security group of the Aurora cluster."
  value       = aws_security_group.aurora.id
}

output "redis_security_group_id" {
  description = "Security group of the Redis replication group."
  value       = aws_security_group.redis.id
}

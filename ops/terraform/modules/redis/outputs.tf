output "primary_endpoint" {
  description = "Primary endpoint (follows failover)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "redis_url_secret_arn" {
  description = "Secret whose value is REDIS_URL."
  value       = aws_secretsmanager_secret.redis_url.arn
}

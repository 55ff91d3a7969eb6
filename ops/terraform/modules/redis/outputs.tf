output "endpoint" {
  description = "What clients connect to: the configuration endpoint in cluster mode, else the primary endpoint (both follow failover)."
  value       = local.endpoint
}

output "redis_url_secret_arn" {
  description = "Secret whose value is the rediss:// URL of this replication group (REDIS_URL or MONITOR_BROKER_URL)."
  value       = aws_secretsmanager_secret.redis_url.arn
}

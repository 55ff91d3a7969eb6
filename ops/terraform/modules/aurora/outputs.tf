output "writer_endpoint" {
  description = "Cluster (writer) endpoint."
  value       = aws_rds_cluster.this.endpoint
}

output "reader_endpoint" {
  description = "Reader endpoint (load-balanced over the readers)."
  value       = aws_rds_cluster.this.reader_endpoint
}

output "cluster_identifier" {
  description = "Cluster identifier."
  value       = aws_rds_cluster.this.cluster_identifier
}

output "admin_url_secret_arn" {
  description = "Secret whose value is DATABASE_ADMIN_URL: the master user on the writer (the release task only)."
  value       = aws_secretsmanager_secret.database_url.arn
}

output "service_users" {
  description = "The database user name per service (query, worker, release)."
  value       = local.service_users
}

output "service_url_secret_arns" {
  description = "Per service (query: the reader endpoint; worker, release: the writer), the secret holding its database URL as its own user."
  value       = { for service, secret in aws_secretsmanager_secret.service_url : service => secret.arn }
}

output "service_password_secret_arns" {
  description = "Per service, the secret holding its database user's password (read by the release task, which sets it)."
  value       = { for service, secret in aws_secretsmanager_secret.service_password : service => secret.arn }
}

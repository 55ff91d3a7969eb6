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

output "database_url_secret_arn" {
  description = "Secret whose value is DATABASE_URL (writer)."
  value       = aws_secretsmanager_secret.database_url.arn
}

output "database_read_url_secret_arn" {
  description = "Secret whose value is DATABASE_READ_URL (reader)."
  value       = aws_secretsmanager_secret.database_read_url.arn
}

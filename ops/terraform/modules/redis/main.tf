# ElastiCache Redis: the seat state, the catalog copy, worker heartbeats and the monitoring plane.
# A primary and a replica in two AZs with automatic failover. What limits loss: the replica takes
# over within about a minute when the primary fails (only writes not yet replicated are lost),
# daily snapshots, and maxmemory-policy noeviction so memory pressure refuses writes (a 503 to the
# buyer) instead of evicting sold seats. ElastiCache does not offer AOF on replication groups;
# after a total loss `flask --app web seats rebuild` restores the state from MySQL (README).
#
# In transit: TLS with an AUTH token, so the URL is rediss://:TOKEN@host:6379/0 with certificate
# checking (ssl_cert_reqs=required); it is stored whole in Secrets Manager and injected as
# REDIS_URL (and MONITOR_BROKER_URL for the worker and Flower).

resource "random_password" "auth" {
  length  = 48
  special = false # inside a URL; ElastiCache also forbids several punctuation characters
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-redis7"
  family      = "redis7"
  description = "${var.name}: never evict seat state"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "${var.name} seat state, catalog copy, heartbeats, monitoring plane"
  engine                     = "redis"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  port                       = 6379
  num_cache_clusters         = 2 # primary + one replica
  automatic_failover_enabled = true
  multi_az_enabled           = true
  parameter_group_name       = aws_elasticache_parameter_group.this.name
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [var.security_group_id]
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = true
  auth_token                 = random_password.auth.result
  snapshot_retention_limit   = var.snapshot_retention_days
  snapshot_window            = "04:00-05:00"
  auto_minor_version_upgrade = true
  apply_immediately          = false
}

resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV2_AWS_57:the value embeds the replication group's AUTH token; rotating it needs a coordinated auth_token_update_strategy change, not wired yet
  name                    = "${var.name}/redis-url"
  description             = "REDIS_URL: rediss:// URL of the Redis primary endpoint with its AUTH token"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${random_password.auth.result}@${aws_elasticache_replication_group.this.primary_endpoint_address}:6379/0?ssl_cert_reqs=required"
}

# One ElastiCache Redis replication group. The root module uses it twice:
#
# * the seat state and the catalog copy, in cluster mode (cluster_mode_enabled = true):
#   num_node_groups shards, each a primary with replicas_per_node_group replicas in other AZs.
#   Every key of an event carries the hash tag {eventId}, so each seat script runs on one shard;
#   events spread over the shards. Clients use the configuration endpoint with REDIS_CLUSTER=true;
# * the monitoring plane (Celery events and remote control for Flower, worker heartbeats) without
#   cluster mode: kombu's Redis transport does not speak Redis Cluster.
#
# Both: automatic failover to a replica in another AZ (only writes not yet replicated are lost),
# daily snapshots, and maxmemory-policy noeviction, so memory pressure refuses writes (a 503 to
# the buyer) instead of evicting sold seats. ElastiCache does not offer AOF on replication groups;
# after a loss of seat state `flask --app web seats rebuild` restores it from MySQL (README).
#
# In transit: TLS with an AUTH token, so the URL is rediss://:TOKEN@host:6379/0 with certificate
# checking (ssl_cert_reqs=required); it is stored whole in Secrets Manager and injected by ECS.
# With TLS, ElastiCache's CLUSTER SLOTS names the shards' nodes by DNS name, which the
# certificate covers, so the cluster client verifies every node it is redirected to.
#
# cluster-enabled cannot change on a running group (AWS migrates only through a "compatible"
# step): switching a stack created without cluster mode means a new group (the seat group's name
# changed with cluster mode for that reason), then `flask --app web catalog load`, which builds
# every event's seat state from MySQL.

locals {
  endpoint = (
    var.cluster_mode_enabled
    ? aws_elasticache_replication_group.this.configuration_endpoint_address
    : aws_elasticache_replication_group.this.primary_endpoint_address
  )
}

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
  description = "${var.name}: never evict; cluster mode ${var.cluster_mode_enabled ? "on" : "off"}"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }

  parameter {
    name  = "cluster-enabled"
    value = var.cluster_mode_enabled ? "yes" : "no"
  }
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = var.description
  engine                     = "redis"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  port                       = 6379
  cluster_mode               = var.cluster_mode_enabled ? "enabled" : "disabled"
  num_node_groups            = var.num_node_groups
  replicas_per_node_group    = var.replicas_per_node_group
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

  lifecycle {
    precondition {
      condition     = var.cluster_mode_enabled || var.num_node_groups == 1
      error_message = "Without cluster mode a replication group has exactly one node group."
    }
  }
}

resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV2_AWS_57:the value embeds the replication group's AUTH token; rotating it needs a coordinated auth_token_update_strategy change, not wired yet
  name                    = "${var.name}/redis-url"
  description             = "rediss:// URL of ${var.name} (${var.cluster_mode_enabled ? "configuration" : "primary"} endpoint) with its AUTH token"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${random_password.auth.result}@${local.endpoint}:6379/0?ssl_cert_reqs=required"
}

# --- memory: with noeviction a full node refuses writes (purchases answer 503), so alarm well
# before. One alarm per node; ElastiCache names them <group>-<shard 4 digits>-<node 3 digits>
# in cluster mode and <group>-<node 3 digits> without, so the names are known before apply.
locals {
  nodes_per_group = var.replicas_per_node_group + 1
  node_ids = var.cluster_mode_enabled ? [
    for pair in setproduct(range(1, var.num_node_groups + 1), range(1, local.nodes_per_group + 1)) :
    format("%s-%04d-%03d", var.name, pair[0], pair[1])
  ] : [for node in range(1, local.nodes_per_group + 1) : format("%s-%03d", var.name, node)]
}

resource "aws_cloudwatch_metric_alarm" "memory" {
  for_each            = toset(local.node_ids)
  alarm_name          = "${each.key}-memory"
  alarm_description   = "Redis node ${each.key} uses more than ${var.memory_alarm_percent}% of its memory; at 100% it refuses writes (purchases answer 503). Scale the node type or the shards."
  namespace           = "AWS/ElastiCache"
  metric_name         = "DatabaseMemoryUsagePercentage"
  dimensions          = { CacheClusterId = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.memory_alarm_percent
  treat_missing_data  = "missing"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
}

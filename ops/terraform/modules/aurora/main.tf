# Aurora MySQL: one writer, one reader in the other AZ. Every password is generated here, never
# typed. The master user is the release task's alone (DATABASE_ADMIN_URL: it creates the service
# users); each service connects as a user of its own (cli/database.py grants them):
#   query    SELECT only, on the reader endpoint (its DATABASE_READ_URL)
#   worker   SELECT, INSERT, UPDATE, DELETE on the writer (its DATABASE_URL; the ops task too)
#   release  DDL as well: migrations, catalog load (its DATABASE_URL)
# Per user, two secrets: its URL (what the service gets) and its password alone (what the
# release task sets with `flask --app web database users`). Terraform cannot reach the private
# cluster to create the users itself.

resource "random_password" "master" {
  length  = 40
  special = false # the password sits inside a URL; letters and digits need no escaping
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

resource "aws_rds_cluster_parameter_group" "this" {
  name        = "${var.name}-aurora-mysql8"
  family      = "aurora-mysql8.0"
  description = "${var.name}: TLS only, UTC, slow query log" # changing it replaces the group

  parameter {
    name  = "require_secure_transport"
    value = "ON"
  }

  parameter {
    name  = "time_zone"
    value = "UTC"
  }

  parameter {
    name  = "slow_query_log"
    value = "1"
  }

  parameter {
    name  = "long_query_time"
    value = "1"
  }

  # The slow query log reaches CloudWatch Logs only when written to a file (not a table).
  parameter {
    name  = "log_output"
    value = "FILE"
  }

  # The audit log: connections, schema changes and grants. Not every query (QUERY_DML would
  # write each purchase's insert twice over, with the buyers' data).
  parameter {
    name  = "server_audit_logging"
    value = "1"
  }

  parameter {
    name  = "server_audit_events"
    value = "CONNECT,QUERY_DDL,QUERY_DCL"
  }
}

resource "aws_rds_cluster" "this" {
  #checkov:skip=CKV_AWS_162:the tasks authenticate with the generated password from Secrets Manager; IAM auth tokens expire every 15 min and SQLAlchemy's pool does not refresh them
  #checkov:skip=CKV2_AWS_8:automated backups (backup_retention_period) and the final snapshot cover recovery; add an AWS Backup plan for cross-account copies
  #checkov:skip=CKV_AWS_326:backtrack would undo every table at once; point-in-time restore (backups) is the recovery path for this append-mostly projection
  cluster_identifier                  = var.name
  engine                              = "aurora-mysql"
  engine_version                      = var.engine_version
  database_name                       = var.database_name
  master_username                     = var.master_username
  master_password                     = random_password.master.result
  db_subnet_group_name                = aws_db_subnet_group.this.name
  db_cluster_parameter_group_name     = aws_rds_cluster_parameter_group.this.name
  vpc_security_group_ids              = [var.security_group_id]
  storage_encrypted                   = true
  kms_key_id                          = var.kms_key_arn
  backup_retention_period             = var.backup_retention_days
  preferred_backup_window             = "03:00-04:00"
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.deletion_protection
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${var.name}-final"
  iam_database_authentication_enabled = false
  # Only logs the parameter group makes MySQL write: the error log (always), the slow query
  # log and the audit log (connections, DDL, grants). No general log: every statement with its
  # values, heavy and full of buyers' data.
  enabled_cloudwatch_logs_exports = ["audit", "error", "slowquery"]
}

data "aws_iam_policy_document" "monitoring_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "monitoring" {
  count              = var.enhanced_monitoring ? 1 : 0
  name               = "${var.name}-rds-monitoring"
  assume_role_policy = data.aws_iam_policy_document.monitoring_assume.json
}

resource "aws_iam_role_policy_attachment" "monitoring" {
  count      = var.enhanced_monitoring ? 1 : 0
  role       = aws_iam_role.monitoring[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# index 0 is created first and becomes the writer; index 1 is the reader (failover target).
resource "aws_rds_cluster_instance" "this" {
  count                                 = 2
  identifier                            = "${var.name}-${count.index}"
  cluster_identifier                    = aws_rds_cluster.this.id
  engine                                = aws_rds_cluster.this.engine
  engine_version                        = aws_rds_cluster.this.engine_version
  instance_class                        = var.instance_class
  db_subnet_group_name                  = aws_db_subnet_group.this.name
  publicly_accessible                   = false
  auto_minor_version_upgrade            = true
  promotion_tier                        = count.index
  monitoring_interval                   = var.enhanced_monitoring ? 60 : 0
  monitoring_role_arn                   = var.enhanced_monitoring ? aws_iam_role.monitoring[0].arn : null
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = var.kms_key_arn
  performance_insights_retention_period = 7
}

locals {
  # TLS to Aurora (require_secure_transport=ON): PyMySQL verifies the server against the
  # Amazon RDS CA bundle the Dockerfile installs.
  url_query   = "ssl_ca=/etc/ssl/certs/rds-global-bundle.pem"
  credentials = "${var.master_username}:${random_password.master.result}"
}

resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:the value is a URL built from the cluster's master password; rotation needs a rotation Lambda that rebuilds it, not wired yet
  name                    = "${var.name}/database-admin-url"
  description             = "DATABASE_ADMIN_URL of the release task: the master user on the Aurora writer (creates the service users)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = "mysql+pymysql://${local.credentials}@${aws_rds_cluster.this.endpoint}:3306/${var.database_name}?${local.url_query}"
}

# --- the services' users

locals {
  # MySQL user names: at most 32 characters, [A-Za-z0-9_] (cli/database.py checks)
  service_users = { for service in ["query", "worker", "release"] : service => "${var.master_username}_${service}" }
  # the query API reads the reader endpoint; the others write
  service_endpoints = {
    query   = aws_rds_cluster.this.reader_endpoint
    worker  = aws_rds_cluster.this.endpoint
    release = aws_rds_cluster.this.endpoint
  }
}

resource "random_password" "service" {
  for_each = local.service_users
  length   = 40
  special  = false # inside a URL; letters and digits need no escaping
}

resource "aws_secretsmanager_secret" "service_url" {
  #checkov:skip=CKV2_AWS_57:rotate by tainting random_password.service["<service>"], applying, running the release task (ALTER USER) and redeploying the service
  for_each                = local.service_users
  name                    = "${var.name}/database-users/${each.key}/url"
  description             = "The ${each.key} service's database URL, as its own user ${each.value}"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "service_url" {
  for_each      = local.service_users
  secret_id     = aws_secretsmanager_secret.service_url[each.key].id
  secret_string = "mysql+pymysql://${each.value}:${random_password.service[each.key].result}@${local.service_endpoints[each.key]}:3306/${var.database_name}?${local.url_query}"
}

resource "aws_secretsmanager_secret" "service_password" {
  #checkov:skip=CKV2_AWS_57:rotate by tainting random_password.service["<service>"], applying, running the release task (ALTER USER) and redeploying the service
  for_each                = local.service_users
  name                    = "${var.name}/database-users/${each.key}/password"
  description             = "Password of the database user ${each.value}: read by the release task only, which sets it"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "service_password" {
  for_each      = local.service_users
  secret_id     = aws_secretsmanager_secret.service_password[each.key].id
  secret_string = random_password.service[each.key].result
}

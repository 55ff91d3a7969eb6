# The ticketing platform on AWS: one image, one ECS Fargate service per Procfile process type
# behind one ALB, Aurora MySQL (writer + reader), ElastiCache Redis (a cluster for the seat state,
# a small non-cluster group for the monitoring plane), SNS → SQS → DLQ.
# Secrets (database URLs, one database user per service, Redis URL, Flower's basic auth) are
# generated here into Secrets Manager and injected by ECS; nothing secret is in this repository.

locals {
  # Accounts where no IAM role may be created (AWS Academy Learner Lab): every task runs as the
  # existing role, and what needs a role or a key of its own is left out (see variables.tf).
  restricted_account = var.existing_role_arn != ""
  execution_role_arn = local.restricted_account ? var.existing_role_arn : null
  # Learner Lab's role may not create WAF web ACLs either: no WAF there, whatever enable_waf says.
  waf_enabled = var.enable_waf && !local.restricted_account

  app_port    = 8000 # gunicorn.conf.py: PORT, default 8000
  flower_port = 5555 # the Procfile's flower line: --port=5555
  image       = "${module.ecr.repository_url}:${var.image_tag}"

  # Every process: where the messaging is, JSON logs, and the services' own metrics as
  # embedded-metric-format lines on stdout (written by the gunicorn masters, the worker and the
  # relay; the other processes ignore it), which the awslogs driver ships and CloudWatch turns
  # into metrics (the relay's scaling and alarms read its own).
  common_environment = {
    APP_ENV             = "production" # settings.py refuses development defaults
    AWS_DEFAULT_REGION  = var.aws_region
    TICKET_TOPIC_ARN    = module.messaging.topic_arn
    TICKET_QUEUE_URL    = module.messaging.queue_url
    TICKET_DLQ_URL      = module.messaging.dlq_url
    LOG_FORMAT          = "json"
    METRICS_EMF_SECONDS = var.metrics_emf_seconds
    METRICS_NAMESPACE   = module.monitoring.metrics_namespace
  }

  # gunicorn.conf.py reads these; two workers of eight threads per 0.5 vCPU task. Tokens:
  # RS256 from the identity provider's key set (docs/security.md); an empty JWT_AUDIENCE is not
  # checked (Cognito's access tokens carry client_id, not aud).
  web_environment = merge(local.common_environment, {
    GUNICORN_WORKERS = "2"
    GUNICORN_THREADS = "8"
    JWT_ISSUER       = module.identity.issuer
    JWT_JWKS_URL     = module.identity.jwks_url
    JWT_ROLES_CLAIM  = module.identity.roles_claim
    JWT_AUDIENCE     = var.jwt_issuer == "" ? "" : var.jwt_audience
  })

  # The processes that touch the seat state (purchase; relay; events, which reads the outbox's
  # depth; release, which also runs the catalog and seats CLI commands): REDIS_URL is the
  # cluster's configuration endpoint.
  seat_state_environment = {
    REDIS_CLUSTER = "true"
  }

  # The purchase path sends `WAIT <replicas> <timeout ms>` pipelined with its seat script: a 201
  # is answered only once a replica of the shard has the sale and its outbox entry (a failover
  # to it then loses no acknowledged purchase). Every shard has a replica
  # (redis_replicas_per_node_group ≥ 1, validated); the timeout bounds what a slow replica adds
  # to a purchase.
  replica_wait_environment = {
    REDIS_WAIT_REPLICAS   = "1"
    REDIS_WAIT_TIMEOUT_MS = tostring(var.redis_wait_timeout_ms)
  }
  purchase_environment = merge(
    local.web_environment, local.seat_state_environment, local.replica_wait_environment
  )

  # The release task creates the services' database users (`flask --app web database users`,
  # cli/database.py) as the master user, then migrates as its own: their names here (nothing
  # secret), their passwords from Secrets Manager (release's secrets).
  release_environment = merge(local.common_environment, local.seat_state_environment, {
    for service, user in module.aurora.service_users : "DATABASE_${upper(service)}_USER" => user
  })

  # each service in a security group of its own (modules/network: only the flows it needs)
  tasks_network = {
    cluster_arn     = aws_ecs_cluster.this.arn
    cluster_name    = aws_ecs_cluster.this.name
    subnet_ids      = module.network.private_subnet_ids
    security_groups = module.network.service_security_group_ids
  }
}

module "kms" {
  source     = "./modules/kms"
  name       = var.name
  create_key = !local.restricted_account
}

module "network" {
  source                 = "./modules/network"
  name                   = var.name
  availability_zones     = var.availability_zones
  vpc_cidr               = var.vpc_cidr
  one_nat_gateway_per_az = var.one_nat_gateway_per_az
  app_port               = local.app_port
  flower_port            = local.flower_port
  flower_allowed_cidrs   = var.flower_allowed_cidrs
  https_enabled          = var.certificate_arn != ""
  log_retention_days     = var.log_retention_days
  kms_key_arn            = module.kms.key_arn
  flow_logs_enabled      = !local.restricted_account
}

module "identity" {
  source              = "./modules/identity"
  name                = var.name
  deletion_protection = var.deletion_protection
  external_issuer     = var.jwt_issuer
  external_jwks_url   = var.jwt_jwks_url
}

module "ecr" {
  source      = "./modules/ecr"
  name        = var.name
  kms_key_arn = module.kms.key_arn
  keep_images = 30
  # with deletion protection off (a tear-down), destroy takes the images along
  force_delete = !var.deletion_protection
}

module "messaging" {
  source = "./modules/messaging"
  prefix = var.messaging_prefix
}

module "aurora" {
  source                = "./modules/aurora"
  name                  = var.name
  subnet_ids            = module.network.private_subnet_ids
  security_group_id     = module.network.aurora_security_group_id
  engine_version        = var.db_engine_version
  instance_class        = var.db_instance_class
  database_name         = var.db_name
  master_username       = var.db_master_username
  backup_retention_days = var.db_backup_retention_days
  deletion_protection   = var.deletion_protection
  kms_key_arn           = module.kms.key_arn
  enhanced_monitoring   = !local.restricted_account
}

# The seat state, its outbox streams and the catalog copy: Redis Cluster, events spread over the
# shards by their bucket hash tag, each shard a primary and a replica in the other AZ. REDIS_URL
# of purchase, relay, release and ops.
module "redis" {
  source                  = "./modules/redis"
  name                    = "${var.name}-seats"
  description             = "${var.name} seat state and catalog copy (Redis Cluster)"
  cluster_mode_enabled    = true
  num_node_groups         = var.redis_num_node_groups
  replicas_per_node_group = var.redis_replicas_per_node_group
  subnet_ids              = module.network.private_subnet_ids
  security_group_id       = module.network.redis_security_group_id
  node_type               = var.redis_node_type
  engine_version          = var.redis_engine_version
  snapshot_retention_days = var.redis_snapshot_retention_days
  kms_key_arn             = module.kms.key_arn
  alarm_topic_arn         = module.monitoring.alarm_topic_arn
}

# The monitoring plane: Celery events and remote control (Flower), worker heartbeats and
# projection progress (/events/health). kombu's Redis transport has no cluster mode, so this is
# a primary with a replica, never the seat cluster. MONITOR_BROKER_URL of worker, flower, events.
module "monitor_redis" {
  source                  = "./modules/redis"
  name                    = "${var.name}-monitor"
  description             = "${var.name} monitoring plane: Celery events, remote control, heartbeats"
  cluster_mode_enabled    = false
  subnet_ids              = module.network.private_subnet_ids
  security_group_id       = module.network.monitor_redis_security_group_id
  node_type               = var.monitor_redis_node_type
  engine_version          = var.redis_engine_version
  snapshot_retention_days = 1 # heartbeats and events are rewritten every few seconds
  kms_key_arn             = module.kms.key_arn
  alarm_topic_arn         = module.monitoring.alarm_topic_arn
}

module "alb" {
  source              = "./modules/alb"
  name                = var.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.public_subnet_ids
  security_group_id   = module.network.alb_security_group_id
  app_port            = local.app_port
  flower_port         = local.flower_port
  certificate_arn     = var.certificate_arn
  deletion_protection = var.deletion_protection

  waf_enabled             = local.waf_enabled
  waf_rate_limit          = var.waf_rate_limit
  waf_purchase_rate_limit = var.waf_purchase_rate_limit
  waf_rate_window_seconds = var.waf_rate_window_seconds
  kms_key_arn             = module.kms.key_arn
  log_retention_days      = var.log_retention_days
}

module "iam" {
  source            = "./modules/iam"
  name              = var.name
  topic_arn         = module.messaging.topic_arn
  queue_arn         = module.messaging.queue_arn
  dlq_arn           = module.messaging.dlq_arn
  existing_role_arn = var.existing_role_arn
}

module "monitoring" {
  source                               = "./modules/monitoring"
  name                                 = var.name
  queue_name                           = module.messaging.queue_name
  dlq_name                             = module.messaging.dlq_name
  oldest_message_age_threshold_seconds = var.oldest_message_age_alarm_seconds
  dlq_retention_seconds                = module.messaging.dlq_retention_seconds
  alb_arn_suffix                       = module.alb.arn_suffix
  purchase_log_group                   = module.purchase.log_group_name
  worker_log_group                     = module.worker.log_group_name
  alarm_email                          = var.alarm_email
  kms_key_arn                          = module.kms.key_arn
  purchase_p99_alarm_seconds           = var.purchase_p99_alarm_seconds
  cluster_name                         = aws_ecs_cluster.this.name
  relay_service_name                   = module.relay.service_name
  outbox_age_alarm_seconds             = var.outbox_age_alarm_seconds
}

# --- Flower's basic auth, generated: `aws secretsmanager get-secret-value` shows it

resource "random_password" "flower" {
  length  = 32
  special = false
}

resource "aws_secretsmanager_secret" "flower_basic_auth" {
  #checkov:skip=CKV2_AWS_57:an operator password for Flower; rotate by tainting random_password.flower and applying (Flower restarts with the new value)
  name                    = "${var.name}/flower-basic-auth"
  description             = "FLOWER_BASIC_AUTH (user:password) of the Flower service"
  kms_key_id              = module.kms.key_arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "flower_basic_auth" {
  secret_id     = aws_secretsmanager_secret.flower_basic_auth.id
  secret_string = "${var.flower_username}:${random_password.flower.result}"
}

# --- ECS

resource "aws_ecs_cluster" "this" {
  name = var.name

  # Also provides RunningTaskCount for the worker's backlog-per-task scaling.
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]
}

# One module per deployed Procfile process type; `command` is the Procfile line verbatim
# (tests/test_terraform.py compares them). HCL writes "${" as "$${".
# The Procfile's `web` type (all three APIs in one process) is local only: on AWS the ALB routes.

module "purchase" {
  source             = "./modules/ecs_service"
  name               = "purchase"
  prefix             = var.name
  command            = "gunicorn --config gunicorn.conf.py \"web:create_app('purchase')\""
  image              = local.image
  cpu                = var.task_sizes["purchase"].cpu
  memory             = var.task_sizes["purchase"].memory
  task_role_arn      = module.iam.task_role_arns["purchase"]
  environment        = local.purchase_environment
  secrets            = { REDIS_URL = module.redis.redis_url_secret_arn }
  container_port     = local.app_port
  target_group_arn   = module.alb.target_group_arns["purchase"]
  health_check_path  = "/purchase/health"
  dependencies       = module.alb.listener_arns
  min_count          = 3
  max_count          = 6
  cpu_target         = 60
  stop_timeout       = 30
  execution_role_arn = local.execution_role_arn
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
  cluster_arn        = local.tasks_network.cluster_arn
  cluster_name       = local.tasks_network.cluster_name
  subnet_ids         = local.tasks_network.subnet_ids
  security_group_ids = [local.tasks_network.security_groups["purchase"]]
}

module "query" {
  source             = "./modules/ecs_service"
  name               = "query"
  prefix             = var.name
  command            = "gunicorn --config gunicorn.conf.py \"web:create_app('query')\""
  image              = local.image
  cpu                = var.task_sizes["query"].cpu
  memory             = var.task_sizes["query"].memory
  task_role_arn      = module.iam.task_role_arns["query"]
  environment        = local.web_environment
  secrets            = { DATABASE_READ_URL = module.aurora.service_url_secret_arns["query"] }
  container_port     = local.app_port
  target_group_arn   = module.alb.target_group_arns["query"]
  health_check_path  = "/query/health"
  dependencies       = module.alb.listener_arns
  min_count          = 1
  max_count          = 3
  cpu_target         = 70
  stop_timeout       = 30
  execution_role_arn = local.execution_role_arn
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
  cluster_arn        = local.tasks_network.cluster_arn
  cluster_name       = local.tasks_network.cluster_name
  subnet_ids         = local.tasks_network.subnet_ids
  security_group_ids = [local.tasks_network.security_groups["query"]]
}

module "events" {
  source        = "./modules/ecs_service"
  name          = "events"
  prefix        = var.name
  command       = "gunicorn --config gunicorn.conf.py \"web:create_app('events')\""
  image         = local.image
  cpu           = var.task_sizes["events"].cpu
  memory        = var.task_sizes["events"].memory
  task_role_arn = module.iam.task_role_arns["events"]
  environment   = merge(local.web_environment, local.seat_state_environment)
  # the seat cluster too: /events/health/deep reads the outbox's depth and oldest entry there
  secrets = {
    MONITOR_BROKER_URL = module.monitor_redis.redis_url_secret_arn
    REDIS_URL          = module.redis.redis_url_secret_arn
  }
  container_port     = local.app_port
  target_group_arn   = module.alb.target_group_arns["events"]
  health_check_path  = "/events/health"
  dependencies       = module.alb.listener_arns
  desired_count      = 1
  stop_timeout       = 30
  execution_role_arn = local.execution_role_arn
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
  cluster_arn        = local.tasks_network.cluster_arn
  cluster_name       = local.tasks_network.cluster_name
  subnet_ids         = local.tasks_network.subnet_ids
  security_group_ids = [local.tasks_network.security_groups["events"]]
}

# The outbox → SNS: reads the seat cluster's outbox streams (a consumer group), publishes their
# entries to the topic with sns:PublishBatch and deletes them once SNS has them. No port, no load
# balancer; its security group reaches the seat cluster and the AWS APIs only. Scaled on the age of the oldest waiting entry (its EMF gauge, see modules/ecs_service);
# alarms in modules/monitoring.
module "relay" {
  source             = "./modules/ecs_service"
  name               = "relay"
  prefix             = var.name
  command            = "python -m relay"
  image              = local.image
  cpu                = var.task_sizes["relay"].cpu
  memory             = var.task_sizes["relay"].memory
  task_role_arn      = module.iam.task_role_arns["relay"]
  environment        = merge(local.common_environment, local.seat_state_environment)
  secrets            = { REDIS_URL = module.redis.redis_url_secret_arn }
  min_count          = 1
  max_count          = 4
  stop_timeout       = 30 # the batch in flight is published and acknowledged, then it exits
  execution_role_arn = local.execution_role_arn
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
  cluster_arn        = local.tasks_network.cluster_arn
  cluster_name       = local.tasks_network.cluster_name
  subnet_ids         = local.tasks_network.subnet_ids
  security_group_ids = [local.tasks_network.security_groups["relay"]]
  age_scaling = {
    namespace               = module.monitoring.metrics_namespace
    metric_name             = "ticketing_outbox_age_seconds" # the relay's gauge, as EMF names it
    scale_out_above_seconds = var.relay_scale_out_age_seconds
    far_above_seconds       = 3 * var.relay_scale_out_age_seconds # above the threshold: 4 × in all
    scale_in_below_seconds  = var.relay_scale_in_age_seconds
  }
}

module "worker" {
  source        = "./modules/ecs_service"
  name          = "worker"
  prefix        = var.name
  command       = "celery --app tasks worker --loglevel INFO --pool threads --concurrency 20 --without-gossip --without-mingle"
  image         = local.image
  cpu           = var.task_sizes["worker"].cpu
  memory        = var.task_sizes["worker"].memory
  task_role_arn = module.iam.task_role_arns["worker"]
  environment   = local.common_environment
  secrets = {
    DATABASE_URL       = module.aurora.service_url_secret_arns["worker"]
    MONITOR_BROKER_URL = module.monitor_redis.redis_url_secret_arn
  }
  min_count               = 1
  max_count               = 3
  backlog_queue_name      = module.messaging.queue_name
  backlog_per_task_target = var.worker_backlog_per_task_target
  # Warm shutdown: running tasks finish; unacked messages return after the visibility timeout.
  stop_timeout       = 120
  execution_role_arn = local.execution_role_arn
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
  cluster_arn        = local.tasks_network.cluster_arn
  cluster_name       = local.tasks_network.cluster_name
  subnet_ids         = local.tasks_network.subnet_ids
  security_group_ids = [local.tasks_network.security_groups["worker"]]
}

# Flower keeps up to --max_tasks tasks in memory, a few KiB each: the bound is sized to the task's
# memory (task_sizes.flower) with room for its pages; change them together.
module "flower" {
  source        = "./modules/ecs_service"
  name          = "flower"
  prefix        = var.name
  command       = "celery --app tasks --broker $${MONITOR_BROKER_URL:-redis://127.0.0.1:6379/0} flower --port=5555 --max_tasks=25000"
  image         = local.image
  cpu           = var.task_sizes["flower"].cpu
  memory        = var.task_sizes["flower"].memory
  task_role_arn = module.iam.task_role_arns["flower"]
  environment   = local.common_environment
  secrets = {
    MONITOR_BROKER_URL = module.monitor_redis.redis_url_secret_arn
    FLOWER_BASIC_AUTH  = aws_secretsmanager_secret.flower_basic_auth.arn
  }
  container_port     = local.flower_port
  target_group_arn   = module.alb.flower_target_group_arn
  dependencies       = module.alb.listener_arns
  desired_count      = 1
  stop_timeout       = 10
  execution_role_arn = local.execution_role_arn
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
  cluster_arn        = local.tasks_network.cluster_arn
  cluster_name       = local.tasks_network.cluster_name
  subnet_ids         = local.tasks_network.subnet_ids
  security_group_ids = [local.tasks_network.security_groups["flower"]]
}

# A one-off task, no service: build-and-push.sh runs it (`aws ecs run-task`) and waits for it
# before the services roll. It creates or updates the services' database users as the master
# user (DATABASE_ADMIN_URL), then migrates as its own user. REDIS_URL (the seat cluster) too, so the same definition runs
# `flask --app web catalog load` (ops/scripts/ops-task.sh --task release -- flask --app web
# catalog load), which needs MySQL and Redis and no AWS API.
module "release" {
  source         = "./modules/ecs_service"
  name           = "release"
  prefix         = var.name
  command        = "flask --app web database users && alembic upgrade head"
  create_service = false
  image          = local.image
  cpu            = var.task_sizes["release"].cpu
  memory         = var.task_sizes["release"].memory
  task_role_arn  = module.iam.task_role_arns["release"]
  environment    = local.release_environment
  secrets = {
    DATABASE_ADMIN_URL        = module.aurora.admin_url_secret_arn
    DATABASE_URL              = module.aurora.service_url_secret_arns["release"]
    DATABASE_QUERY_PASSWORD   = module.aurora.service_password_secret_arns["query"]
    DATABASE_WORKER_PASSWORD  = module.aurora.service_password_secret_arns["worker"]
    DATABASE_RELEASE_PASSWORD = module.aurora.service_password_secret_arns["release"]
    REDIS_URL                 = module.redis.redis_url_secret_arn
  }
  stop_timeout       = 30
  execution_role_arn = local.execution_role_arn
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
}

# The operators' way into the VPC: a one-off task definition, no service, for the commands that
# need the database, the seat cluster and the queues: `seats rebuild|reconcile`, `dlq
# list|redrive`. ops/scripts/ops-task.sh runs one (`aws ecs run-task` with the command as an
# override), waits for it and prints its exit status and its log. Its role (modules/iam: ops)
# reads the queues' depths and moves dead letters back, nothing else. The default command only
# lists the commands.
module "ops" {
  source             = "./modules/ecs_service"
  name               = "ops"
  prefix             = var.name
  command            = "flask --app web --help"
  create_service     = false
  image              = local.image
  cpu                = var.task_sizes["ops"].cpu
  memory             = var.task_sizes["ops"].memory
  task_role_arn      = module.iam.task_role_arns["ops"]
  execution_role_arn = local.execution_role_arn
  environment        = merge(local.common_environment, local.seat_state_environment)
  # the worker's database user: the commands read and rewrite rows, never the schema
  secrets = {
    DATABASE_URL = module.aurora.service_url_secret_arns["worker"]
    REDIS_URL    = module.redis.redis_url_secret_arn
  }
  stop_timeout       = 30
  kms_key_arn        = module.kms.key_arn
  log_retention_days = var.log_retention_days
}

# One Procfile process type on Fargate: log group, execution role (image pull, its log group and
# only its own secrets), task definition, and — unless it is a one-off (release) — a service with
# optional autoscaling.
#
# The container runs ["bash", "-c", <Procfile line>]: the same command as the Procfile, with the
# same shell expansion (${MONITOR_BROKER_URL:-...}). bash, not sh: Debian's dash stays in front of
# the command as its parent and never passes SIGTERM on, so ECS's stop would end in a SIGKILL;
# bash execs a single command, so gunicorn or celery receives SIGTERM and shuts down warm
# (tests/test_terraform.py checks the command against the Procfile).

data "aws_region" "current" {}

locals {
  family    = "${var.prefix}-${var.name}"
  log_group = "/${var.prefix}/ecs/${var.name}"
  ports     = var.container_port == null ? [] : [var.container_port]
  scaled    = var.create_service && var.min_count != null
  # an existing role (Learner Lab's LabRole) instead of one created here
  create_role = var.execution_role_arn == null

  # The container's own probe: the shallow health endpoint (the process answers), the same
  # path as the ALB's. No curl in the slim image; python is there.
  health_check = var.health_check_path == null ? null : {
    command = [
      "CMD", "python", "-c",
      "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${coalesce(var.container_port, 0)}${var.health_check_path}', timeout=4)",
    ]
    interval    = 15
    timeout     = 5
    retries     = 3
    startPeriod = 30
  }
}

resource "aws_cloudwatch_log_group" "this" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  #checkov:skip=CKV_AWS_338:retention is var.log_retention_days (30 by default); raise it to 365 where compliance asks for a year
}

# --- execution role: what ECS itself needs to start this task

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  count              = local.create_role ? 1 : 0
  name               = "${local.family}-execution"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

# ECR pull (ecr:GetAuthorizationToken has no resource scope) and CloudWatch Logs.
resource "aws_iam_role_policy_attachment" "execution" {
  count      = local.create_role ? 1 : 0
  role       = aws_iam_role.execution[0].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "secrets" {
  count = local.create_role && length(var.secrets) > 0 ? 1 : 0

  statement {
    sid       = "OwnSecretsOnly"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = distinct(values(var.secrets))
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptSecretsAndImage"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role_policy" "secrets" {
  count  = local.create_role && length(var.secrets) > 0 ? 1 : 0
  name   = "${local.family}-secrets"
  role   = aws_iam_role.execution[0].id
  policy = data.aws_iam_policy_document.secrets[0].json
}

# --- task definition

resource "aws_ecs_task_definition" "this" {
  family                   = local.family
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = local.create_role ? aws_iam_role.execution[0].arn : var.execution_role_arn
  task_role_arn            = var.task_role_arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root filesystem is read-only; /tmp (gunicorn's heartbeat files, Prometheus
  # multi-process samples) is a task-local scratch volume.
  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = var.name
    image                  = var.image
    essential              = true
    command                = ["bash", "-c", var.command]
    readonlyRootFilesystem = true
    stopTimeout            = var.stop_timeout
    linuxParameters        = { initProcessEnabled = true }
    portMappings           = [for port in local.ports : { containerPort = port, protocol = "tcp" }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    healthCheck            = local.health_check
    environment            = [for key in sort(keys(var.environment)) : { name = key, value = var.environment[key] }]
    secrets                = [for key in sort(keys(var.secrets)) : { name = key, valueFrom = var.secrets[key] }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = var.name
      }
    }
  }])
}

# --- service

resource "aws_ecs_service" "this" {
  count                              = var.create_service ? 1 : 0
  name                               = var.name
  cluster                            = var.cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = local.scaled ? var.min_count : var.desired_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  enable_ecs_managed_tags            = true
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.target_group_arn == null ? null : 60

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = var.target_group_arn == null ? [] : [var.target_group_arn]
    content {
      target_group_arn = load_balancer.value
      container_name   = var.name
      container_port   = var.container_port
    }
  }

  # Autoscaling owns the task count once the service exists.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [terraform_data.dependencies]
}

resource "terraform_data" "dependencies" {
  input = var.dependencies
}

# --- autoscaling

resource "aws_appautoscaling_target" "this" {
  count              = local.scaled ? 1 : 0
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this[0].name}"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "cpu" {
  count              = local.scaled && var.cpu_target != null ? 1 : 0
  name               = "${local.family}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.this[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target
    scale_in_cooldown  = 120
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# Backlog per task = visible messages / running tasks, tracked to a target (metric math in a
# customized metric). Better than CPU for a consumer: the worker mostly waits on MySQL, so its
# CPU stays low while the queue grows; the backlog says directly how far behind it is. Target
# tracking (not step scaling) adds and removes tasks in proportion and needs no thresholds.
# RunningTaskCount comes from Container Insights (enabled on the cluster).
resource "aws_appautoscaling_policy" "backlog" {
  count              = local.scaled && var.backlog_queue_name != null ? 1 : 0
  name               = "${local.family}-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.this[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.backlog_per_task_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "messages visible in the queue"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"
            dimensions {
              name  = "QueueName"
              value = var.backlog_queue_name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "running worker tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = var.cluster_name
            }
            dimensions {
              name  = "ServiceName"
              value = var.name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_task"
        label       = "visible messages per running task"
        expression  = "visible / IF(tasks > 0, tasks, 1)"
        return_data = true
      }
    }
  }
}

# Age scaling (the relay): step scaling on the age of the oldest waiting entry, as the service
# reports it in its EMF lines (namespace age_scaling.namespace, dimension Service = the Procfile
# type, the series with every other label added up). Steps, not target tracking: an age does
# not fall in proportion to the tasks (it is near 0 whenever they keep up, however many there
# are), so target tracking would ask for current × age / target tasks, jump to the maximum at
# the first backlog and drop to the minimum as soon as it is drained. Here a task is added while
# the age stays above the scale-out threshold (two while it is far above), and one is removed
# after ten quiet minutes, one at a time, so the count settles where the relays keep up.
# Autoscaling repeats a step policy every minute its alarm stays in ALARM, after the cooldown.
locals {
  age_scaled = local.scaled && var.age_scaling != null
}

resource "aws_appautoscaling_policy" "age_out" {
  count              = local.age_scaled ? 1 : 0
  name               = "${local.family}-age-out"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.this[0].resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 120 # a new task starts and drains for a minute before the next step
    metric_aggregation_type = "Maximum"

    # bounds are relative to the alarm's threshold (the scale-out age)
    step_adjustment {
      metric_interval_lower_bound = 0
      metric_interval_upper_bound = var.age_scaling.far_above_seconds
      scaling_adjustment          = 1
    }
    step_adjustment {
      metric_interval_lower_bound = var.age_scaling.far_above_seconds
      scaling_adjustment          = 2
    }
  }
}

resource "aws_appautoscaling_policy" "age_in" {
  count              = local.age_scaled ? 1 : 0
  name               = "${local.family}-age-in"
  policy_type        = "StepScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.this[0].resource_id

  step_scaling_policy_configuration {
    adjustment_type         = "ChangeInCapacity"
    cooldown                = 300
    metric_aggregation_type = "Maximum"

    step_adjustment {
      metric_interval_upper_bound = 0
      scaling_adjustment          = -1
    }
  }
}

# The EMF lines arrive once per METRICS_EMF_SECONDS per task, not on the minute, so a minute may
# have none: scale out on 1 of the last 2 minutes above the threshold; a minute without any line
# counts as "not above" (a gauge that never moved is not sent at all: nothing ever waited).
resource "aws_cloudwatch_metric_alarm" "age_high" {
  count               = local.age_scaled ? 1 : 0
  alarm_name          = "${local.family}-age-scale-out"
  alarm_description   = "Scales ${var.name} out: its oldest waiting entry is older than ${var.age_scaling.scale_out_above_seconds} s."
  namespace           = var.age_scaling.namespace
  metric_name         = var.age_scaling.metric_name
  dimensions          = { Service = var.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  datapoints_to_alarm = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.age_scaling.scale_out_above_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_appautoscaling_policy.age_out[0].arn]
}

# Scale in after ten minutes below the scale-in age; a minute without any line counts as quiet
# (no task has had anything waiting since it started).
resource "aws_cloudwatch_metric_alarm" "age_low" {
  count               = local.age_scaled ? 1 : 0
  alarm_name          = "${local.family}-age-scale-in"
  alarm_description   = "Scales ${var.name} in: its oldest waiting entry stayed younger than ${var.age_scaling.scale_in_below_seconds} s for 10 minutes."
  namespace           = var.age_scaling.namespace
  metric_name         = var.age_scaling.metric_name
  dimensions          = { Service = var.name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 10
  datapoints_to_alarm = 10
  comparison_operator = "LessThanThreshold"
  threshold           = var.age_scaling.scale_in_below_seconds
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_appautoscaling_policy.age_in[0].arn]
}

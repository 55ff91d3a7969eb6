# A VPC of its own over two AZs: public subnets hold only the ALB and the NAT gateway(s); the
# tasks, Aurora and Redis live in private subnets. Security groups: only the ALB is public,
# only the ECS tasks reach Aurora and Redis (the relay, in a group of its own, Redis only).

# The two zones are named, not "the first two available": a zone changing state or AWS adding
# one must never move (recreate) the subnets.
data "aws_availability_zones" "selected" {
  filter {
    name   = "zone-name"
    values = var.availability_zones
  }
}


locals {
  azs          = data.aws_availability_zones.selected.names
  nat_count    = var.one_nat_gateway_per_az ? 2 : 1
  https_ports  = var.https_enabled ? { http = 80, https = 443 } : { http = 80 }
  flower_cidrs = { for cidr in var.flower_allowed_cidrs : cidr => cidr }
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = { Name = var.name }
}

# No rule at all: nothing may use the default security group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = var.name }
}

resource "aws_subnet" "public" {
  count                   = 2
  vpc_id                  = aws_vpc.this.id
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, count.index)
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = false # the ALB and NAT gateways get their addresses explicitly

  tags = { Name = "${var.name}-public-${local.azs[count.index]}", Tier = "public" }
}

resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, count.index + 10)
  availability_zone = local.azs[count.index]

  tags = { Name = "${var.name}-private-${local.azs[count.index]}", Tier = "private" }
}

resource "aws_eip" "nat" {
  count  = local.nat_count
  domain = "vpc"
  tags   = { Name = "${var.name}-nat-${count.index}" }
}

resource "aws_nat_gateway" "this" {
  count         = local.nat_count
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = { Name = "${var.name}-${count.index}" }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-public" }
}

resource "aws_route" "public_internet" {
  route_table_id         = aws_route_table.public.id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this.id
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "private" {
  count  = 2
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-private-${local.azs[count.index]}" }
}

# Tasks reach ECR, SNS, SQS, Secrets Manager and CloudWatch through the NAT gateway.
resource "aws_route" "private_nat" {
  count                  = 2
  route_table_id         = aws_route_table.private[count.index].id
  destination_cidr_block = "0.0.0.0/0"
  nat_gateway_id         = aws_nat_gateway.this[var.one_nat_gateway_per_az ? count.index : 0].id
}

resource "aws_route_table_association" "private" {
  count          = 2
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# --- VPC flow logs (rejected and accepted traffic) to CloudWatch. Delivery needs a role of its
# own; where no role may be created (flow_logs_enabled = false) there are none.

resource "aws_cloudwatch_log_group" "flow" {
  count             = var.flow_logs_enabled ? 1 : 0
  name              = "/${var.name}/vpc-flow-logs"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  #checkov:skip=CKV_AWS_338:retention is var.log_retention_days (30 by default); raise it to 365 where compliance asks for a year
}

data "aws_iam_policy_document" "flow_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "flow" {
  count              = var.flow_logs_enabled ? 1 : 0
  name               = "${var.name}-vpc-flow-logs"
  assume_role_policy = data.aws_iam_policy_document.flow_assume.json
}

data "aws_iam_policy_document" "flow" {
  count = var.flow_logs_enabled ? 1 : 0
  statement {
    actions = [
      "logs:CreateLogStream",
      "logs:PutLogEvents",
      "logs:DescribeLogStreams",
    ]
    resources = ["${aws_cloudwatch_log_group.flow[0].arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow" {
  count  = var.flow_logs_enabled ? 1 : 0
  name   = "write-flow-logs"
  role   = aws_iam_role.flow[0].id
  policy = data.aws_iam_policy_document.flow[0].json
}

resource "aws_flow_log" "this" {
  count           = var.flow_logs_enabled ? 1 : 0
  vpc_id          = aws_vpc.this.id
  traffic_type    = "ALL"
  log_destination = aws_cloudwatch_log_group.flow[0].arn
  iam_role_arn    = aws_iam_role.flow[0].arn
}

# --- Security groups

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:attached outside this module (module.alb: aws_lb.this); checkov does not follow module outputs into the root module
  name        = "${var.name}-alb"
  description = "Public load balancer: HTTP(S) from anywhere, Flower from the allowed CIDRs"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "alb_public" {
  for_each          = local.https_ports
  security_group_id = aws_security_group.alb.id
  description       = "${upper(each.key)} from the internet"
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
  cidr_ipv4         = "0.0.0.0/0"
  #checkov:skip=CKV_AWS_260:the ALB is the platform's public entry point; port 80 only redirects to HTTPS once certificate_arn is set
}

resource "aws_vpc_security_group_ingress_rule" "alb_flower" {
  for_each          = local.flower_cidrs
  security_group_id = aws_security_group.alb.id
  description       = "Flower from an operator network"
  ip_protocol       = "tcp"
  from_port         = var.flower_port
  to_port           = var.flower_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_web" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the web tasks"
  ip_protocol                  = "tcp"
  from_port                    = var.app_port
  to_port                      = var.app_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "alb_to_flower" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the Flower task"
  ip_protocol                  = "tcp"
  from_port                    = var.flower_port
  to_port                      = var.flower_port
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:attached outside this module (every ECS service and the release task); checkov does not follow module outputs into the root module
  name        = "${var.name}-tasks"
  description = "ECS tasks: reachable from the ALB only"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb_web" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "gunicorn from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.app_port
  to_port                      = var.app_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb_flower" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Flower from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = var.flower_port
  to_port                      = var.flower_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "AWS APIs (ECR, SNS, SQS, Secrets Manager, CloudWatch) through the NAT gateway"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_aurora" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "MySQL to Aurora"
  ip_protocol                  = "tcp"
  from_port                    = 3306
  to_port                      = 3306
  referenced_security_group_id = aws_security_group.aurora.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_to_redis" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "Redis to ElastiCache"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id
}

resource "aws_security_group" "aurora" {
  #checkov:skip=CKV2_AWS_5:attached outside this module (module.aurora: aws_rds_cluster.this); checkov does not follow module outputs into the root module
  name        = "${var.name}-aurora"
  description = "Aurora MySQL: from the ECS tasks only"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "aurora_from_tasks" {
  security_group_id            = aws_security_group.aurora.id
  description                  = "MySQL from the ECS tasks"
  ip_protocol                  = "tcp"
  from_port                    = 3306
  to_port                      = 3306
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_security_group" "redis" {
  #checkov:skip=CKV2_AWS_5:attached outside this module (module.redis: aws_elasticache_replication_group.this); checkov does not follow module outputs into the root module
  name        = "${var.name}-redis"
  description = "ElastiCache Redis: from the ECS tasks only"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_tasks" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the ECS tasks"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.tasks.id
}

# The relay (the outbox → SNS) serves nothing: no ingress at all, its own group so that nothing
# else can reach it and it can reach only Redis and the AWS APIs (no Aurora).
resource "aws_security_group" "relay" {
  #checkov:skip=CKV2_AWS_5:attached outside this module (module.relay's ECS service); checkov does not follow module outputs into the root module
  name        = "${var.name}-relay"
  description = "The outbox relay: no ingress; Redis and the AWS APIs out"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_egress_rule" "relay_https" {
  security_group_id = aws_security_group.relay.id
  description       = "AWS APIs (SNS, ECR, Secrets Manager, CloudWatch) through the NAT gateway"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "relay_to_redis" {
  security_group_id            = aws_security_group.relay.id
  description                  = "Redis to ElastiCache (the outbox streams)"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.redis.id
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_relay" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis from the outbox relay"
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
  referenced_security_group_id = aws_security_group.relay.id
}

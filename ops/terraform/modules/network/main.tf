# A VPC of its own over two AZs: public subnets hold only the ALB and the NAT gateway(s); the
# tasks, Aurora and Redis live in private subnets. Security groups: only the ALB is public; one
# group per service, each reaching only the stores it uses (see "Security groups" below).

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

# --- Security groups: one per service, each with only the connections it needs
#
#   service    ingress             out to (besides HTTPS 443 to the AWS APIs through the NAT)
#   purchase   app_port: ALB, ops  seat Redis
#   query      app_port: ALB, ops  Aurora (the reader endpoint)
#   events     app_port: ALB, ops  seat Redis (the outbox's depth), monitoring Redis
#   relay      none                seat Redis
#   worker     none                Aurora, monitoring Redis
#   flower     flower_port: ALB    monitoring Redis
#   ops        none                Aurora, seat Redis, the web services' app_port (the release
#                                  and ops one-off tasks; operators read …/metrics and
#                                  …/health/deep from there, which the ALB does not route)
#
# Every task needs 443: Fargate pulls the image, reads its secrets and ships its logs through the
# task's own network interface. Aurora and each Redis admit exactly the groups listed above.

locals {
  services = ["purchase", "query", "events", "relay", "worker", "flower", "ops"]
  # the services the ALB forwards to, and on which port
  alb_targets = {
    purchase = var.app_port
    query    = var.app_port
    events   = var.app_port
    flower   = var.flower_port
  }
  # the services the operators' one-off task reaches directly (…/metrics, …/health/deep)
  ops_targets = {
    purchase = var.app_port
    query    = var.app_port
    events   = var.app_port
  }
  # each data store, its port and the services that reach it
  stores = {
    aurora = { port = 3306, clients = ["query", "worker", "ops"], description = "MySQL" }
    redis  = { port = 6379, clients = ["purchase", "events", "relay", "ops"], description = "Redis (seat cluster)" }
    monitor_redis = {
      port = 6379, clients = ["events", "worker", "flower"], description = "Redis (monitoring plane)"
    }
  }
  store_flows = merge([
    for store, spec in local.stores : {
      for client in spec.clients : "${client}-${store}" => {
        client = client, store = store, port = spec.port, description = spec.description
      }
    }
  ]...)
}

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

resource "aws_vpc_security_group_egress_rule" "alb_to_service" {
  for_each                     = local.alb_targets
  security_group_id            = aws_security_group.alb.id
  description                  = "To the ${each.key} tasks"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.service[each.key].id
}

resource "aws_security_group" "service" {
  #checkov:skip=CKV2_AWS_5:attached outside this module (the ECS services, the release and ops tasks); checkov does not follow module outputs into the root module
  for_each    = toset(local.services)
  name        = "${var.name}-${each.key}"
  description = "The ${each.key} tasks: only the connections they need"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "service_from_alb" {
  for_each                     = local.alb_targets
  security_group_id            = aws_security_group.service[each.key].id
  description                  = "${each.key} from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_egress_rule" "ops_to_service" {
  for_each                     = local.ops_targets
  security_group_id            = aws_security_group.service["ops"].id
  description                  = "Operators to the ${each.key} tasks (metrics, deep health)"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.service[each.key].id
}

resource "aws_vpc_security_group_ingress_rule" "service_from_ops" {
  for_each                     = local.ops_targets
  security_group_id            = aws_security_group.service[each.key].id
  description                  = "${each.key} from the operators' one-off task"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.service["ops"].id
}

resource "aws_vpc_security_group_egress_rule" "service_https" {
  for_each          = toset(local.services)
  security_group_id = aws_security_group.service[each.key].id
  description       = "AWS APIs (ECR, Secrets Manager, CloudWatch, SNS, SQS) through the NAT gateway"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "service_to_store" {
  for_each                     = local.store_flows
  security_group_id            = aws_security_group.service[each.value.client].id
  description                  = "${each.value.description} to ${each.value.store}"
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  referenced_security_group_id = aws_security_group.store[each.value.store].id
}

resource "aws_security_group" "store" {
  #checkov:skip=CKV2_AWS_5:attached outside this module (module.aurora, module.redis, module.monitor_redis); checkov does not follow module outputs into the root module
  for_each    = local.stores
  name        = "${var.name}-${replace(each.key, "_", "-")}"
  description = "${each.value.description}: from ${join(", ", each.value.clients)} only"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "store_from_service" {
  for_each                     = local.store_flows
  security_group_id            = aws_security_group.store[each.value.store].id
  description                  = "${each.value.description} from ${each.value.client}"
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  referenced_security_group_id = aws_security_group.service[each.value.client].id
}

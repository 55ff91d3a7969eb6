# One public ALB. Path rules send /purchase*, /query*, /events* to their own target group (each
# health-checked on its service's shallow health endpoint: the process answers, no dependency
# is called, so a slow SNS or a dead worker never makes ECS replace healthy tasks), and the
# buyer page /shop* to the purchase service's; anything
# else gets a problem-details 404 body, and so do the operators' endpoints (`…/health/deep`,
# `…/metrics`), which are not for the internet. Its Content-Type is application/json: an ALB
# fixed response allows only text/plain, text/css, text/html, application/javascript and
# application/json, so application/problem+json would fail `terraform apply`.
# Flower has a listener of its own on flower_port, reachable only from var.flower_allowed_cidrs
# (security group) and protected by Flower's basic auth (FLOWER_BASIC_AUTH from Secrets Manager).
# With certificate_arn set, 443 serves HTTPS, 80 redirects, and Flower's listener is HTTPS too.
# In front of it all, unless var.waf_enabled is false: a WAF web ACL (waf.tf) with per-IP rate
# limits and the operators' endpoints blocked in their URL-encoded forms too.

locals {
  https = var.certificate_arn != ""

  routes = {
    purchase = { path_pattern = "/purchase*", health_path = "/purchase/health", priority = 10 }
    query    = { path_pattern = "/query*", health_path = "/query/health", priority = 20 }
    events   = { path_pattern = "/events*", health_path = "/events/health", priority = 30 }
  }

  # Pages served by one of the services above: the buyer page (/shop/, its files) comes from
  # the purchase service, behind the same target group.
  pages = {
    shop = { path_pattern = "/shop*", service = "purchase", priority = 40 }
  }

  # Operators' endpoints, answered 404 at the ALB (they are reached from inside the VPC: the
  # ops task, the metrics emitter); checked before the routes.
  # With WAF on (waf.tf), the same suffixes are blocked after URL-decoding too.
  internal_suffixes = ["/health/deep", "/metrics"]
  internal_paths    = ["/*/health/deep", "/*/metrics"]
  internal_priority = 1

  tls_policy = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:request logs come from gunicorn's access log in CloudWatch Logs; ALB access logs would need an S3 bucket of their own
  #checkov:skip=CKV2_AWS_76:the web ACL (waf.tf) runs AWSManagedRulesKnownBadInputsRuleSet (the Log4j rules); AnonymousIpList, which this check also wants, is left out: it would refuse buyers behind VPNs and cloud proxies
  #checkov:skip=CKV2_AWS_20:port 80 redirects to HTTPS (aws_lb_listener.http_redirect) whenever certificate_arn is set; checkov cannot evaluate that count
  name                       = var.name
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.subnet_ids
  security_groups            = [var.security_group_id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = var.idle_timeout # gunicorn's keep-alive must be longer
}

resource "aws_lb_target_group" "web" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; ALB → task traffic stays inside the VPC's private subnets, behind the tasks' security group
  for_each             = local.routes
  name                 = "${var.name}-${each.key}"
  port                 = var.app_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30 # gunicorn's request timeout: the slowest request finishes

  health_check {
    path                = each.value.health_path
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_target_group" "flower" {
  name                 = "${var.name}-flower"
  port                 = var.flower_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 10

  health_check {
    path    = "/healthcheck" # Flower's only page outside basic auth
    matcher = "200"
  }
}

locals {
  not_found = {
    content_type = "application/json"
    message_body = jsonencode({ type = "about:blank", title = "Not Found", status = 404, code = "NOT_FOUND" })
    status_code  = "404"
  }
}

# Without a certificate: plain HTTP on 80 carries the API.
resource "aws_lb_listener" "http" {
  count             = local.https ? 0 : 1
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"
  #checkov:skip=CKV_AWS_2:exists only while certificate_arn is empty (a first try without a domain); with a certificate, 443 serves HTTPS and http_redirect replaces this listener
  #checkov:skip=CKV_AWS_103:plain HTTP listener, see CKV_AWS_2

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      message_body = local.not_found.message_body
      status_code  = local.not_found.status_code
    }
  }
}

resource "aws_lb_listener" "http_redirect" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "https" {
  count             = local.https ? 1 : 0
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = local.tls_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      message_body = local.not_found.message_body
      status_code  = local.not_found.status_code
    }
  }
}

locals {
  api_listener_arn = local.https ? aws_lb_listener.https[0].arn : aws_lb_listener.http[0].arn
}

resource "aws_lb_listener_rule" "web" {
  for_each     = local.routes
  listener_arn = local.api_listener_arn
  priority     = each.value.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.web[each.key].arn
  }

  condition {
    path_pattern {
      values = [each.value.path_pattern]
    }
  }
}

resource "aws_lb_listener_rule" "page" {
  for_each     = local.pages
  listener_arn = local.api_listener_arn
  priority     = each.value.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.web[each.value.service].arn
  }

  condition {
    path_pattern {
      values = [each.value.path_pattern]
    }
  }
}

resource "aws_lb_listener_rule" "internal" {
  listener_arn = local.api_listener_arn
  priority     = local.internal_priority

  action {
    type = "fixed-response"
    fixed_response {
      content_type = local.not_found.content_type
      message_body = local.not_found.message_body
      status_code  = local.not_found.status_code
    }
  }

  condition {
    path_pattern {
      values = local.internal_paths
    }
  }
}

resource "aws_lb_listener" "flower" {
  #checkov:skip=CKV_AWS_2:HTTPS whenever certificate_arn is set (protocol follows it); without one Flower is plain HTTP, limited to flower_allowed_cidrs and behind basic auth
  #checkov:skip=CKV_AWS_103:TLS policy applies whenever the listener is HTTPS, see CKV_AWS_2
  load_balancer_arn = aws_lb.this.arn
  port              = var.flower_port
  protocol          = local.https ? "HTTPS" : "HTTP"
  ssl_policy        = local.https ? local.tls_policy : null
  certificate_arn   = local.https ? var.certificate_arn : null

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.flower.arn
  }
}

# AWS WAF on the public ALB (var.waf_enabled; off where the account may not create a web ACL,
# e.g. AWS Academy Learner Lab). Rules, in order:
#   1. internal-paths: `…/metrics` and `…/health/deep` blocked after URL-decoding and path
#      normalisation, so that an encoded form (`/purchase/%6Detrics`), which the listener rule's
#      literal path pattern would not match but gunicorn decodes, never reaches a task either.
#   2. purchase-rate: per client IP, POST /purchase… above var.waf_purchase_rate_limit.
#   3. ip-rate: per client IP, every request above var.waf_rate_limit.
#   4. known-bad-inputs: AWS's managed rule group (Log4j/JNDI lookups, bad paths).
# Rate limits count over the trailing var.waf_rate_window_seconds; a blocked client gets 429
# with a problem document. Logs go to CloudWatch (the Authorization header redacted), metrics
# per rule to CloudWatch (namespace AWS/WAFV2).

locals {
  waf_count = var.waf_enabled ? 1 : 0
  # An ALB fixed response allows application/json, not application/problem+json; WAF's custom
  # responses take the same content type names (APPLICATION_JSON).
  too_many_requests = jsonencode({
    type = "about:blank", title = "Too Many Requests", status = 429, code = "RATE_LIMITED"
  })
}

resource "aws_wafv2_web_acl" "this" {
  count       = local.waf_count
  name        = var.name
  description = "${var.name}: per-IP rate limits, purchase rate limit, operators' paths, known bad inputs"
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  custom_response_body {
    key          = "too_many_requests"
    content      = local.too_many_requests
    content_type = "APPLICATION_JSON"
  }

  custom_response_body {
    key          = "not_found"
    content      = local.not_found.message_body
    content_type = "APPLICATION_JSON"
  }

  rule {
    name     = "internal-paths"
    priority = 1

    action {
      block {
        custom_response {
          response_code            = 404
          custom_response_body_key = "not_found"
        }
      }
    }

    statement {
      or_statement {
        dynamic "statement" {
          for_each = local.internal_suffixes
          content {
            byte_match_statement {
              search_string         = statement.value
              positional_constraint = "ENDS_WITH"
              field_to_match {
                uri_path {}
              }
              text_transformation {
                priority = 0
                type     = "URL_DECODE"
              }
              text_transformation {
                priority = 1
                type     = "NORMALIZE_PATH"
              }
            }
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-internal-paths"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "purchase-rate"
    priority = 2

    action {
      block {
        custom_response {
          response_code            = 429
          custom_response_body_key = "too_many_requests"
        }
      }
    }

    statement {
      rate_based_statement {
        limit                 = var.waf_purchase_rate_limit
        evaluation_window_sec = var.waf_rate_window_seconds
        aggregate_key_type    = "IP"

        scope_down_statement {
          and_statement {
            statement {
              byte_match_statement {
                search_string         = "POST"
                positional_constraint = "EXACTLY"
                field_to_match {
                  method {}
                }
                text_transformation {
                  priority = 0
                  type     = "NONE"
                }
              }
            }
            statement {
              byte_match_statement {
                search_string         = trimsuffix(local.routes.purchase.path_pattern, "*")
                positional_constraint = "STARTS_WITH"
                field_to_match {
                  uri_path {}
                }
                text_transformation {
                  priority = 0
                  type     = "URL_DECODE"
                }
              }
            }
          }
        }
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-purchase-rate"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "ip-rate"
    priority = 3

    action {
      block {
        custom_response {
          response_code            = 429
          custom_response_body_key = "too_many_requests"
        }
      }
    }

    statement {
      rate_based_statement {
        limit                 = var.waf_rate_limit
        evaluation_window_sec = var.waf_rate_window_seconds
        aggregate_key_type    = "IP"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-ip-rate"
      sampled_requests_enabled   = true
    }
  }

  rule {
    name     = "known-bad-inputs"
    priority = 4

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        vendor_name = "AWS"
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = var.name
    sampled_requests_enabled   = true
  }
}

resource "aws_wafv2_web_acl_association" "this" {
  count        = local.waf_count
  resource_arn = aws_lb.this.arn
  web_acl_arn  = aws_wafv2_web_acl.this[0].arn
}

# WAF writes to CloudWatch Logs only into a group whose name starts with aws-waf-logs-.
resource "aws_cloudwatch_log_group" "waf" {
  count             = local.waf_count
  name              = "aws-waf-logs-${var.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  #checkov:skip=CKV_AWS_338:retention is var.log_retention_days (30 by default); raise it to 365 where compliance asks for a year
}

resource "aws_wafv2_web_acl_logging_configuration" "this" {
  count                   = local.waf_count
  resource_arn            = aws_wafv2_web_acl.this[0].arn
  log_destination_configs = [aws_cloudwatch_log_group.waf[0].arn]

  # the buyers' tokens stay out of the logs
  redacted_fields {
    single_header {
      name = "authorization"
    }
  }
}

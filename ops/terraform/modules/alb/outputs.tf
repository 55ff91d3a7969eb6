output "dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "arn_suffix" {
  description = "ARN suffix of the load balancer (CloudWatch dimension)."
  value       = aws_lb.this.arn_suffix
}

output "target_group_arns" {
  description = "Target group ARN per web process type (purchase, query, events)."
  value       = { for k, tg in aws_lb_target_group.web : k => tg.arn }
}

output "flower_target_group_arn" {
  description = "Target group of Flower."
  value       = aws_lb_target_group.flower.arn
}

output "base_url" {
  description = "Base URL of the API."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this.dns_name}"
}

output "flower_url" {
  description = "URL of Flower."
  value       = "${local.https ? "https" : "http"}://${aws_lb.this.dns_name}:${var.flower_port}"
}

output "listener_arns" {
  description = "Listeners the services depend on (created before the services register)."
  value       = concat(aws_lb_listener.http[*].arn, aws_lb_listener.https[*].arn, [aws_lb_listener.flower.arn])
}

output "web_acl_arn" {
  description = "ARN of the WAF web ACL on the load balancer (null without WAF)."
  value       = one(aws_wafv2_web_acl.this[*].arn)
}

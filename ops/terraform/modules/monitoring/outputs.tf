output "alarm_topic_arn" {
  description = "SNS topic the alarms notify."
  value       = aws_sns_topic.alarms.arn
}

output "metrics_namespace" {
  description = "CloudWatch namespace of the metrics from the logs (metric filters) and of the services' EMF lines (METRICS_NAMESPACE)."
  value       = local.namespace
}

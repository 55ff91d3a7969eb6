variable "prefix" {
  description = "Name prefix, as ops/local/aws_resources.py: topic <prefix>-events, queue <prefix>-sql, DLQ <prefix>-sql-dlq."
  type        = string
}

output "topic_arn" {
  description = "TICKET_TOPIC_ARN."
  value       = aws_sns_topic.events.arn
}

output "queue_url" {
  description = "TICKET_QUEUE_URL."
  value       = aws_sqs_queue.tickets.id
}

output "queue_arn" {
  description = "ARN of the ticket queue."
  value       = aws_sqs_queue.tickets.arn
}

output "queue_name" {
  description = "Name of the ticket queue (CloudWatch dimension)."
  value       = aws_sqs_queue.tickets.name
}

output "dlq_url" {
  description = "TICKET_DLQ_URL."
  value       = aws_sqs_queue.dlq.id
}

output "dlq_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dlq.arn
}

output "dlq_name" {
  description = "Name of the dead-letter queue (CloudWatch dimension)."
  value       = aws_sqs_queue.dlq.name
}

output "dlq_retention_seconds" {
  description = "How long SQS keeps a dead letter before deleting it."
  value       = local.dlq_message_retention_seconds
}

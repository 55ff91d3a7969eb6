"""Operators see trouble on AWS: the alarms' shape, the log lines their metric filters count
(as the code writes them), and Aurora's log exports matched by the parameters that produce them.
"""

from __future__ import annotations

import inspect
import json
import logging
import re

from models.tickets import Outcome
from plumbing import logs
from tests.test_terraform import RELAY_METRICS, config, emf_metrics, one, service_modules

# What MySQL needs before it writes each log that RDS can export.
LOG_PARAMETERS = {
    "error": {},
    "slowquery": {"slow_query_log": "1", "log_output": "FILE"},
    "general": {"general_log": "1", "log_output": "FILE"},
    "audit": {"server_audit_logging": "1"},
}


def alarm(name: str) -> dict:
    return config("monitoring").resource("aws_cloudwatch_metric_alarm", name)


def test_aurora_exports_only_logs_its_parameters_produce():
    aurora = config("aurora")
    exports = aurora.resource("aws_rds_cluster", "this")["enabled_cloudwatch_logs_exports"]
    parameters = {
        p["name"]: p["value"]
        for p in aurora.resource("aws_rds_cluster_parameter_group", "this")["parameter"]
    }
    assert "general" not in exports  # every statement with its values: not exported
    for log_type in exports:
        for name, value in LOG_PARAMETERS[log_type].items():
            assert parameters.get(name) == value, (log_type, name)
    assert "QUERY_DML" not in parameters.get("server_audit_events", "")


def test_alb_5xx_and_503_rates():
    for name, metrics in (
        ("alb_5xx_rate", {"RequestCount", "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"}),
        ("alb_503_rate", {"RequestCount", "HTTPCode_ELB_503_Count"}),
    ):
        body = alarm(name)
        (rate,) = [q for q in body["metric_query"] if q.get("return_data") is True]
        assert rate["expression"].startswith("100 * ")
        assert "/ IF(requests > 0, requests, 1)" in rate["expression"]
        dynamic = one(body["dynamic"])["metric_query"]
        assert set(dynamic["for_each"].values()) == metrics
        assert one(one(dynamic["content"])["metric"])["dimensions"] == "${local.alb_dimensions}"
        assert body["threshold"] == "${var.error_rate_threshold_percent}"
    purchase503 = [q for q in alarm("alb_503_rate")["metric_query"] if q["id"] == "purchase503"]
    assert one(one(purchase503)["metric"])["metric_name"] == (
        "${aws_cloudwatch_log_metric_filter.purchases_unavailable.metric_transformation[0].name}"
    )
    assert config("monitoring").locals["alb_dimensions"] == {
        "LoadBalancer": "${var.alb_arn_suffix}"
    }
    root = config().modules["monitoring"]
    assert root["alb_arn_suffix"] == "${module.alb.arn_suffix}"
    assert root["purchase_log_group"] == "${module.purchase.log_group_name}"
    assert root["worker_log_group"] == "${module.worker.log_group_name}"


def json_line(logger_name: str, message: str, extra: dict) -> dict:
    """One log line as the services write it on AWS (LOG_FORMAT=json)."""
    record = logging.LogRecord(logger_name, logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return json.loads(logs.JsonFormatter("test").format(record))


def matches(pattern: str, line: dict) -> bool:
    """CloudWatch's JSON filter pattern, for the `$.field = "value"` terms joined by ||."""
    terms = re.findall(r'\$\.(\w+) = \\?"([A-Z_]+)\\?"', pattern)
    assert terms, pattern
    return any(line.get(field) == value for field, value in terms)


def test_the_conflict_alarm_counts_the_workers_conflict_lines():
    from tasks import tickets

    metric_filter = config("monitoring").resource(
        "aws_cloudwatch_log_metric_filter", "ticket_conflicts"
    )
    assert metric_filter["log_group_name"] == "${var.worker_log_group}"
    # the worker's line for each persisted ticket carries its outcome
    source = inspect.getsource(tickets.persist_ticket_task)
    assert 'extra={"ticketId": record.ticket_id, "outcome": outcome.value}' in source
    conflict = json_line("tasks.tickets", "ticket t persisted", {"outcome": Outcome.CONFLICT.value})
    inserted = json_line("tasks.tickets", "ticket t persisted", {"outcome": Outcome.INSERTED.value})
    assert matches(metric_filter["pattern"], conflict)
    assert not matches(metric_filter["pattern"], inserted)
    body = alarm("ticket_conflict")
    assert (body["comparison_operator"], body["threshold"], body["statistic"]) == (
        "GreaterThanThreshold",
        0,
        "Sum",
    )
    assert body["metric_name"] == (
        "${aws_cloudwatch_log_metric_filter.ticket_conflicts.metric_transformation[0].name}"
    )


def test_the_503_filter_counts_the_purchase_services_503_lines():
    from web import purchase

    metric_filter = config("monitoring").resource(
        "aws_cloudwatch_log_metric_filter", "purchases_unavailable"
    )
    assert metric_filter["log_group_name"] == "${var.purchase_log_group}"
    source = inspect.getsource(purchase._account_purchase)
    assert 'extra={"outcome": code' in source
    refused = json_line("web.purchase", "purchase x", {"outcome": "SERVICE_UNAVAILABLE"})
    sold = json_line("web.purchase", "purchase x", {"outcome": "SOLD"})
    assert matches(metric_filter["pattern"], refused)
    assert not matches(metric_filter["pattern"], sold)


def test_dead_letters_alarm_on_depth_and_before_sqs_deletes_them():
    assert alarm("dlq_not_empty")["threshold"] == 0
    oldest = alarm("dlq_oldest_message_age")
    assert oldest["metric_name"] == "ApproximateAgeOfOldestMessage"
    assert oldest["dimensions"] == {"QueueName": "${var.dlq_name}"}
    assert oldest["threshold"] == "${var.dlq_retention_seconds - 3 * 86400}"
    retention = config("messaging").locals["dlq_message_retention_seconds"]
    assert retention - 3 * 86400 > 86400  # a day's slack at least
    assert config().modules["monitoring"]["dlq_retention_seconds"] == (
        "${module.messaging.dlq_retention_seconds}"
    )


def test_every_redis_node_has_a_memory_alarm():
    redis = config("redis")
    body = redis.resource("aws_cloudwatch_metric_alarm", "memory")
    assert body["for_each"] == "${toset(local.node_ids)}"
    assert body["metric_name"] == "DatabaseMemoryUsagePercentage"
    assert body["dimensions"] == {"CacheClusterId": "${each.key}"}
    ids = re.sub(r"\s+", " ", redis.locals["node_ids"])
    assert 'format("%s-%04d-%03d", var.name, pair[0], pair[1])' in ids  # cluster mode
    assert 'format("%s-%03d", var.name, node)' in ids  # without
    for name in ("redis", "monitor_redis"):
        assert config().modules[name]["alarm_topic_arn"] == "${module.monitoring.alarm_topic_arn}"


def test_the_relays_alarms_parked_entries_outbox_age_and_no_relay_running():
    emitted = emf_metrics("relay", RELAY_METRICS)
    monitoring = config("monitoring")
    assert emitted["namespace"] == "${module.monitoring.metrics_namespace}"
    assert monitoring.outputs["metrics_namespace"]["value"] == "${local.namespace}"

    # any parked entry: the counter's increase per minute, over every relay task
    parked = alarm("relay_parked")
    assert (parked["namespace"], parked["metric_name"]) == (
        "${local.namespace}",
        emitted["names"]["ticketing_relay_parked_total"],
    )
    assert parked["dimensions"] == emitted["dimension_values"] == {"Service": "relay"}
    assert (parked["statistic"], parked["comparison_operator"], parked["threshold"]) == (
        "Sum",
        "GreaterThanThreshold",
        0,
    )

    # the oldest entry any relay sees, too old in 2 of 3 minutes
    age = alarm("outbox_age")
    assert (age["namespace"], age["metric_name"]) == (
        "${local.namespace}",
        emitted["names"]["ticketing_outbox_age_seconds"],
    )
    assert age["dimensions"] == emitted["dimension_values"]
    assert (age["statistic"], age["comparison_operator"]) == ("Maximum", "GreaterThanThreshold")
    assert age["threshold"] == "${var.outbox_age_alarm_seconds}"
    assert (age["period"], age["evaluation_periods"], age["datapoints_to_alarm"]) == (60, 3, 2)
    assert config().modules["monitoring"]["outbox_age_alarm_seconds"] == (
        "${var.outbox_age_alarm_seconds}"
    )
    assert config().variables["outbox_age_alarm_seconds"]["default"] == 30

    # no relay task: Container Insights' count, and no datapoint at all counts as none running
    running = alarm("relay_not_running")
    assert (running["namespace"], running["metric_name"]) == (
        "ECS/ContainerInsights",
        "RunningTaskCount",
    )
    assert running["dimensions"] == {
        "ClusterName": "${var.cluster_name}",
        "ServiceName": "${var.relay_service_name}",
    }
    assert (running["statistic"], running["comparison_operator"], running["threshold"]) == (
        "Minimum",
        "LessThanThreshold",
        1,
    )
    assert running["treat_missing_data"] == "breaching"
    root = config().modules["monitoring"]
    assert root["relay_service_name"] == "${module.relay.service_name}"
    assert root["cluster_name"] == "${aws_ecs_cluster.this.name}"
    assert service_modules()["relay"]["name"] == emitted["service"]
    cluster = config().resource("aws_ecs_cluster", "this")["setting"]
    assert {"name": "containerInsights", "value": "enabled"} in cluster

    for name in ("relay_parked", "outbox_age", "relay_not_running"):
        assert alarm(name)["alarm_actions"] == ["${aws_sns_topic.alarms.arn}"], name

"""The AWS deployment's shape, checked without AWS and without a terraform binary.

Every `.tf` file under ops/terraform is parsed with python-hcl2 and the values that matter are
asserted: the resources, the ALB's path rules and health checks, the messaging (compared with
what ops/local/aws_resources.py really creates in moto server), the database endpoint wiring,
autoscaling, IAM, and that each ECS container runs its Procfile line verbatim.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import aws_resources
import boto3
import hcl2
import pytest
from hcl2 import SerializationOptions
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from plumbing import emf, settings
from tests.support.processes import ROOT

TF = ROOT / "ops" / "terraform"
MODULES = TF / "modules"
DEPLOYED_TYPES = {"purchase", "query", "events", "relay", "worker", "flower", "release"}
LOCAL_ONLY_TYPES = {"web"}
OPERATOR_TASKS = {"ops"}  # one-off task definitions for operators' commands, not Procfile types

_OPTIONS = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)


class Config:
    """The merged content of the .tf files of one directory (one Terraform module)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.data: dict[tuple[str, str], dict[str, Any]] = {}
        self.modules: dict[str, dict[str, Any]] = {}
        self.variables: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.locals: dict[str, Any] = {}
        self.blocks: list[dict[str, Any]] = []
        for path in sorted(directory.glob("*.tf")):
            with path.open() as f:
                parsed = hcl2.load(f, serialization_options=_OPTIONS)
            self.blocks.append(parsed)
            for kind, target in (("resource", self.resources), ("data", self.data)):
                for block in parsed.get(kind, []):
                    for type_, named in block.items():
                        for name, body in named.items():
                            assert (type_, name) not in target, f"{type_}.{name} twice"
                            target[(type_, name)] = body
            for kind, target in (
                ("module", self.modules),
                ("variable", self.variables),
                ("output", self.outputs),
            ):
                for block in parsed.get(kind, []):
                    target.update(block)
            for block in parsed.get("locals", []):
                self.locals.update(block)

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        assert (type_, name) in self.resources, f"{self.directory.name}: no {type_}.{name}"
        return self.resources[(type_, name)]


@cache
def config(directory: str = "") -> Config:
    return Config(MODULES / directory if directory else TF)


def one(block: Any) -> Any:
    """A nested block parses as a list of one dict."""
    if isinstance(block, list):
        assert len(block) == 1, block
        return block[0]
    return block


def hcl_string(value: str) -> str:
    """The string Terraform sees: HCL writes a literal `${` as `$${` (and `%{` as `%%{`)."""
    return value.replace("$${", "${").replace("%%{", "%{")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def service_modules() -> dict[str, dict[str, Any]]:
    return {
        name: body
        for name, body in config().modules.items()
        if body["source"] == "./modules/ecs_service"
    }


# --- files, providers, variables


def test_every_tf_file_parses_and_every_module_is_used():
    files = sorted(TF.rglob("*.tf"))
    assert len(files) >= 20
    module_dirs = {p.name for p in MODULES.iterdir() if p.is_dir()}
    assert module_dirs >= {
        "network",
        "ecr",
        "alb",
        "ecs_service",
        "aurora",
        "redis",
        "messaging",
        "iam",
        "monitoring",
    }
    used = {body["source"].removeprefix("./modules/") for body in config().modules.values()}
    assert used == module_dirs
    for directory in module_dirs:
        assert config(directory).resources, f"module {directory} creates nothing"


def test_provider_versions_are_pinned():
    (terraform,) = [one(block["terraform"]) for block in config().blocks if "terraform" in block]
    providers = one(terraform["required_providers"])
    assert providers["aws"]["source"] == "hashicorp/aws"
    assert re.fullmatch(r"~> 5\.\d+", providers["aws"]["version"])
    assert providers["random"]["source"] == "hashicorp/random"
    assert re.fullmatch(r"~> 3\.\d+", providers["random"]["version"])
    assert terraform["required_version"].startswith(">=")


def test_every_variable_and_output_is_described():
    for directory in ["", *(p.name for p in MODULES.iterdir() if p.is_dir())]:
        c = config(directory)
        for kind, items in (("variable", c.variables), ("output", c.outputs)):
            for name, body in items.items():
                assert str(body.get("description", "")).strip(), f"{directory}/{kind} {name}"


def test_tfvars_template_sets_only_declared_variables():
    template = (TF / "terraform.tfvars.template").read_text()
    names = re.findall(r"^([a-z_]+)\s*=", template, flags=re.MULTILINE)
    assert names
    assert set(names) <= set(config().variables)
    assert not re.search(r"password|secret|token", template.split("#")[0], flags=re.I)


def test_outputs_name_the_load_balancer():
    assert config().outputs["alb_dns_name"]["value"] == "${module.alb.dns_name}"


def test_expected_resource_types_exist():
    types = {t for d in ["", *(p.name for p in MODULES.iterdir())] for t, _ in config(d).resources}
    assert types >= {
        "aws_vpc",
        "aws_subnet",
        "aws_nat_gateway",
        "aws_security_group",
        "aws_ecr_repository",
        "aws_lb",
        "aws_lb_listener",
        "aws_lb_listener_rule",
        "aws_lb_target_group",
        "aws_ecs_cluster",
        "aws_ecs_task_definition",
        "aws_ecs_service",
        "aws_appautoscaling_target",
        "aws_appautoscaling_policy",
        "aws_rds_cluster",
        "aws_rds_cluster_instance",
        "random_password",
        "aws_secretsmanager_secret",
        "aws_secretsmanager_secret_version",
        "aws_elasticache_replication_group",
        "aws_sns_topic",
        "aws_sns_topic_subscription",
        "aws_sqs_queue",
        "aws_sqs_queue_policy",
        "aws_iam_role",
        "aws_iam_role_policy",
        "aws_cloudwatch_log_group",
        "aws_cloudwatch_metric_alarm",
    }


# --- load balancer


def test_alb_routes_the_three_paths_to_their_target_groups_with_health_checks():
    alb = config("alb")
    assert {
        name: (route["path_pattern"], route["health_path"])
        for name, route in alb.locals["routes"].items()
    } == {
        "purchase": ("/purchase*", "/purchase/health"),
        "query": ("/query*", "/query/health"),
        "events": ("/events*", "/events/health"),
    }
    priorities = [route["priority"] for route in alb.locals["routes"].values()]
    assert len(set(priorities)) == 3

    rule = alb.resource("aws_lb_listener_rule", "web")
    assert rule["for_each"] == "${local.routes}"
    condition = one(one(rule["condition"])["path_pattern"])
    assert condition["values"] == ["${each.value.path_pattern}"]
    action = one(rule["action"])
    assert action["type"] == "forward"
    assert action["target_group_arn"] == "${aws_lb_target_group.web[each.key].arn}"

    group = alb.resource("aws_lb_target_group", "web")
    assert group["for_each"] == "${local.routes}"
    assert group["target_type"] == "ip"
    health = one(group["health_check"])
    assert health["path"] == "${each.value.health_path}"
    assert health["matcher"] == "200"

    # each web service registers in its own target group
    services = service_modules()
    for name in ("purchase", "query", "events"):
        assert services[name]["target_group_arn"] == (
            f'${{module.alb.target_group_arns["{name}"]}}'
        )


def test_alb_routes_the_buyer_page_to_the_purchase_service():
    """`/shop/` and its files are served by the purchase service (web.shop): a rule of their
    own forwards /shop* to the purchase target group, after the operators' paths."""
    alb = config("alb")
    assert alb.locals["pages"] == {
        "shop": {"path_pattern": "/shop*", "service": "purchase", "priority": 40}
    }
    rule = alb.resource("aws_lb_listener_rule", "page")
    assert rule["for_each"] == "${local.pages}"
    assert rule["listener_arn"] == "${local.api_listener_arn}"
    condition = one(one(rule["condition"])["path_pattern"])
    assert condition["values"] == ["${each.value.path_pattern}"]
    action = one(rule["action"])
    assert action["type"] == "forward"
    assert action["target_group_arn"] == "${aws_lb_target_group.web[each.value.service].arn}"
    # a service that exists, and a priority no other rule of the listener has
    assert alb.locals["pages"]["shop"]["service"] in alb.locals["routes"]
    taken = [route["priority"] for route in alb.locals["routes"].values()]
    assert alb.locals["pages"]["shop"]["priority"] not in [*taken, alb.locals["internal_priority"]]
    assert alb.locals["pages"]["shop"]["priority"] > alb.locals["internal_priority"]


def test_flower_has_its_own_authenticated_listener_limited_by_cidr():
    alb = config("alb")
    listener = alb.resource("aws_lb_listener", "flower")
    assert listener["port"] == "${var.flower_port}"
    assert one(listener["default_action"])["target_group_arn"] == (
        "${aws_lb_target_group.flower.arn}"
    )
    network = config("network")
    rule = network.resource("aws_vpc_security_group_ingress_rule", "alb_flower")
    assert rule["for_each"] == "${local.flower_cidrs}"
    assert rule["cidr_ipv4"] == "${each.value}"
    flower = service_modules()["flower"]
    assert flower["secrets"]["FLOWER_BASIC_AUTH"] == (
        "${aws_secretsmanager_secret.flower_basic_auth.arn}"
    )
    assert config().variables["flower_allowed_cidrs"]["default"] == []


def waf_rules() -> dict[str, dict[str, Any]]:
    acl = config("alb").resource("aws_wafv2_web_acl", "this")
    return {rule["name"]: rule for rule in acl["rule"]}


def byte_matches(statement: dict[str, Any]) -> list[dict[str, Any]]:
    """The byte-match statements of a statement, through and/or and dynamic blocks."""
    found = []
    for key, value in statement.items():
        if key == "byte_match_statement":
            found.append(one(value))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    found.extend(byte_matches(item))
        elif isinstance(value, dict):
            found.extend(byte_matches(value))
    return found


def test_waf_rate_limits_every_ip_and_purchases_tighter():
    alb = config("alb")
    acl = alb.resource("aws_wafv2_web_acl", "this")
    assert acl["count"] == "${local.waf_count}"
    assert alb.locals["waf_count"] == "${var.waf_enabled ? 1 : 0}"
    assert acl["scope"] == "REGIONAL"
    assert one(acl["default_action"]) == {"allow": [{}]}
    association = alb.resource("aws_wafv2_web_acl_association", "this")
    assert association["resource_arn"] == "${aws_lb.this.arn}"
    assert association["web_acl_arn"] == "${aws_wafv2_web_acl.this[0].arn}"

    rules = waf_rules()
    assert set(rules) == {"internal-paths", "purchase-rate", "ip-rate", "known-bad-inputs"}
    priorities = [rule["priority"] for rule in rules.values()]
    assert len(set(priorities)) == len(priorities)
    for name in ("purchase-rate", "ip-rate"):
        block = one(one(rules[name]["action"])["block"])
        assert one(block["custom_response"])["response_code"] == 429
    ip = one(one(rules["ip-rate"]["statement"])["rate_based_statement"])
    assert (ip["limit"], ip["aggregate_key_type"]) == ("${var.waf_rate_limit}", "IP")
    assert "scope_down_statement" not in ip
    purchase = one(one(rules["purchase-rate"]["statement"])["rate_based_statement"])
    assert (purchase["limit"], purchase["aggregate_key_type"]) == (
        "${var.waf_purchase_rate_limit}",
        "IP",
    )
    assert purchase["evaluation_window_sec"] == ip["evaluation_window_sec"]
    scope = one(purchase["scope_down_statement"])
    assert list(scope) == ["and_statement"]  # POST *and* the purchase path, not either
    matches = {
        next(iter(one(match["field_to_match"]))): (
            match["positional_constraint"],
            match["search_string"],
        )
        for match in byte_matches(scope)
    }
    assert matches == {
        "method": ("EXACTLY", "POST"),
        "uri_path": ("STARTS_WITH", '${trimsuffix(local.routes.purchase.path_pattern, "*")}'),
    }
    assert alb.locals["routes"]["purchase"]["path_pattern"] == "/purchase*"
    bad_inputs = one(one(rules["known-bad-inputs"]["statement"])["managed_rule_group_statement"])
    assert bad_inputs["name"] == "AWSManagedRulesKnownBadInputsRuleSet"

    # every rule and the ACL report metrics and samples; the ACL logs, tokens redacted
    for body in (acl, *rules.values()):
        visibility = one(body["visibility_config"])
        assert visibility["cloudwatch_metrics_enabled"] is True
        assert visibility["sampled_requests_enabled"] is True
    logging = alb.resource("aws_wafv2_web_acl_logging_configuration", "this")
    assert logging["log_destination_configs"] == ["${aws_cloudwatch_log_group.waf[0].arn}"]
    assert alb.resource("aws_cloudwatch_log_group", "waf")["name"].startswith("aws-waf-logs-")
    redacted = one(logging["redacted_fields"])
    assert one(redacted["single_header"])["name"] == "authorization"

    # the limits are variables with sane defaults; the purchase one is the tighter
    root = config()
    variables = root.variables
    general = variables["waf_rate_limit"]["default"]
    tight = variables["waf_purchase_rate_limit"]["default"]
    window = variables["waf_rate_window_seconds"]["default"]
    assert 10 <= tight < general
    assert window in (60, 120, 300, 600)
    assert 1 <= general / window <= 50  # per second on average: a person, not a script
    alb_module = root.modules["alb"]
    assert alb_module["waf_rate_limit"] == "${var.waf_rate_limit}"
    assert alb_module["waf_purchase_rate_limit"] == "${var.waf_purchase_rate_limit}"
    assert alb_module["waf_rate_window_seconds"] == "${var.waf_rate_window_seconds}"


def test_waf_is_left_out_where_the_account_cannot_create_it():
    """Learner Lab mode (existing_role_arn set) never creates a web ACL, whatever enable_waf."""
    root = config()
    assert root.variables["enable_waf"]["default"] is True
    assert root.locals["restricted_account"] == '${var.existing_role_arn != ""}'
    assert root.locals["waf_enabled"] == "${var.enable_waf && !local.restricted_account}"
    assert root.modules["alb"]["waf_enabled"] == "${local.waf_enabled}"
    alb = config("alb")
    for type_, name in (
        ("aws_wafv2_web_acl", "this"),
        ("aws_wafv2_web_acl_association", "this"),
        ("aws_wafv2_web_acl_logging_configuration", "this"),
        ("aws_cloudwatch_log_group", "waf"),
    ):
        assert alb.resource(type_, name)["count"] == "${local.waf_count}", name


# --- ECS: the Procfile, verbatim


def test_each_deployed_procfile_type_has_a_service_running_its_procfile_line():
    lines = procfile()
    assert set(lines) == DEPLOYED_TYPES | LOCAL_ONLY_TYPES
    services = service_modules()
    assert set(services) == DEPLOYED_TYPES | OPERATOR_TASKS
    for name, body in services.items():
        assert body["name"] == name
        if name in DEPLOYED_TYPES:
            assert hcl_string(body["command"]) == lines[name], name
    one_off = {"release"} | OPERATOR_TASKS
    for name in one_off:
        assert services[name]["create_service"] is False
    assert all(
        body.get("create_service", True) is True for n, body in services.items() if n not in one_off
    )


def test_the_container_command_is_bash_c_the_procfile_line():
    definition = config("ecs_service").resource("aws_ecs_task_definition", "this")
    containers = re.sub(r"\s+", " ", definition["container_definitions"])
    assert 'command = ["bash", "-c", var.command]' in containers
    assert "readonlyRootFilesystem = true" in containers


def test_flower_command_keeps_its_shell_expansion():
    flower = service_modules()["flower"]["command"]
    assert "$${MONITOR_BROKER_URL:-" in flower  # HCL would otherwise interpolate it
    assert "${MONITOR_BROKER_URL:-redis://" in hcl_string(flower)


# Flower's resident memory (Flower 2.2, measured, rounded up; see docs/operations.md): what it has
# without tasks, what each task it keeps adds (its events as the worker sends them, and its
# place in Flower's event heap), and what answering `GET /api/tasks` for all of them adds.
FLOWER_BASE_MIB = 90
FLOWER_KIB_PER_TASK = 9.5
FLOWER_LISTING_KIB_PER_TASK = 2.5


def test_flower_keeps_no_more_tasks_than_its_task_memory_holds():
    """What Flower keeps at --max_tasks (the Procfile's, which ECS runs verbatim), plus one
    listing of them all, fits in three quarters of the Flower task's memory: the last quarter
    for more pages at once, failed tasks' tracebacks and the allocator's slack."""
    argv = procfile()["flower"].split()
    bounds = [int(a.split("=", 1)[1]) for a in argv if a.startswith("--max_tasks=")]
    assert bounds, "no --max_tasks: Flower keeps 100,000 tasks, more than its memory holds"
    (bound,) = bounds
    memory_mib = config().variables["task_sizes"]["default"]["flower"]["memory"]
    per_task_kib = FLOWER_KIB_PER_TASK + FLOWER_LISTING_KIB_PER_TASK
    peak_mib = FLOWER_BASE_MIB + bound * per_task_kib / 1024
    assert peak_mib <= 0.75 * memory_mib, (bound, memory_mib)


def test_release_runs_migrations_as_a_one_off_task_before_services_update():
    script = (ROOT / "ops" / "scripts" / "build-and-push.sh").read_text()
    run_task = script.index("aws ecs run-task")
    wait = script.index("aws ecs wait tasks-stopped")
    update = script.index("aws ecs update-service")
    assert run_task < wait < update
    assert "--force-new-deployment" in script
    assert config().outputs["release_task_definition"]["value"] == (
        "${module.release.task_definition_family}"
    )


# --- database, cache, secrets


def test_each_service_connects_as_its_own_database_user():
    """query reads the reader endpoint as its SELECT-only user; worker and ops write as the
    worker's user; release migrates as its own and alone holds the master user's URL and the
    passwords it sets (cli/database.py); purchase, events, relay and flower get no database."""
    services = service_modules()
    url = '${{module.aurora.service_url_secret_arns["{}"]}}'
    password = '${{module.aurora.service_password_secret_arns["{}"]}}'
    assert services["query"]["secrets"] == {"DATABASE_READ_URL": url.format("query")}
    assert services["worker"]["secrets"]["DATABASE_URL"] == url.format("worker")
    assert services["ops"]["secrets"]["DATABASE_URL"] == url.format("worker")
    release = services["release"]["secrets"]
    assert release["DATABASE_URL"] == url.format("release")
    assert release["DATABASE_ADMIN_URL"] == "${module.aurora.admin_url_secret_arn}"
    for service in ("query", "worker", "release"):
        assert release[f"DATABASE_{service.upper()}_PASSWORD"] == password.format(service)
    for name, body in services.items():
        database = {key for key in body["secrets"] if key.startswith("DATABASE_")}
        if name != "release":  # nobody else sees the master user or another user's password
            assert not any("ADMIN" in key or "PASSWORD" in key for key in database), name
            assert "aurora.admin_url" not in str(body["secrets"]), name
        if name in ("purchase", "events", "relay", "flower"):
            assert not database, name
    # the release task names the users it creates (not secret) the way cli/database.py reads them
    root = config()
    assert services["release"]["environment"] == "${local.release_environment}"
    release_env = re.sub(r"\s+", " ", root.locals["release_environment"])
    assert release_env.startswith(
        "${merge(local.common_environment, local.seat_state_environment, {"
    )
    assert '"DATABASE_${upper(service)}_USER" => user' in release_env
    assert "module.aurora.service_users" in release_env
    assert hcl_string(services["release"]["command"]).startswith(
        "flask --app web database users && alembic upgrade head"
    )

    aurora = config("aurora")
    users = re.sub(r"\s+", " ", aurora.locals["service_users"])
    assert '["query", "worker", "release"]' in users
    assert '"${var.master_username}_${service}"' in users
    endpoints = aurora.locals["service_endpoints"]
    assert endpoints == {
        "query": "${aws_rds_cluster.this.reader_endpoint}",
        "worker": "${aws_rds_cluster.this.endpoint}",
        "release": "${aws_rds_cluster.this.endpoint}",
    }
    service_url = aurora.resource("aws_secretsmanager_secret_version", "service_url")
    assert service_url["for_each"] == "${local.service_users}"
    assert service_url["secret_string"] == (
        "mysql+pymysql://${each.value}:${random_password.service[each.key].result}"
        "@${local.service_endpoints[each.key]}:3306/${var.database_name}?${local.url_query}"
    )
    service_password = aurora.resource("aws_secretsmanager_secret_version", "service_password")
    assert service_password["secret_string"] == "${random_password.service[each.key].result}"
    generated = aurora.resource("random_password", "service")
    assert generated["for_each"] == "${local.service_users}"
    assert generated["length"] >= 32 and generated["special"] is False
    for name in ("service_url", "service_password", "database_url"):
        secret = aurora.resource("aws_secretsmanager_secret", name)
        assert secret["kms_key_id"] == "${var.kms_key_arn}", name

    admin = aurora.resource("aws_secretsmanager_secret_version", "database_url")["secret_string"]
    assert admin.startswith("mysql+pymysql://${local.credentials}@")
    assert "@${aws_rds_cluster.this.endpoint}:3306/" in admin
    assert aurora.locals["credentials"] == (
        "${var.master_username}:${random_password.master.result}"
    )
    assert ("aws_secretsmanager_secret", "database_read_url") not in aurora.resources
    cluster = aurora.resource("aws_rds_cluster", "this")
    assert cluster["engine"] == "aurora-mysql"
    assert cluster["master_password"] == "${random_password.master.result}"
    assert cluster["storage_encrypted"] is True
    instances = aurora.resource("aws_rds_cluster_instance", "this")
    assert instances["count"] == 2  # one writer, one reader


def test_database_user_names_fit_what_the_users_command_accepts():
    """The names Terraform gives (master user name + service) pass cli/database.py's checks,
    and Terraform's services are the command's."""
    from cli import database

    default = config().variables["db_master_username"]["default"]
    services = re.search(r"\[(.*?)\]", config("aurora").locals["service_users"]).group(1)
    assert [name.strip(' "') for name in services.split(",")] == list(database.GRANTS)
    environ = {}
    for service in database.GRANTS:
        environ[f"DATABASE_{service.upper()}_USER"] = f"{default}_{service}"
        environ[f"DATABASE_{service.upper()}_PASSWORD"] = "generated"
    users = database.service_users(environ)
    assert [user.name for user in users] == [f"{default}_{s}" for s in database.GRANTS]


def test_secrets_are_injected_never_plain_environment():
    root = config()
    plain = {**root.locals["common_environment"]}
    web = root.locals["web_environment"]
    assert web.startswith("${merge(local.common_environment")
    # the one URL in plain sight is the identity provider's public key set
    assert "URL" not in web.replace("local.common_environment", "").replace("JWT_JWKS_URL", "")
    assert not re.search(r"DATABASE|REDIS|PASSWORD|SECRET", web)
    for name in plain:
        assert not re.search(r"DATABASE|REDIS|PASSWORD|SECRET|TOKEN|AUTH", name), name
    seat_state = root.locals["seat_state_environment"]
    assert seat_state == {"REDIS_CLUSTER": "true"}  # a switch, not a secret
    allowed = {
        "${local.common_environment}",
        "${local.web_environment}",
        "${local.purchase_environment}",
        "${merge(local.common_environment, local.seat_state_environment)}",
        "${merge(local.web_environment, local.seat_state_environment)}",
        "${local.release_environment}",
    }
    assert root.locals["purchase_environment"] == (
        "${merge(local.web_environment, local.seat_state_environment,"
        " local.replica_wait_environment)}"
    )
    for name in root.locals["replica_wait_environment"]:
        assert not re.search(r"DATABASE|URL|PASSWORD|SECRET|TOKEN|AUTH", name), name
    for name, body in service_modules().items():
        env = body.get("environment", "")
        assert env in allowed, name
        for key, value in body["secrets"].items():
            assert re.search(r'(_secret_arn|\.arn|_secret_arns\["[a-z]+"\])}$', value), (name, key)
    assert plain["TICKET_TOPIC_ARN"] == "${module.messaging.topic_arn}"
    assert plain["TICKET_QUEUE_URL"] == "${module.messaging.queue_url}"
    assert plain["TICKET_DLQ_URL"] == "${module.messaging.dlq_url}"
    assert plain["AWS_DEFAULT_REGION"] == "${var.aws_region}"

    definition = config("ecs_service").resource("aws_ecs_task_definition", "this")
    containers = re.sub(r"\s+", " ", definition["container_definitions"])
    assert "valueFrom = var.secrets[key]" in containers


def test_redis_is_replicated_with_failover_and_tls():
    redis = config("redis")
    group = redis.resource("aws_elasticache_replication_group", "this")
    assert group["cluster_mode"] == '${var.cluster_mode_enabled ? "enabled" : "disabled"}'
    assert group["num_node_groups"] == "${var.num_node_groups}"
    assert group["replicas_per_node_group"] == "${var.replicas_per_node_group}"
    assert "num_cache_clusters" not in group  # it conflicts with the node group arguments
    assert group["automatic_failover_enabled"] is True
    assert group["multi_az_enabled"] is True
    assert group["transit_encryption_enabled"] is True
    assert group["at_rest_encryption_enabled"] is True
    assert group["auth_token"] == "${random_password.auth.result}"
    parameters = redis.resource("aws_elasticache_parameter_group", "this")["parameter"]
    assert {p["name"]: p["value"] for p in parameters} == {
        "maxmemory-policy": "noeviction",
        "cluster-enabled": '${var.cluster_mode_enabled ? "yes" : "no"}',
    }
    assert redis.variables["replicas_per_node_group"]["default"] >= 1  # failover needs one
    url = redis.resource("aws_secretsmanager_secret_version", "redis_url")["secret_string"]
    assert url.startswith("rediss://:${random_password.auth.result}@${local.endpoint}:6379/")
    assert url.endswith("?ssl_cert_reqs=required")
    endpoint = re.sub(r"\s+", " ", redis.locals["endpoint"])
    assert endpoint == (
        "${(var.cluster_mode_enabled"
        " ? aws_elasticache_replication_group.this.configuration_endpoint_address"
        " : aws_elasticache_replication_group.this.primary_endpoint_address)}"
    )


def test_seat_state_is_a_redis_cluster_and_the_monitoring_plane_is_not():
    modules = config().modules
    seats, monitor = modules["redis"], modules["monitor_redis"]
    assert (seats["source"], monitor["source"]) == ("./modules/redis", "./modules/redis")
    assert seats["cluster_mode_enabled"] is True
    assert seats["num_node_groups"] == "${var.redis_num_node_groups}"
    assert seats["replicas_per_node_group"] == "${var.redis_replicas_per_node_group}"
    assert config().variables["redis_num_node_groups"]["default"] >= 2  # events really spread
    # kombu's Redis transport (Celery events, remote control) has no cluster mode
    assert monitor["cluster_mode_enabled"] is False
    assert "num_node_groups" not in monitor
    assert seats["name"] != monitor["name"]

    services = service_modules()
    seat_url = "${module.redis.redis_url_secret_arn}"
    monitor_url = "${module.monitor_redis.redis_url_secret_arn}"
    # the sale; the outbox relay; catalog load / seats rebuild; the outbox in deep health
    for name in ("purchase", "relay", "release", "events"):
        assert services[name]["secrets"]["REDIS_URL"] == seat_url
        assert ("MONITOR_BROKER_URL" in services[name]["secrets"]) == (name == "events")
        environment = services[name]["environment"]
        if environment in ("${local.purchase_environment}", "${local.release_environment}"):
            environment = config().locals[environment.removeprefix("${local.").rstrip("}")]
        assert "local.seat_state_environment" in environment, name
    for name in ("worker", "flower", "events"):  # events, remote control, heartbeats
        assert services[name]["secrets"]["MONITOR_BROKER_URL"] == monitor_url
    for name in ("worker", "flower"):
        assert "REDIS_URL" not in services[name]["secrets"]
        assert "seat_state_environment" not in services[name]["environment"]
    assert "REDIS_URL" not in services["query"]["secrets"]


def test_the_purchase_environment_parses_as_a_cluster_and_the_worker_as_not(monkeypatch):
    """The values Terraform sets, read by the app's own settings: the purchase service gets a
    cluster client; the worker's monitoring plane is its own Redis, never the cluster's URL."""
    seat_url = "rediss://:token@clustercfg.example.cache.amazonaws.com:6379/0"
    monitor_url = "rediss://:token@master.monitor.example.cache.amazonaws.com:6379/0"
    for key, value in config().locals["seat_state_environment"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REDIS_URL", seat_url)
    monkeypatch.delenv("MONITOR_BROKER_URL", raising=False)
    purchase = settings.load()
    assert purchase.redis_cluster is True
    for key in config().locals["seat_state_environment"]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("MONITOR_BROKER_URL", monitor_url)
    worker = settings.load()
    assert worker.redis_cluster is False
    assert worker.monitor_url() == monitor_url


def test_a_purchase_waits_for_the_shards_replica():
    """REDIS_WAIT_REPLICAS=1 on the purchase task (WAIT 1 <ms> pipelined with the seat script),
    which only a seat cluster with a replica in every shard and failover to it can answer."""
    root = config()
    assert service_modules()["purchase"]["environment"] == "${local.purchase_environment}"
    assert "local.replica_wait_environment" in root.locals["purchase_environment"]
    wait = root.locals["replica_wait_environment"]
    assert wait == {
        "REDIS_WAIT_REPLICAS": "1",
        "REDIS_WAIT_TIMEOUT_MS": "${tostring(var.redis_wait_timeout_ms)}",
    }
    timeout = root.variables["redis_wait_timeout_ms"]
    assert 1 <= timeout["default"] <= 100  # bounds what a slow replica adds to a purchase
    assert one(timeout["validation"])["condition"] == "${var.redis_wait_timeout_ms >= 1}"
    # nobody else waits: the other services' environments do not carry it
    for name, body in service_modules().items():
        if name != "purchase":
            assert "purchase_environment" not in body.get("environment", ""), name

    seats = root.modules["redis"]
    assert seats["replicas_per_node_group"] == "${var.redis_replicas_per_node_group}"
    replicas = root.variables["redis_replicas_per_node_group"]
    assert replicas["default"] >= int(wait["REDIS_WAIT_REPLICAS"])
    assert one(replicas["validation"])["condition"] == ("${var.redis_replicas_per_node_group >= 1}")
    group = config("redis").resource("aws_elasticache_replication_group", "this")
    assert group["replicas_per_node_group"] == "${var.replicas_per_node_group}"
    assert group["automatic_failover_enabled"] is True


# Every connection a security group allows: (from, to, port). The contract: each service
# reaches only what it uses; "internet" and "aws" (HTTPS to the AWS APIs) stand for 0.0.0.0/0.
APP_PORT, FLOWER_PORT = "${var.app_port}", "${var.flower_port}"
SERVICES = ("purchase", "query", "events", "relay", "worker", "flower", "ops")
EXPECTED_FLOWS = (
    {("internet", "alb", 80), ("internet", "alb", 443)}
    | {("alb", name, APP_PORT) for name in ("purchase", "query", "events")}
    | {("alb", "flower", FLOWER_PORT)}
    | {("ops", name, APP_PORT) for name in ("purchase", "query", "events")}  # operators
    | {(name, "aws", 443) for name in SERVICES}
    | {(name, "aurora", 3306) for name in ("query", "worker", "ops")}
    | {(name, "redis", 6379) for name in ("purchase", "events", "relay", "ops")}
    | {(name, "monitor_redis", 6379) for name in ("events", "worker", "flower")}
)


def _instances(body: dict[str, Any], network: Config) -> list[dict[str, Any]]:
    """A rule resource once per for_each element, with each.key and each.value filled in."""
    for_each = body.get("for_each")
    if for_each is None:
        return [body]
    name = re.fullmatch(r"\$\{(?:toset\()?local\.(\w+)\)?\}", for_each).group(1)
    if name == "store_flows":  # merge([for store … : {for client … : "<client>-<store>" => …}])
        items = {
            f"{client}-{store}": {"client": client, "store": store, "port": spec["port"]}
            for store, spec in network.locals["stores"].items()
            for client in spec["clients"]
        }
    elif name == "https_ports":  # http always, https with a certificate: both counted
        items = {"http": 80, "https": 443}
    elif name == "flower_cidrs":  # var.flower_allowed_cidrs: an operator network for example
        items = {"192.0.2.0/24": "192.0.2.0/24"}
    else:
        value = network.locals[name]
        items = value if isinstance(value, dict) else {key: key for key in value}
    instances = []
    for key, value in items.items():
        text = json.dumps(body)
        text = text.replace("each.key", key)
        if isinstance(value, dict):
            for field, item in value.items():
                text = text.replace(f"each.value.{field}", str(item))
        else:
            text = text.replace("${each.value}", str(value)).replace("each.value", str(value))
        instances.append(json.loads(text))
    return instances


def _group(reference: str) -> str:
    """`${aws_security_group.service[query].id}` → query; `${aws_security_group.alb.id}` → alb."""
    match = re.fullmatch(r'\$\{aws_security_group\.(\w+)(?:\["?(\w+)"?\])?\.id\}', reference)
    assert match, reference
    return match.group(2) or match.group(1)


def _port(value: Any) -> Any:
    """A port as written: a number (maybe as `${6379}` after substitution) or `${var.app_port}`."""
    match = re.fullmatch(r"\$\{(\d+)\}|(\d+)", str(value))
    return int(match.group(1) or match.group(2)) if match else value


def security_group_flows() -> dict[str, set[tuple[str, str, Any]]]:
    """The flows the ingress rules admit and the flows the egress rules let out."""
    network = config("network")
    flows: dict[str, set[tuple[str, str, Any]]] = {"ingress": set(), "egress": set()}
    for (type_, _), body in network.resources.items():
        kind = type_.removeprefix("aws_vpc_security_group_").removesuffix("_rule")
        if kind not in flows:
            continue
        for rule in _instances(body, network):
            assert rule["ip_protocol"] == "tcp"
            port = _port(rule["from_port"])
            assert _port(rule["to_port"]) == port  # one port, never a range
            own = _group(rule["security_group_id"])
            if "cidr_ipv4" in rule:
                if rule["cidr_ipv4"] != "0.0.0.0/0":
                    continue  # flower_allowed_cidrs → alb: operators' networks
                other = "internet" if kind == "ingress" else "aws"
            else:
                other = _group(rule["referenced_security_group_id"])
            flows[kind].add((other, own, port) if kind == "ingress" else (own, other, port))
    return flows


def test_each_service_has_a_security_group_with_only_the_flows_it_needs():
    flows = security_group_flows()
    # both ends agree: every connection let out is admitted, every admitted one let out
    inside = {flow for flow in flows["egress"] if flow[1] != "aws"}
    assert inside == {flow for flow in flows["ingress"] if flow[0] != "internet"}
    assert flows["ingress"] | flows["egress"] == EXPECTED_FLOWS
    network = config("network")
    assert network.locals["services"] == list(SERVICES)
    assert network.resource("aws_default_security_group", "this") == {
        "vpc_id": "${aws_vpc.this.id}"
    }  # no rule: nothing may use the default group

    # each ECS service and one-off task runs in its own group; the stores use theirs
    root = config()
    services = service_modules()
    assert root.locals["tasks_network"]["security_groups"] == (
        "${module.network.service_security_group_ids}"
    )
    for name, body in services.items():
        if body.get("create_service", True):
            assert body["security_group_ids"] == [
                f'${{local.tasks_network.security_groups["{name}"]}}'
            ], name
        else:  # release and ops run through run-task, in the ops group
            assert "security_group_ids" not in body, name
    assert root.outputs["ops_security_group_id"]["value"] == (
        '${module.network.service_security_group_ids["ops"]}'
    )
    for script in ("build-and-push.sh", "ops-task.sh"):
        text = (ROOT / "ops" / "scripts" / script).read_text()
        assert "security_group=$(output ops_security_group_id)" in text, script
    modules = root.modules
    assert modules["aurora"]["security_group_id"] == "${module.network.aurora_security_group_id}"
    assert modules["redis"]["security_group_id"] == "${module.network.redis_security_group_id}"
    assert modules["monitor_redis"]["security_group_id"] == (
        "${module.network.monitor_redis_security_group_id}"
    )
    outputs = network.outputs
    assert (
        outputs["aurora_security_group_id"]["value"] == '${aws_security_group.store["aurora"].id}'
    )
    assert outputs["redis_security_group_id"]["value"] == '${aws_security_group.store["redis"].id}'
    assert outputs["monitor_redis_security_group_id"]["value"] == (
        '${aws_security_group.store["monitor_redis"].id}'
    )
    # the services that take no connection serve nothing
    for name in ("relay", "worker"):
        for key in ("container_port", "target_group_arn", "health_check_path"):
            assert key not in services[name], (name, key)


def test_the_stores_each_service_reaches_are_the_ones_its_secrets_name():
    """A group that admits a service to a store it has no URL for is a flow nobody needs; a URL
    without the flow is an outage. (release shares the ops group.)"""
    secrets = {name: set(body["secrets"]) for name, body in service_modules().items()}
    secrets["ops"] |= secrets.pop("release")
    reaches = {
        "aurora": {"DATABASE_URL", "DATABASE_READ_URL"},
        "redis": {"REDIS_URL"},
        "monitor_redis": {"MONITOR_BROKER_URL"},
    }
    for name, keys in secrets.items():
        needed = {store for store, urls in reaches.items() if urls & keys}
        allowed = {to for frm, to, _ in EXPECTED_FLOWS if frm == name and to in reaches}
        assert needed == allowed, name


# --- autoscaling


def test_autoscaling_ranges_and_targets():
    services = service_modules()

    def scaling(name: str) -> tuple:
        body = services[name]
        return (
            body.get("min_count"),
            body.get("max_count"),
            body.get("cpu_target"),
            body.get("backlog_queue_name"),
        )

    assert scaling("purchase") == (3, 6, 60, None)
    assert scaling("query") == (1, 3, 70, None)
    assert scaling("worker") == (1, 3, None, "${module.messaging.queue_name}")
    assert scaling("relay") == (1, 4, None, None)  # on the outbox's age instead
    for name in ("events", "flower", "release"):
        assert scaling(name) == (None, None, None, None)

    module = config("ecs_service")
    target = module.resource("aws_appautoscaling_target", "this")
    assert (target["min_capacity"], target["max_capacity"]) == (
        "${var.min_count}",
        "${var.max_count}",
    )
    cpu = one(
        module.resource("aws_appautoscaling_policy", "cpu")[
            "target_tracking_scaling_policy_configuration"
        ]
    )
    assert cpu["target_value"] == "${var.cpu_target}"
    assert one(cpu["predefined_metric_specification"])["predefined_metric_type"] == (
        "ECSServiceAverageCPUUtilization"
    )
    backlog = one(
        module.resource("aws_appautoscaling_policy", "backlog")[
            "target_tracking_scaling_policy_configuration"
        ]
    )
    metrics = one(backlog["customized_metric_specification"])["metrics"]
    by_id = {m["id"]: m for m in metrics}
    visible = one(one(by_id["visible"]["metric_stat"])["metric"])
    tasks = one(one(by_id["tasks"]["metric_stat"])["metric"])
    assert (visible["namespace"], visible["metric_name"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert (tasks["namespace"], tasks["metric_name"]) == (
        "ECS/ContainerInsights",
        "RunningTaskCount",
    )
    returned = [m for m in metrics if m.get("return_data") is True]
    assert len(returned) == 1 and returned[0]["expression"].startswith("visible / ")


# The relay's Prometheus metrics that CloudWatch acts on: (name, type). EMF_NAMES turns them into
# the names CloudWatch gets, through plumbing/emf.py itself.
RELAY_METRICS = {
    "ticketing_outbox_age_seconds": "gauge",
    "ticketing_relay_parked_total": "counter",
}


class _Samples:
    """A registry with one moved sample per metric (emf sends only what moved)."""

    def __init__(self, metrics: dict[str, str]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for name, kind in self.metrics.items():
            if kind == "gauge":
                yield GaugeMetricFamily(name, name, value=7.0)
            else:
                yield CounterMetricFamily(name.removesuffix("_total"), name, value=1.0)


def emf_metrics(service: str, metrics: dict[str, str]) -> dict[str, Any]:
    """What CloudWatch receives from `service`'s EMF lines: the namespace (METRICS_NAMESPACE of
    the task), the dimension sets, the Service value, and for each Prometheus name the metric."""
    emitter = emf.Emitter(_Samples(metrics), service, "${module.monitoring.metrics_namespace}")
    (line,) = emitter.lines(now=0)
    document = json.loads(line)
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    names = [m["Name"] for m in directive["Metrics"]]
    (dimension_set,) = directive["Dimensions"]
    return {
        "namespace": directive["Namespace"],
        "dimensions": directive["Dimensions"],
        "service": document["Service"],
        "dimension_values": {name: document[name] for name in dimension_set},
        "names": dict(zip(metrics, names, strict=True)),
    }


def test_relay_metric_names_are_the_relays_own():
    """Once the relay exists, the names the alarms and the scaling use are the ones it records."""
    sources = [ROOT / "plumbing" / "metrics.py", *sorted((ROOT / "relay").rglob("*.py"))]
    if not (ROOT / "relay").exists():
        pytest.skip("no relay/ in this tree yet")
    text = "\n".join(path.read_text() for path in sources)
    for name in RELAY_METRICS:
        assert name.removesuffix("_total") in text, name


def test_the_relay_scales_on_the_outbox_age_it_emits():
    root = config()
    relay = service_modules()["relay"]
    assert hcl_string(relay["command"]) == "python -m relay"
    emitted = emf_metrics("relay", RELAY_METRICS)
    # the task's METRICS_NAMESPACE is what the scaling reads; dimension Service = the type
    assert root.locals["common_environment"]["METRICS_NAMESPACE"] == emitted["namespace"]
    assert "local.common_environment" in relay["environment"]
    assert emitted["dimensions"] == [["Service"]]
    assert emitted["service"] == relay["name"]
    age = relay["age_scaling"]
    assert age["namespace"] == emitted["namespace"]
    assert age["metric_name"] == emitted["names"]["ticketing_outbox_age_seconds"]

    module = config("ecs_service")
    assert module.locals["age_scaled"] == "${local.scaled && var.age_scaling != null}"
    policies = {}
    for direction, alarm_name in (("out", "age_high"), ("in", "age_low")):
        alarm = module.resource("aws_cloudwatch_metric_alarm", alarm_name)
        assert alarm["count"] == "${local.age_scaled ? 1 : 0}"
        assert (alarm["namespace"], alarm["metric_name"]) == (
            "${var.age_scaling.namespace}",
            "${var.age_scaling.metric_name}",
        )
        # emf's dimension set (the series with every label added up), its value the type
        assert set(alarm["dimensions"]) == set(emitted["dimension_values"])
        assert alarm["dimensions"] == {"Service": "${var.name}"}
        assert alarm["statistic"] == "Maximum"  # the oldest entry any relay sees
        assert alarm["alarm_actions"] == [f"${{aws_appautoscaling_policy.age_{direction}[0].arn}}"]
        policy = module.resource("aws_appautoscaling_policy", f"age_{direction}")
        assert policy["policy_type"] == "StepScaling"
        assert policy["resource_id"] == "${aws_appautoscaling_target.this[0].resource_id}"
        steps = one(policy["step_scaling_policy_configuration"])["step_adjustment"]
        policies[direction] = {
            (step.get("metric_interval_lower_bound"), step.get("metric_interval_upper_bound")): (
                step["scaling_adjustment"]
            )
            for step in steps
        }
        policies[direction + "_alarm"] = alarm
    high, low = policies["out_alarm"], policies["in_alarm"]
    assert (high["comparison_operator"], high["threshold"]) == (
        "GreaterThanThreshold",
        "${var.age_scaling.scale_out_above_seconds}",
    )
    assert high["treat_missing_data"] == "notBreaching"  # no line: nothing waited
    assert (low["comparison_operator"], low["threshold"]) == (
        "LessThanThreshold",
        "${var.age_scaling.scale_in_below_seconds}",
    )
    assert low["evaluation_periods"] == low["datapoints_to_alarm"] >= 10
    assert policies["out"] == {
        (0, "${var.age_scaling.far_above_seconds}"): 1,
        ("${var.age_scaling.far_above_seconds}", None): 2,
    }
    assert policies["in"] == {(None, 0): -1}
    variables = root.variables
    assert age["scale_out_above_seconds"] == "${var.relay_scale_out_age_seconds}"
    assert age["scale_in_below_seconds"] == "${var.relay_scale_in_age_seconds}"
    assert (
        variables["relay_scale_in_age_seconds"]["default"]
        < variables["relay_scale_out_age_seconds"]["default"]
        < variables["outbox_age_alarm_seconds"]["default"]
    )  # it scales out well before anyone is paged


def test_every_service_is_redeployed_by_build_and_push():
    services = [
        name for name, body in service_modules().items() if body.get("create_service", True)
    ]
    listed = config().outputs["ecs_services"]["value"]
    assert sorted(listed) == sorted(f"${{module.{name}.service_name}}" for name in services)


# --- messaging: exactly the local set-up


@pytest.fixture(scope="module")
def local_messaging() -> dict[str, Any]:
    """What ops/local/aws_resources.py creates, read back from moto server."""
    prefix = f"tf{uuid.uuid4().hex[:8]}"
    created = aws_resources.create_messaging(prefix)
    sqs = boto3.client("sqs")
    sns = boto3.client("sns")
    queue = sqs.get_queue_attributes(QueueUrl=created.queue_url, AttributeNames=["All"])
    dlq = sqs.get_queue_attributes(QueueUrl=created.dead_letter_queue_url, AttributeNames=["All"])
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=created.topic_arn)["Subscriptions"]
    assert len(subscriptions) == 1
    subscription = sns.get_subscription_attributes(
        SubscriptionArn=subscriptions[0]["SubscriptionArn"]
    )["Attributes"]
    return {
        "prefix": prefix,
        "created": created,
        "queue": queue["Attributes"],
        "dlq": dlq["Attributes"],
        "subscription": subscription,
    }


def test_messaging_names_match_the_local_set_up(local_messaging):
    messaging = config("messaging")
    prefix = local_messaging["prefix"]
    created = local_messaging["created"]

    def name(resource: str, type_: str) -> str:
        return messaging.resource(type_, resource)["name"].replace("${var.prefix}", prefix)

    assert created.topic_arn.endswith(":" + name("events", "aws_sns_topic"))
    assert created.queue_url.endswith("/" + name("tickets", "aws_sqs_queue"))
    assert created.dead_letter_queue_url.endswith("/" + name("dlq", "aws_sqs_queue"))
    assert config().variables["messaging_prefix"]["default"] == "ticket"
    assert config().modules["messaging"]["prefix"] == "${var.messaging_prefix}"


def test_messaging_attributes_match_the_local_set_up(local_messaging):
    values = config("messaging").locals
    assert values["visibility_timeout_seconds"] == aws_resources.DEFAULT_VISIBILITY_TIMEOUT
    assert values["max_receive_count"] == aws_resources.DEFAULT_MAX_RECEIVE_COUNT

    queue = local_messaging["queue"]
    assert int(queue["VisibilityTimeout"]) == values["visibility_timeout_seconds"]
    assert int(queue["ReceiveMessageWaitTimeSeconds"]) == values["receive_wait_time_seconds"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == values["max_receive_count"]
    assert redrive["deadLetterTargetArn"] == local_messaging["dlq"]["QueueArn"]
    assert (
        int(local_messaging["dlq"]["MessageRetentionPeriod"])
        == (values["dlq_message_retention_seconds"])
    )

    resource = config("messaging").resource("aws_sqs_queue", "tickets")
    assert resource["visibility_timeout_seconds"] == "${local.visibility_timeout_seconds}"
    assert resource["receive_wait_time_seconds"] == "${local.receive_wait_time_seconds}"
    redrive_hcl = re.sub(r"\s+", " ", resource["redrive_policy"])
    assert "deadLetterTargetArn = aws_sqs_queue.dlq.arn" in redrive_hcl
    assert "maxReceiveCount = local.max_receive_count" in redrive_hcl
    dlq = config("messaging").resource("aws_sqs_queue", "dlq")
    assert dlq["message_retention_seconds"] == "${local.dlq_message_retention_seconds}"


def test_redrive_and_visibility_leave_room_for_the_workers_retries():
    values = config("messaging").locals
    assert values["max_receive_count"] >= 3
    # a retry countdown longer than the visibility timeout makes SQS redeliver the message
    assert values["visibility_timeout_seconds"] >= 60
    assert values["visibility_timeout_seconds"] > settings.load().task_retry_backoff_cap


def test_subscription_is_raw_and_the_queue_policy_is_scoped_to_the_topic(local_messaging):
    messaging = config("messaging")
    subscription = messaging.resource("aws_sns_topic_subscription", "tickets")
    assert subscription["raw_message_delivery"] is True
    assert local_messaging["subscription"]["RawMessageDelivery"] == "true"
    assert subscription["protocol"] == "sqs"
    assert subscription["endpoint"] == "${aws_sqs_queue.tickets.arn}"
    assert subscription["topic_arn"] == "${aws_sns_topic.events.arn}"

    local_policy = json.loads(local_messaging["queue"]["Policy"])
    (local_statement,) = local_policy["Statement"]
    statement = one(messaging.data[("aws_iam_policy_document", "queue")]["statement"])
    assert statement["sid"] == local_statement["Sid"]
    assert statement["effect"] == local_statement["Effect"]
    assert statement["actions"] == [local_statement["Action"]]
    assert statement["resources"] == ["${aws_sqs_queue.tickets.arn}"]
    principal = one(statement["principals"])
    assert (principal["type"], principal["identifiers"]) == (
        "Service",
        [local_statement["Principal"]["Service"]],
    )
    condition = one(statement["condition"])
    ((test, values),) = local_statement["Condition"].items()
    ((variable, _),) = values.items()
    assert (condition["test"], condition["variable"]) == (test, variable)
    assert condition["values"] == ["${aws_sns_topic.events.arn}"]
    assert messaging.resource("aws_sqs_queue_policy", "tickets")["queue_url"] == (
        "${aws_sqs_queue.tickets.id}"
    )


def test_alarms_on_dead_letters_and_oldest_message_age():
    monitoring = config("monitoring")
    dlq = monitoring.resource("aws_cloudwatch_metric_alarm", "dlq_not_empty")
    assert dlq["metric_name"] == "ApproximateNumberOfMessagesVisible"
    assert dlq["dimensions"] == {"QueueName": "${var.dlq_name}"}
    assert (dlq["comparison_operator"], dlq["threshold"]) == ("GreaterThanThreshold", 0)
    age = monitoring.resource("aws_cloudwatch_metric_alarm", "oldest_message_age")
    assert age["metric_name"] == "ApproximateAgeOfOldestMessage"
    assert age["dimensions"] == {"QueueName": "${var.queue_name}"}
    root = config().modules["monitoring"]
    assert root["dlq_name"] == "${module.messaging.dlq_name}"
    assert root["queue_name"] == "${module.messaging.queue_name}"


# --- IAM


def test_task_roles_are_least_privilege():
    iam = config("iam")
    policies = iam.locals["policies"]
    # purchase, query, flower, release: none (a purchase writes its outbox entry in Redis)
    assert set(policies) == {"relay", "worker", "events", "ops"}

    def grants(name: str) -> set[tuple[str, str]]:
        return {
            (action, resource)
            for statement in policies[name]
            for action in statement["actions"]
            for resource in statement["resources"]
        }

    # sns:Publish authorises sns:PublishBatch too; nothing else, nowhere else
    assert grants("relay") == {("sns:Publish", "${var.topic_arn}")}
    for name in set(policies) - {"relay"}:
        assert not any(action.startswith("sns:") for action, _ in grants(name)), name
    assert modules_topic() == "${module.messaging.topic_arn}"
    assert grants("worker") == {
        (action, "${var.queue_arn}")
        for action in (
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
            "sqs:SendMessage",
        )
    }
    assert grants("events") == {
        ("sqs:GetQueueAttributes", "${var.queue_arn}"),
        ("sqs:GetQueueAttributes", "${var.dlq_arn}"),
    }
    assert grants("ops") == {
        ("sqs:GetQueueAttributes", "${var.queue_arn}"),
        ("sqs:GetQueueAttributes", "${var.dlq_arn}"),
        ("sqs:ReceiveMessage", "${var.dlq_arn}"),
        ("sqs:DeleteMessage", "${var.dlq_arn}"),
        ("sqs:StartMessageMoveTask", "${var.dlq_arn}"),
        ("sqs:SendMessage", "${var.queue_arn}"),
    }
    modules = config().modules
    assert modules["iam"]["queue_arn"] == "${module.messaging.queue_arn}"
    assert modules["iam"]["dlq_arn"] == "${module.messaging.dlq_arn}"
    for name, body in service_modules().items():
        assert body["task_role_arn"] == f'${{module.iam.task_role_arns["{name}"]}}'

    # execution roles read only their own service's secrets
    execution = one(
        config("ecs_service").data[("aws_iam_policy_document", "secrets")]["statement"][0:1]
    )
    assert execution["actions"] == ["secretsmanager:GetSecretValue"]
    assert execution["resources"] == "${distinct(values(var.secrets))}"


def modules_topic() -> str:
    return config().modules["iam"]["topic_arn"]


def test_no_wildcard_actions_in_any_policy():
    for directory in ["", *(p.name for p in MODULES.iterdir() if p.is_dir())]:
        for (type_, name), body in config(directory).data.items():
            if type_ != "aws_iam_policy_document":
                continue
            for statement in body.get("statement", []):
                if statement.get("sid") == "AccountAdministers":  # the KMS key's own account
                    assert (directory, statement["actions"]) == ("kms", ["kms:*"])
                    continue
                for action in statement.get("actions", []):
                    assert action != "*" and not action.endswith(":*"), (directory, name, action)


def test_log_groups_have_retention():
    for directory in ("ecs_service", "network"):
        for (type_, _), body in config(directory).resources.items():
            if type_ == "aws_cloudwatch_log_group":
                assert body["retention_in_days"] == "${var.log_retention_days}"
    assert config().variables["log_retention_days"]["default"] > 0


# --- static-check hygiene


def test_every_checkov_skip_names_a_check_and_a_reason():
    skips = []
    for path in TF.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                match = re.search(r"#checkov:skip=(CKV2?_AWS_\d+):(.{20,})", line)
                assert match, f"{path}: {line.strip()}"
                skips.append(match.group(1))
    assert skips


def test_nothing_secret_is_committed_with_terraform():
    ignored = (TF / ".gitignore").read_text().split()
    assert {"*.tfstate", "terraform.tfvars", ".terraform/"} <= set(ignored)
    for path in TF.rglob("*"):
        assert not path.name.endswith((".tfstate", ".tfvars")), path


def test_the_web_services_verify_tokens_from_the_identity_provider():
    """The purchase and query tasks get an issuer and a key set (they refuse to start without
    one), from the Cognito pool the identity module creates or from another provider's
    variables; operators are the pool's `operator` group, read from `cognito:groups`."""
    web = config().locals["web_environment"]
    for name, source in (
        ("JWT_ISSUER", "module.identity.issuer"),
        ("JWT_JWKS_URL", "module.identity.jwks_url"),
        ("JWT_ROLES_CLAIM", "module.identity.roles_claim"),
    ):
        assert f"{name} = {source}" in web, name
    assert "JWT_SECRET" not in web  # no shared secret on AWS
    identity = config("identity")
    assert one(identity.resource("aws_cognito_user_group", "operator"))["name"] == "operator"
    assert "cognito:groups" in json.dumps(identity.outputs["roles_claim"])
    assert "/.well-known/jwks.json" in json.dumps(identity.locals["jwks_url"])
    for service in ("purchase", "query"):
        environment = json.dumps(config().modules[service]["environment"])
        assert "web_environment" in environment or "purchase_environment" in environment

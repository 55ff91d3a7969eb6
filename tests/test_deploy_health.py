"""Behind the load balancer: keep-alive against the ALB's idle timeout, shallow health for the
ALB and the containers, deep health for operators (and not routed from the internet)."""

from __future__ import annotations

import posixpath
import re
import runpy
from fnmatch import fnmatchcase
from urllib.parse import unquote

import pytest

from tests.support.processes import ROOT
from tests.test_terraform import config, one, service_modules

WEB = ("purchase", "query", "events")


def gunicorn_keepalive(monkeypatch, environment: dict[str, str]) -> int:
    """gunicorn.conf.py's keep-alive under the environment a task gets."""
    monkeypatch.delenv("GUNICORN_KEEPALIVE", raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))["keepalive"]


def test_gunicorn_keeps_idle_connections_longer_than_the_alb(monkeypatch):
    """The ALB must close idle connections, never the backend: else a request sent on a
    connection gunicorn is closing at that moment is a 502."""
    alb_module = config().modules["alb"]
    idle_timeout = alb_module.get(
        "idle_timeout", config("alb").variables["idle_timeout"]["default"]
    )
    assert config("alb").resource("aws_lb", "this")["idle_timeout"] == "${var.idle_timeout}"
    web_environment = config().locals["web_environment"]
    # whatever the web tasks' environment sets, or gunicorn.conf.py's default
    set_there = re.search(r'GUNICORN_KEEPALIVE\s*=\s*"?(\d+)', str(web_environment))
    environment = {"GUNICORN_KEEPALIVE": set_there.group(1)} if set_there else {}
    keepalive = gunicorn_keepalive(monkeypatch, environment)
    assert keepalive > idle_timeout, (keepalive, idle_timeout)


def test_the_alb_and_the_containers_probe_the_shallow_health_endpoints():
    alb = config("alb")
    paths = {name: route["health_path"] for name, route in alb.locals["routes"].items()}
    assert paths == {name: f"/{name}/health" for name in WEB}
    services = service_modules()
    for name in WEB:
        assert services[name]["health_check_path"] == paths[name]
    for name in ("relay", "worker", "flower", "release"):
        assert "health_check_path" not in services[name]

    ecs = config("ecs_service")
    check = ecs.locals["health_check"]
    assert "var.health_check_path == null ? null" in check
    assert "http://127.0.0.1:${coalesce(var.container_port, 0)}${var.health_check_path}" in check
    definition = re.sub(
        r"\s+", " ", ecs.resource("aws_ecs_task_definition", "this")["container_definitions"]
    )
    assert "healthCheck = local.health_check" in definition


def test_operator_endpoints_are_not_routed_from_the_internet(app):
    """`…/health/deep` and `…/metrics` answer 404 at the ALB, before any route forwards."""
    alb = config("alb")
    rule = alb.resource("aws_lb_listener_rule", "internal")
    assert rule["priority"] == "${local.internal_priority}"
    assert one(rule["action"])["type"] == "fixed-response"
    patterns = alb.locals["internal_paths"]
    assert one(one(rule["condition"])["path_pattern"])["values"] == "${local.internal_paths}"
    assert alb.locals["internal_priority"] < min(
        route["priority"] for route in alb.locals["routes"].values()
    )

    def blocked(path: str) -> bool:
        return any(fnmatchcase(path, pattern) for pattern in patterns)

    rules = [rule.rule for rule in app.url_map.iter_rules()]
    internal = [r for r in rules if r.endswith(("/health/deep", "/metrics"))]
    assert {f"/{name}/health/deep" for name in WEB} | {f"/{name}/metrics" for name in WEB} <= set(
        internal
    )
    assert all(blocked(path) for path in internal)
    public = [r for r in rules if r not in internal]
    assert not [path for path in public if blocked(path)]


def waf_blocks_internal(raw_path: str) -> bool:
    """The web ACL's internal-paths rule (modules/alb/waf.tf), as WAF evaluates it: its text
    transformations in priority order on the raw URI path, then ENDS_WITH each suffix."""
    rule = next(
        r
        for r in config("alb").resource("aws_wafv2_web_acl", "this")["rule"]
        if r["name"] == "internal-paths"
    )
    dynamic = one(one(one(rule["statement"])["or_statement"])["dynamic"])["statement"]
    assert dynamic["for_each"] == "${local.internal_suffixes}"
    match = one(one(dynamic["content"])["byte_match_statement"])
    assert (match["positional_constraint"], match["search_string"]) == (
        "ENDS_WITH",
        "${statement.value}",
    )
    assert one(match["field_to_match"]) == {"uri_path": [{}]}
    path = raw_path
    for step in sorted(match["text_transformation"], key=lambda t: t["priority"]):
        path = WAF_TRANSFORMATIONS[step["type"]](path)
    return any(path.endswith(suffix) for suffix in config("alb").locals["internal_suffixes"])


WAF_TRANSFORMATIONS = {
    "NONE": lambda path: path,
    "URL_DECODE": unquote,
    "LOWERCASE": str.lower,
    # WAF's NORMALIZE_PATH: no repeated slashes, no `./`, `../` resolved
    "NORMALIZE_PATH": lambda path: re.sub(r"/{2,}", "/", posixpath.normpath(path)),
}


def test_encoded_operator_paths_pass_the_listener_rule_but_not_the_waf(app):
    """gunicorn and Flask decode the path before routing; the listener rule's patterns are
    literal, and whether the ALB decodes before comparing is not documented. So
    `/purchase/%6Detrics` may be forwarded by `/purchase*` and served as the metrics: the web
    ACL, which URL-decodes and normalises before it compares, answers 404 to it."""
    patterns = config("alb").locals["internal_paths"]
    assert sorted(config("alb").locals["internal_suffixes"]) == sorted(
        pattern.removeprefix("/*") for pattern in patterns
    )
    client = app.test_client()
    for service in WEB:
        for raw in (f"/{service}/%6Detrics", f"/{service}/health/%64eep"):
            assert not any(fnmatchcase(raw, pattern) for pattern in patterns), raw
            assert fnmatchcase(raw, config("alb").locals["routes"][service]["path_pattern"])
            assert client.get(raw).status_code != 404, raw  # the app serves it decoded
            assert waf_blocks_internal(raw), raw
        assert waf_blocks_internal(f"/{service}//metrics")
        assert waf_blocks_internal(f"/{service}/x/../metrics")
    for path in ("/purchase/events/Event1/zones/1/seats", "/query/events", "/events/health"):
        assert not waf_blocks_internal(path), path


# --- the endpoints


@pytest.fixture
def dependencies_down(monkeypatch):
    """Every dependency a health view could call raises: Redis, MySQL, SQS, heartbeats."""
    import redis

    import models
    from messaging import queues
    from models import seats
    from web import events

    def refuse(*_, **__):
        raise redis.ConnectionError("dependency down")

    class DeadEngine:
        def connect(self):
            from sqlalchemy.exc import OperationalError

            raise OperationalError("SELECT 1", {}, Exception("database down"))

    monkeypatch.setattr(seats, "client", refuse)
    monkeypatch.setattr(seats, "ping", refuse)
    monkeypatch.setattr(models, "reader", lambda: DeadEngine())
    monkeypatch.setattr(events, "monitor_redis", refuse)
    monkeypatch.setattr(queues, "depths", refuse)


def test_shallow_health_answers_200_with_every_dependency_down(app, dependencies_down):
    client = app.test_client()
    for name in WEB:
        response = client.get(f"/{name}/health")
        assert (response.status_code, response.get_json()) == (200, {"status": "UP"}), name


def test_deep_health_answers_503_with_reasons_with_every_dependency_down(app, dependencies_down):
    client = app.test_client()
    purchase = client.get("/purchase/health/deep")
    assert purchase.status_code == 503
    assert purchase.get_json()["checks"] == {"redis": "DOWN"}
    assert len(purchase.get_json()["reasons"]) == 1
    query = client.get("/query/health/deep")
    assert (query.status_code, query.get_json()["checks"]) == (503, {"database": "DOWN"})
    events = client.get("/events/health/deep")
    assert events.status_code == 503
    reasons = events.get_json()["reasons"]
    assert "heartbeats unreadable" in reasons  # the reason, never the exception's text
    assert "queue attributes unreadable" in reasons

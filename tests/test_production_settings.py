"""APP_ENV=production refuses development defaults (loopback URLs, moto's endpoint and account),
naming each; the values Terraform gives the tasks pass."""

from __future__ import annotations

import os
import subprocess

import pytest

from plumbing import settings
from tests.support.processes import BIN, ROOT
from tests.test_terraform import config, hcl_string

ACCOUNT = "210987654321"
PRODUCTION = {
    "APP_ENV": "production",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "REDIS_URL": "rediss://:token@clustercfg.seats.abc123.euw1.cache.amazonaws.com:6379/0",
    "REDIS_CLUSTER": "true",
    "MONITOR_BROKER_URL": "rediss://:token@master.monitor.abc123.euw1.cache.amazonaws.com:6379/0",
    "DATABASE_URL": "mysql+pymysql://u:p@ticketing.cluster-abc.eu-west-1.rds.amazonaws.com:3306/t",
    "DATABASE_READ_URL": "mysql+pymysql://u:p@ticketing.cluster-ro-abc.eu-west-1.rds.amazonaws.com:3306/t",
    "TICKET_TOPIC_ARN": f"arn:aws:sns:eu-west-1:{ACCOUNT}:ticket-events",
    "TICKET_QUEUE_URL": f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/ticket-sql",
    "TICKET_DLQ_URL": f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/ticket-sql-dlq",
    "JWT_ISSUER": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc",
    "JWT_JWKS_URL": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Abc/.well-known/jwks.json",
    "JWT_SECRET": "",
}
ENDPOINTS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_SQS")


@pytest.fixture
def production(monkeypatch) -> dict[str, str]:
    for name in ENDPOINTS:
        monkeypatch.delenv(name, raising=False)
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    return PRODUCTION


def test_production_values_load(production):
    assert settings.load().app_env == "production"


def test_development_is_the_default(monkeypatch):
    monkeypatch.delenv("APP_ENV", raising=False)
    assert settings.load().app_env == "development"  # the test environment: loopback and moto


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("REDIS_URL", "rediss://:t@127.0.0.1:6379/0", "REDIS_URL points at 127.0.0.1"),
        (
            "MONITOR_BROKER_URL",
            "redis://localhost:6379/1",
            "MONITOR_BROKER_URL points at localhost",
        ),
        (
            "DATABASE_URL",
            "mysql+pymysql://root@127.0.0.1:3306/t",
            "DATABASE_URL points at 127.0.0.1",
        ),
        ("DATABASE_READ_URL", "mysql+pymysql://r@[::1]:3306/t", "DATABASE_READ_URL points at ::1"),
        ("TICKET_QUEUE_URL", "http://127.0.0.1:4566/1/ticket-sql", "TICKET_QUEUE_URL points at"),
        (
            "TICKET_TOPIC_ARN",
            "arn:aws:sns:eu-west-1:123456789012:ticket-events",
            "TICKET_TOPIC_ARN names moto's account 123456789012",
        ),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566", "AWS_ENDPOINT_URL is set"),
        ("AWS_ENDPOINT_URL_SQS", "https://sqs.example", "AWS_ENDPOINT_URL_SQS is set"),
    ],
)
def test_production_refuses_each_development_setting(production, monkeypatch, name, value, said):
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError, match="APP_ENV=production refuses") as refused:
        settings.load()
    assert said in str(refused.value)


def test_production_refuses_the_defaults_and_names_them_all(monkeypatch):
    for name in (*PRODUCTION, *ENDPOINTS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APP_ENV", "production")
    with pytest.raises(settings.SettingsError) as refused:
        settings.load()
    message = str(refused.value)
    for name in ("REDIS_URL", "DATABASE_URL", "TICKET_QUEUE_URL", "TICKET_TOPIC_ARN"):
        assert name in message


def test_an_unknown_app_env_is_refused(monkeypatch):
    monkeypatch.setenv("APP_ENV", "prod")
    with pytest.raises(settings.SettingsError, match="APP_ENV='prod' must be one of"):
        settings.load()


def test_a_production_process_refuses_to_start_on_the_test_settings():
    """The test environment is a developer's: loopback Redis and MySQL, moto."""
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "web", "dlq", "list"],
        cwd=ROOT,
        env={**os.environ, "APP_ENV": "production"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "APP_ENV=production refuses development settings" in done.stderr
    assert "AWS_ENDPOINT_URL is set" in done.stderr


def test_terraform_runs_every_task_in_production_with_urls_that_pass(production, monkeypatch):
    assert config().locals["common_environment"]["APP_ENV"] == "production"
    # the URL secrets as Terraform writes them, with example endpoints
    aurora = config("aurora")
    writer = aurora.resource("aws_secretsmanager_secret_version", "database_url")["secret_string"]
    redis = config("redis").resource("aws_secretsmanager_secret_version", "redis_url")
    filled = {
        "${local.credentials}": "ticketing:pw",
        "${aws_rds_cluster.this.endpoint}": "ticketing.cluster-abc.eu-west-1.rds.amazonaws.com",
        "${var.database_name}": "ticketing",
        "${local.url_query}": aurora.locals["url_query"],
        "${random_password.auth.result}": "token",
        "${local.endpoint}": "clustercfg.seats.abc123.euw1.cache.amazonaws.com",
    }

    def fill(template: str) -> str:
        for placeholder, value in filled.items():
            template = template.replace(placeholder, value)
        assert "${" not in template, template
        return hcl_string(template)

    monkeypatch.setenv("DATABASE_URL", fill(writer))
    monkeypatch.delenv("DATABASE_READ_URL")
    monkeypatch.setenv("REDIS_URL", fill(redis["secret_string"]))
    assert settings.load().app_env == "production"


@pytest.mark.parametrize(
    ("replicas", "timeout_ms", "refused"),
    [
        ("0", "600", None),
        ("1", "50", None),
        ("1", "500", "REDIS_WAIT_TIMEOUT_MS=500"),
        ("-1", "50", "REDIS_WAIT_REPLICAS"),
    ],
)
def test_wait_settings(monkeypatch, replicas, timeout_ms, refused):
    """0 turns WAIT off; a WAIT timeout must end before the socket timeout (0.5 s here), else a
    lagging replica would drop the connection instead of answering how many acknowledged."""
    monkeypatch.setenv("REDIS_SOCKET_TIMEOUT", "0.5")
    monkeypatch.setenv("REDIS_WAIT_REPLICAS", replicas)
    monkeypatch.setenv("REDIS_WAIT_TIMEOUT_MS", timeout_ms)
    if refused is None:
        assert settings.load().redis_wait_replicas == int(replicas)
    else:
        with pytest.raises(settings.SettingsError, match=refused):
            settings.load()


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        (
            {"JWT_JWKS_URL": "", "JWT_SECRET": settings.DEVELOPMENT_JWT_SECRET},
            "JWT_SECRET is the development value",
        ),
        ({"JWT_ISSUER": settings.DEVELOPMENT_JWT_ISSUER}, "JWT_ISSUER is the development issuer"),
        ({"JWT_JWKS_URL": "http://127.0.0.1:9000/jwks.json"}, "JWT_JWKS_URL points at 127.0.0.1"),
    ],
)
def test_production_refuses_development_tokens(production, monkeypatch, changes, said):
    for name, value in changes.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError, match=said):
        settings.load()


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"JWT_SECRET": "x" * 40, "JWT_JWKS_URL": "https://idp/jwks"}, "not both"),
        ({"JWT_SECRET": "short"}, "at least 32 bytes"),
        ({"JWT_SECRET": "x" * 40, "JWT_ISSUER": ""}, "JWT_ISSUER must be set"),
    ],
)
def test_token_settings_that_cannot_be_right_are_refused(monkeypatch, changes, said):
    for name, value in changes.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError, match=said):
        settings.load()


def test_a_purchase_api_without_a_way_to_verify_tokens_does_not_start():
    """gunicorn with neither JWT_SECRET nor JWT_JWKS_URL: the process exits naming them,
    instead of refusing every buyer with 401."""
    env = {**os.environ, "JWT_SECRET": "", "JWT_JWKS_URL": ""}
    done = subprocess.run(
        [str(BIN / "python"), "-c", "from web import create_app; create_app('purchase')"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "JWT_SECRET (HS256) or JWT_JWKS_URL (RS256) must be set" in done.stderr

"""Every setting the processes read, from the environment only (12-factor), in one place.

Shared by the web apps, the relay, the Celery worker, the migrations and the CLI. `load()` fails
fast with a message naming the variable when one is missing or malformed; `.env.example` lists
them all.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("development", "production")
LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
MOTO_ACCOUNT = "123456789012"  # moto's fixed account id; never a real one
# Secrets and the token issuer `make run` and the tests use; production refuses each.
DEVELOPMENT_JWT_ISSUER = "ticketing-development"
DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-0123456789abcdef"
DEVELOPMENT_PAYMENT_WEBHOOK_SECRET = "development-payment-webhook-secret"
DEVELOPMENT_SECRETS = {  # setting name => value
    "JWT_SECRET": DEVELOPMENT_JWT_SECRET,
    "PAYMENT_WEBHOOK_SECRET": DEVELOPMENT_PAYMENT_WEBHOOK_SECRET,
}


class SettingsError(RuntimeError):
    """A setting is missing or malformed."""


def _str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise SettingsError(f"environment variable {name} must be set (see .env.example)")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def _optional(name: str) -> str:
    """The variable's value, or "" when it is unset: the caller decides what that means."""
    return os.environ.get(name, "")


def _bool(name: str, default: bool) -> bool:
    """true/false (also 1/0, yes/no, on/off); anything else is a typo worth failing on."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (true or false)")


def _monitor_url(redis_url: str, redis_cluster: bool) -> str:
    """MONITOR_BROKER_URL, or "" when it must be given and was not.

    kombu's Redis transport (Celery events, remote control) and the heartbeats need a plain,
    non-cluster Redis. Without a cluster the seat Redis serves; with one there is no sound
    default, and a URL equal to the cluster's is refused here, not found out under load.
    """
    url = _optional("MONITOR_BROKER_URL")
    if not redis_cluster:
        return url or redis_url
    if url == redis_url:
        raise SettingsError(
            "MONITOR_BROKER_URL must not be REDIS_URL when REDIS_CLUSTER=true: the monitoring "
            "plane needs a Redis without cluster mode"
        )
    return url


def _seconds_or_off(name: str, default: float) -> float:
    """A period in seconds, or 0 for off."""
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    with contextlib.suppress(ValueError):  # _float names the variable in its message
        if float(raw) == 0:
            return 0.0
    return _float(name, default)


def _currency() -> str:
    """CURRENCY: the ISO 4217 code of every price and amount (one currency per deployment)."""
    code = _str("CURRENCY", "USD")
    if len(code) != 3 or not code.isascii() or not code.isalpha() or not code.isupper():
        raise SettingsError(f"CURRENCY={code!r} is not an ISO 4217 code such as USD")
    return code


def _count(name: str, default: int) -> int:
    """A whole number ≥ 0 (0 means none)."""
    value = _seconds_or_off(name, default)
    if value != int(value):
        raise SettingsError(f"{name}={value!r} must be a whole number")
    return int(value)


def _int(name: str, default: int) -> int:
    value = _float(name, default)
    if value != int(value):
        raise SettingsError(f"{name}={value!r} must be a whole number")
    return int(value)


def _development_leftovers(values: dict[str, str]) -> list[str]:
    """What in `values` (setting name => value) only makes sense on a developer's machine."""
    found = []
    for name, value in values.items():
        if not value:
            continue
        host = urlsplit(value).hostname if "://" in value else None
        if host in LOOPBACK:
            found.append(f"{name} points at {host}")
        if f":{MOTO_ACCOUNT}:" in value or f"/{MOTO_ACCOUNT}/" in value:
            found.append(f"{name} names moto's account {MOTO_ACCOUNT}")
    if values.get("JWT_ISSUER") == DEVELOPMENT_JWT_ISSUER:
        found.append(f"JWT_ISSUER is the development issuer {DEVELOPMENT_JWT_ISSUER}")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SNS", "AWS_ENDPOINT_URL_SQS"):
        if os.environ.get(name):
            found.append(f"{name} is set ({os.environ[name]}): AWS calls would not reach AWS")
    for name, development in DEVELOPMENT_SECRETS.items():
        if os.environ.get(name) == development:
            found.append(f"{name} is the development value")
    return found


def _check_environment(app_env: str, values: dict[str, str]) -> None:
    """APP_ENV=production refuses to start on development defaults, naming each."""
    if app_env not in ENVIRONMENTS:
        raise SettingsError(f"APP_ENV={app_env!r} must be one of {', '.join(ENVIRONMENTS)}")
    if app_env != "production":
        return
    found = _development_leftovers(values)
    if found:
        raise SettingsError(
            "APP_ENV=production refuses development settings: "
            + "; ".join(found)
            + ". Set the production values (the ECS task definitions do), or APP_ENV=development."
        )


@dataclass(frozen=True)
class Settings:
    """The process configuration."""

    app_env: str

    redis_url: str
    redis_cluster: bool
    redis_socket_timeout: float
    redis_wait_replicas: int
    redis_wait_timeout_ms: int
    database_url: str
    database_read_url: str
    aws_region: str
    topic_arn: str
    queue_url: str
    dead_letter_queue_url: str
    broker_connect_timeout: float
    broker_read_timeout: float
    catalog_file: Path
    catalog_cache_seconds: float
    currency: str
    payment_webhook_secret: str  # "" when unset: every webhook is then refused
    retry_after_seconds: int
    seat_map_cache_seconds: float
    seat_map_cache_entries: int
    seat_map_cache_bytes: int
    worker_heartbeat_seconds: float
    worker_alive_seconds: float
    task_max_retries: int
    task_retry_backoff_cap: int
    monitor_broker_url: str
    monitor_health_check_seconds: float
    worker_metrics_port: int
    projection_stall_seconds: float
    persist_batch_max: int
    persist_batch_window: float
    persist_batch_timeout: float
    metrics_emf_seconds: float
    metrics_namespace: str
    relay_batch_window: float
    relay_senders: int
    relay_max_attempts: int
    relay_claim_idle: float
    relay_idle_sleep: float
    relay_heartbeat_seconds: float
    relay_alive_seconds: float
    relay_metrics_port: int
    sweep_interval: float
    sweep_batch: int
    jwt_issuer: str
    jwt_audience: str
    jwt_roles_claim: str
    jwt_secret: str
    jwt_jwks_url: str
    jwt_jwks_cache_seconds: float
    max_seats_per_buyer: int
    rate_limit_burst: int
    rate_limit_window_seconds: float
    max_seats_per_order: int
    hold_seconds: float

    def monitor_url(self) -> str:
        """The monitoring plane's Redis (events, remote control, heartbeats); never the cluster.

        Raises SettingsError in a process that needs it when REDIS_CLUSTER=true left it unset.
        """
        if not self.monitor_broker_url:
            raise SettingsError(
                "environment variable MONITOR_BROKER_URL must be set when REDIS_CLUSTER=true: "
                "the monitoring plane needs a Redis without cluster mode (see .env.example)"
            )
        return self.monitor_broker_url

    @property
    def topic_name(self) -> str:
        """SNS topic name: the last part of its ARN; also the name of the Celery exchange."""
        return self.topic_arn.rsplit(":", 1)[-1]

    @property
    def queue_name(self) -> str:
        """SQS queue name: the last path segment of its URL; also the Celery queue name."""
        return self.queue_url.rstrip("/").rsplit("/", 1)[-1]


def load() -> Settings:
    """Read the settings from the environment; raise SettingsError on a bad value."""
    region = _str("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "us-east-1"))
    database_url = _str("DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306/ticketing")
    topic_arn = _str("TICKET_TOPIC_ARN", f"arn:aws:sns:{region}:123456789012:ticket-events")
    if not topic_arn.startswith("arn:") or topic_arn.count(":") < 5:
        raise SettingsError(f"TICKET_TOPIC_ARN={topic_arn!r} is not an SNS topic ARN")
    queue_url = _str("TICKET_QUEUE_URL", "http://127.0.0.1:4566/123456789012/ticket-sql")
    dlq_url = _str("TICKET_DLQ_URL", queue_url.rstrip("/") + "-dlq")
    for name, url in (("TICKET_QUEUE_URL", queue_url), ("TICKET_DLQ_URL", dlq_url)):
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{name}={url!r} is not a queue URL")
    catalog = Path(_str("CATALOG_FILE", str(ROOT / "models" / "catalog.json")))
    redis_url = _str("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_cluster = _bool("REDIS_CLUSTER", False)
    app_env = _str("APP_ENV", "development")
    monitor_broker_url = _monitor_url(redis_url, redis_cluster)
    database_read_url = _str("DATABASE_READ_URL", database_url)
    jwt_secret, jwt_jwks_url = _optional("JWT_SECRET"), _optional("JWT_JWKS_URL")
    jwt_issuer = _optional("JWT_ISSUER")
    _check_environment(
        app_env,
        {
            "REDIS_URL": redis_url,
            "MONITOR_BROKER_URL": monitor_broker_url,
            "DATABASE_URL": database_url,
            "DATABASE_READ_URL": database_read_url,
            "TICKET_TOPIC_ARN": topic_arn,
            "TICKET_QUEUE_URL": queue_url,
            "TICKET_DLQ_URL": dlq_url,
            "JWT_SECRET": jwt_secret,
            "JWT_ISSUER": jwt_issuer,
            "JWT_JWKS_URL": jwt_jwks_url,
        },
    )
    settings = Settings(
        app_env=app_env,
        redis_url=redis_url,
        redis_cluster=redis_cluster,
        redis_socket_timeout=_float("REDIS_SOCKET_TIMEOUT", 0.5),
        redis_wait_replicas=_count("REDIS_WAIT_REPLICAS", 0),
        redis_wait_timeout_ms=_int("REDIS_WAIT_TIMEOUT_MS", 50),
        database_url=database_url,
        database_read_url=database_read_url,
        aws_region=region,
        topic_arn=topic_arn,
        queue_url=queue_url,
        dead_letter_queue_url=dlq_url,
        broker_connect_timeout=_float("BROKER_CONNECT_TIMEOUT", 1.0),
        broker_read_timeout=_float("BROKER_READ_TIMEOUT", 3.0),
        catalog_file=catalog,
        catalog_cache_seconds=_float("CATALOG_CACHE_SECONDS", 30.0),
        currency=_currency(),
        payment_webhook_secret=_optional("PAYMENT_WEBHOOK_SECRET"),
        retry_after_seconds=_int("RETRY_AFTER_SECONDS", 1),
        seat_map_cache_seconds=_seconds_or_off("SEAT_MAP_CACHE_MS", 250.0) / 1000,
        seat_map_cache_entries=_int("SEAT_MAP_CACHE_ENTRIES", 1000),
        seat_map_cache_bytes=int(_float("SEAT_MAP_CACHE_MB", 64.0) * 2**20),
        worker_heartbeat_seconds=_float("WORKER_HEARTBEAT_SECONDS", 5.0),
        worker_alive_seconds=_float("WORKER_ALIVE_SECONDS", 30.0),
        task_max_retries=_int("TASK_MAX_RETRIES", 8),
        task_retry_backoff_cap=_int("TASK_RETRY_BACKOFF_CAP", 20),
        projection_stall_seconds=_float("PROJECTION_STALL_SECONDS", 120.0),
        worker_metrics_port=int(os.environ.get("WORKER_METRICS_PORT", "9808") or 0),
        monitor_broker_url=monitor_broker_url,
        monitor_health_check_seconds=_float("MONITOR_HEALTH_CHECK_SECONDS", 10.0),
        persist_batch_max=_int("PERSIST_BATCH_MAX", 10),
        persist_batch_window=_float("PERSIST_BATCH_WINDOW_MS", 10.0) / 1000,
        persist_batch_timeout=_float("PERSIST_BATCH_TIMEOUT", 10.0),
        metrics_emf_seconds=_seconds_or_off("METRICS_EMF_SECONDS", 0.0),
        metrics_namespace=_str("METRICS_NAMESPACE", "Ticketing/ticketing"),
        relay_batch_window=_float("RELAY_BATCH_WINDOW_MS", 10.0) / 1000,
        relay_senders=_int("RELAY_SENDERS", 4),
        relay_max_attempts=_int("RELAY_MAX_ATTEMPTS", 5),
        relay_claim_idle=_float("RELAY_CLAIM_IDLE_MS", 30_000.0) / 1000,
        relay_idle_sleep=_float("RELAY_IDLE_SLEEP_MS", 50.0) / 1000,
        relay_heartbeat_seconds=_float("RELAY_HEARTBEAT_SECONDS", 5.0),
        relay_alive_seconds=_float("RELAY_ALIVE_SECONDS", 30.0),
        relay_metrics_port=int(os.environ.get("RELAY_METRICS_PORT", "0") or 0),
        sweep_interval=_float("SWEEP_INTERVAL_MS", 250.0) / 1000,
        sweep_batch=_int("SWEEP_BATCH", 100),
        jwt_issuer=jwt_issuer,
        jwt_audience=os.environ.get("JWT_AUDIENCE", "ticketing"),  # "" = not checked
        jwt_roles_claim=_str("JWT_ROLES_CLAIM", "roles"),
        jwt_secret=jwt_secret,
        jwt_jwks_url=jwt_jwks_url,
        jwt_jwks_cache_seconds=_float("JWT_JWKS_CACHE_SECONDS", 300.0),
        max_seats_per_buyer=_int("MAX_SEATS_PER_BUYER", 8),
        rate_limit_burst=_int("RATE_LIMIT_BURST", 30),
        rate_limit_window_seconds=_float("RATE_LIMIT_WINDOW_SECONDS", 10.0),
        max_seats_per_order=_int("MAX_SEATS_PER_ORDER", 8),
        hold_seconds=_float("HOLD_SECONDS", 600.0),
    )
    _check_wait(settings)
    _check_tokens(settings)
    return settings


def _check_wait(s: Settings) -> None:
    """WAIT's count is whole and its timeout ends before the socket's: a WAIT outliving the
    socket timeout would turn every lagging replica into a dropped connection."""
    if s.redis_wait_replicas and s.redis_wait_timeout_ms >= s.redis_socket_timeout * 1000:
        raise SettingsError(
            f"REDIS_WAIT_TIMEOUT_MS={s.redis_wait_timeout_ms} must be shorter than "
            f"REDIS_SOCKET_TIMEOUT={s.redis_socket_timeout:g} s"
        )


def _check_tokens(s: Settings) -> None:
    """One way to verify tokens at most, and an issuer with it: a token from anyone who knows
    the secret of another deployment must not pass here."""
    if s.jwt_secret and s.jwt_jwks_url:
        raise SettingsError("set JWT_SECRET (HS256) or JWT_JWKS_URL (RS256), not both")
    if (s.jwt_secret or s.jwt_jwks_url) and not s.jwt_issuer:
        raise SettingsError("JWT_ISSUER must be set with JWT_SECRET or JWT_JWKS_URL")
    if s.jwt_secret and len(s.jwt_secret.encode()) < 32:
        raise SettingsError("JWT_SECRET must be at least 32 bytes (HS256 keys shorter are weak)")


@cache
def get() -> Settings:
    """The settings of this process, read once."""
    return load()

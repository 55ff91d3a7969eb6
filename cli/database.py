"""`flask --app web database users`: one MySQL user per service, each with only what it needs.

    query    SELECT                                    (the read API, on the reader endpoint)
    worker   SELECT, INSERT, UPDATE, DELETE            (the projection; the ops commands)
    release  the worker's, and CREATE, DROP, ALTER,   (migrations, catalog load)
             INDEX, REFERENCES

The grants cover every table of the schema (`<schema>.*`): tables a later migration adds are
covered without granting again. Run by the release step with an administrator's connection
(DATABASE_ADMIN_URL, else DATABASE_URL), before it migrates as the release user. Each user's
name and password come from the environment (DATABASE_QUERY_USER, DATABASE_QUERY_PASSWORD, …;
on AWS from Secrets Manager). Idempotent: CREATE USER IF NOT EXISTS, ALTER USER (a changed
password takes effect), GRANT what the user needs, then REVOKE anything else it holds on the
schema (granting first: a running service never loses a privilege it needs mid-way).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import click
from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import make_url

from plumbing import settings

# Schema-level privileges MySQL 8 (Aurora) and MariaDB both know; whatever a user holds of them
# beyond its own set is revoked.
SCHEMA_PRIVILEGES = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "REFERENCES",
    "INDEX",
    "ALTER",
    "CREATE TEMPORARY TABLES",
    "LOCK TABLES",
    "EXECUTE",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "TRIGGER",
)
DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
DDL = ("CREATE", "DROP", "ALTER", "INDEX", "REFERENCES")
GRANTS: dict[str, tuple[str, ...]] = {
    "query": ("SELECT",),
    "worker": DML,
    "release": DML + DDL,
}
USER_HOST = "%"  # tasks connect from changing private addresses; the security group limits who
_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")  # MySQL's user name limit, nothing needing quotes


class UsersError(click.ClickException):
    """A missing or malformed user setting: nothing was changed."""


@dataclass(frozen=True)
class ServiceUser:
    """A service's database account and the schema privileges it gets."""

    service: str
    name: str
    password: str = field(repr=False)  # never in a log line or a traceback's locals
    privileges: tuple[str, ...] = ()


def _env_name(service: str, field: str) -> str:
    return f"DATABASE_{service.upper()}_{field}"


def configured(environ: Mapping[str, str]) -> bool:
    """Whether any service user is configured (locally none is: every process uses root)."""
    return any(
        environ.get(_env_name(service, field))
        for service in GRANTS
        for field in ("USER", "PASSWORD")
    )


def service_users(environ: Mapping[str, str]) -> list[ServiceUser]:
    """The users from the environment; UsersError naming every missing or bad setting."""
    users, problems = [], []
    for service, privileges in GRANTS.items():
        name = environ.get(_env_name(service, "USER"), "")
        password = environ.get(_env_name(service, "PASSWORD"), "")
        if not _NAME.fullmatch(name):
            problems.append(f"{_env_name(service, 'USER')}={name!r} must be 1-32 of [A-Za-z0-9_]")
        if not password:
            problems.append(f"{_env_name(service, 'PASSWORD')} is not set")
        users.append(ServiceUser(service, name, password, privileges))
    names = [user.name for user in users]
    if not problems and len(set(names)) != len(names):
        problems.append(f"the service users must differ: {names}")
    if problems:
        raise UsersError("; ".join(problems))
    return users


def _quoted_schema(schema: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", schema):
        raise UsersError(f"database name {schema!r}: only [A-Za-z0-9_] is supported")
    return f"`{schema}`"


def apply(conn: Connection, schema: str, users: list[ServiceUser]) -> None:
    """Create or update each user and set its schema privileges to exactly its own."""
    on = f"{_quoted_schema(schema)}.*"
    for user in users:
        account = (user.name, USER_HOST)
        conn.exec_driver_sql(
            "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (*account, user.password)
        )
        conn.exec_driver_sql("ALTER USER %s@%s IDENTIFIED BY %s", (*account, user.password))
        conn.exec_driver_sql(f"GRANT {', '.join(user.privileges)} ON {on} TO %s@%s", account)
        extra = [p for p in SCHEMA_PRIVILEGES if p not in user.privileges]
        conn.exec_driver_sql(f"REVOKE {', '.join(extra)}, GRANT OPTION ON {on} FROM %s@%s", account)


@click.group("database")
def database_group() -> None:
    """The database's service users."""


@database_group.command("users")
@click.option(
    "--admin-url",
    envvar="DATABASE_ADMIN_URL",
    default=None,
    help="An administrator's database URL (default: DATABASE_ADMIN_URL, else DATABASE_URL).",
)
def users_command(admin_url: str | None) -> None:
    """Create or update the query, worker and release users with their grants (idempotent)."""
    admin_url = admin_url or settings.get().database_url
    if not configured(os.environ):
        if settings.get().app_env == "production":
            raise UsersError(
                "APP_ENV=production needs DATABASE_{QUERY,WORKER,RELEASE}_{USER,PASSWORD}"
            )
        click.echo("no service users configured (DATABASE_QUERY_USER, …): nothing to do")
        return
    users = service_users(os.environ)
    url = make_url(admin_url)
    if url.username in {user.name for user in users}:
        raise UsersError(f"the administrator {url.username!r} cannot also be a service user")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            apply(conn, url.database or "", users)
    finally:
        engine.dispose()
    for user in users:
        click.echo(f"{user.service}: {user.name} ({', '.join(user.privileges)} on {url.database})")

"""`flask --app web database users` against real MariaDB: each service user can do what its
service needs and nothing more, running the command again changes nothing, a changed password
takes effect and a privilege granted by hand beyond a user's own is taken back."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

from models.catalog import Catalog, upsert
from models.tickets import Outcome, TicketRecord, persist_tickets
from plumbing import settings
from tests.conftest import TEST_CATALOG
from tests.support.factories import ticket_message
from tests.support.processes import BIN, ROOT
from tests.test_cli import flask

ACCESS_DENIED = {1044, 1045, 1142, 1143}  # database, login, table, column access denied


def admin_url() -> URL:
    return make_url(settings.get().database_url)


def run(statement: str, url: URL) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement))
    finally:
        engine.dispose()


def denied(statement: str, url: URL) -> bool:
    """Whether MySQL refuses `statement` to `url`'s user for lack of a privilege."""
    try:
        run(statement, url)
    except (OperationalError, ProgrammingError) as exc:
        code = exc.orig.args[0]
        assert code in ACCESS_DENIED, exc
        return True
    return False


class Deployment:
    """A fresh schema and three service users of this test's own (users are server-wide)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.schema = f"{admin_url().database}_grants_{tag}"
        self.users = {service: f"t{tag}_{service}" for service in ("query", "worker", "release")}
        self.passwords = {service: uuid.uuid4().hex for service in self.users}

    def env(self) -> dict[str, str]:
        env = {"DATABASE_ADMIN_URL": admin_url().set(database=self.schema).render_as_string(False)}
        for service, name in self.users.items():
            env[f"DATABASE_{service.upper()}_USER"] = name
            env[f"DATABASE_{service.upper()}_PASSWORD"] = self.passwords[service]
        return env

    def url(self, service: str, password: str | None = None) -> URL:
        return admin_url().set(
            username=self.users[service],
            password=password or self.passwords[service],
            database=self.schema,
        )

    def users_command(self) -> None:
        done = flask("database", "users", env=self.env())
        assert done.returncode == 0, done.stderr
        for name in self.users.values():
            assert name in done.stdout


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    deployment = Deployment()
    server = admin_url().set(database="")
    run(f"CREATE DATABASE `{deployment.schema}`", server)
    try:
        yield deployment
    finally:
        run(f"DROP DATABASE IF EXISTS `{deployment.schema}`", server)
        for name in deployment.users.values():
            run(f"DROP USER IF EXISTS '{name}'@'%'", server)


def test_each_service_user_has_exactly_its_privileges(deployment):
    deployment.users_command()
    release, worker, query = (deployment.url(s) for s in ("release", "worker", "query"))

    # release: migrations (the real ones) and DDL
    migrate = alembic_upgrade(release)
    assert migrate.returncode == 0, migrate.stderr
    assert not denied("CREATE TABLE probe (id INT PRIMARY KEY, n INT)", release)
    assert not denied("ALTER TABLE probe ADD COLUMN m INT", release)
    assert not denied("CREATE INDEX probe_n ON probe (n)", release)

    # worker: the DML, no DDL
    assert not denied("INSERT INTO probe (id, n) VALUES (1, 1), (2, 2)", worker)
    assert not denied("UPDATE probe SET n = 3 WHERE id = 1", worker)
    assert not denied("DELETE FROM probe WHERE id = 2", worker)
    assert not denied("SELECT COUNT(*) FROM venue", worker)
    assert denied("CREATE TABLE worker_probe (id INT)", worker)
    assert denied("ALTER TABLE probe ADD COLUMN w INT", worker)
    assert denied("DROP TABLE probe", worker)

    # query: SELECT only
    assert not denied("SELECT n FROM probe", query)
    assert not denied("SELECT COUNT(*) FROM ticket", query)
    assert denied("INSERT INTO probe (id, n) VALUES (5, 5)", query)
    assert denied("UPDATE probe SET n = 4", query)
    assert denied("DELETE FROM probe", query)
    assert denied("CREATE TABLE query_probe (id INT)", query)
    assert denied("DROP TABLE probe", query)

    assert not denied("DROP TABLE probe", release)


def alembic_upgrade(url: URL) -> subprocess.CompletedProcess:
    """`alembic upgrade head` as the release step runs it, as `url`'s user."""
    return subprocess.run(
        [str(BIN / "alembic"), "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url.render_as_string(False)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_release_and_worker_code_runs_as_their_users(deployment):
    """Not just statements: the migrations and the catalog upsert as release, the worker's
    batch insert (new, duplicate and conflicting tickets) and `tickets recount` as worker."""
    deployment.users_command()
    release, worker = deployment.url("release"), deployment.url("worker")
    migrate = alembic_upgrade(release)
    assert migrate.returncode == 0, migrate.stderr
    engine = create_engine(release)
    try:
        with engine.begin() as conn:
            upsert(conn, Catalog.from_dict(TEST_CATALOG))
    finally:
        engine.dispose()

    first = TicketRecord.from_json(ticket_message(row="A", column="1"))
    rival = TicketRecord.from_json(ticket_message(row="A", column="1"))  # same seat, new id
    engine = create_engine(worker)
    try:
        with engine.begin() as conn:
            outcomes = persist_tickets(conn, [first, first, rival])
    finally:
        engine.dispose()
    assert outcomes == [Outcome.INSERTED, Outcome.DUPLICATE, Outcome.CONFLICT]
    done = flask("tickets", "recount", env={"DATABASE_URL": worker.render_as_string(False)})
    assert done.returncode == 0, done.stderr
    assert "Event1: 1 tickets" in done.stdout


def test_running_again_changes_nothing_and_a_new_password_takes_effect(deployment):
    deployment.users_command()
    deployment.users_command()  # idempotent: the users exist, the grants are the same
    query = deployment.url("query")
    assert not denied("SELECT 1", query)

    old = deployment.passwords["query"]
    deployment.passwords["query"] = uuid.uuid4().hex
    deployment.users_command()
    assert denied("SELECT 1", deployment.url("query", password=old))
    assert not denied("SELECT 1", deployment.url("query"))


def test_a_privilege_granted_beyond_a_users_own_is_taken_back(deployment):
    deployment.users_command()
    server = admin_url().set(database="")
    run(f"CREATE TABLE `{deployment.schema}`.probe (id INT)", server)
    run(f"GRANT ALL ON `{deployment.schema}`.* TO '{deployment.users['query']}'@'%'", server)
    query = deployment.url("query")
    assert not denied("INSERT INTO probe VALUES (1)", query)  # the hand-made grant works
    deployment.users_command()
    assert denied("INSERT INTO probe VALUES (2)", query)
    assert denied("CREATE TABLE query_probe (id INT)", query)
    assert not denied("SELECT id FROM probe", query)


def test_missing_settings_are_named_and_nothing_is_changed(deployment):
    env = deployment.env()
    del env["DATABASE_WORKER_PASSWORD"]
    env["DATABASE_QUERY_USER"] = "bad name"
    done = flask("database", "users", env=env)
    assert done.returncode != 0
    assert "DATABASE_WORKER_PASSWORD is not set" in done.stderr
    assert "DATABASE_QUERY_USER='bad name'" in done.stderr
    assert denied("SELECT 1", deployment.url("release"))  # no user was created


def test_without_service_users_development_does_nothing():
    """`make run` and the tests: every process uses DATABASE_URL's user (root)."""
    done = flask(
        "database",
        "users",
        env={"DATABASE_QUERY_USER": "", "DATABASE_WORKER_USER": "", "DATABASE_RELEASE_USER": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stdout

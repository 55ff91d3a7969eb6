"""Fixtures: real Redis, real MariaDB and moto in server mode, layered app → client → data.

This module runs before anything imports `settings`: it starts moto server (unless
AWS_ENDPOINT_URL names one on loopback), creates the session's topic and queues, and points
the process at them. A test run can never reach a real AWS endpoint.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ops" / "local"))
sys.path.insert(0, str(ROOT / "ops" / "bench"))  # the stand-in SNS endpoint (`standin`)

from tests.support.factories import test_catalog_document  # noqa: E402
from tests.support.processes import Relay, Worker, free_port, wait_for_port  # noqa: E402

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("DATABASE_URL", "mysql+pymysql://root@127.0.0.1:3306/ticketing_test")
os.environ.pop("DATABASE_READ_URL", None)
# the monitoring plane in a database of its own: tests that empty the seat state keep it
os.environ.setdefault("MONITOR_BROKER_URL", os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/14")

if not os.environ.get("AWS_ENDPOINT_URL"):
    _moto_port = free_port()
    _moto = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "ops" / "local" / "moto_server.py"),  # moto with its SQS delete race fixed
            "-H",
            "127.0.0.1",
            "-p",
            str(_moto_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    atexit.register(lambda: (_moto.terminate(), _moto.wait()))
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_moto_port}"
    wait_for_port(_moto_port)

if urlsplit(os.environ["AWS_ENDPOINT_URL"]).hostname not in ("127.0.0.1", "localhost", "::1"):
    raise SystemExit(
        "tests refuse to run against a non-local AWS endpoint: "
        f"AWS_ENDPOINT_URL={os.environ['AWS_ENDPOINT_URL']}"
    )

from aws_resources import create_messaging  # noqa: E402

SESSION_MESSAGING = create_messaging(f"s{uuid.uuid4().hex[:8]}")
os.environ.update(SESSION_MESSAGING.env())

_catalog_dir = Path(tempfile.mkdtemp(prefix="ticketing-catalog-"))
TEST_CATALOG = test_catalog_document()
(_catalog_dir / "catalog.json").write_text(json.dumps(TEST_CATALOG))
os.environ["CATALOG_FILE"] = str(_catalog_dir / "catalog.json")
os.environ["CATALOG_CACHE_SECONDS"] = "30"
# Tokens as `make run` has them; limits out of the way of tests that buy many seats as one
# buyer (tests of the limits set their own).
from plumbing.settings import DEVELOPMENT_JWT_ISSUER, DEVELOPMENT_JWT_SECRET  # noqa: E402

os.environ.setdefault("JWT_SECRET", DEVELOPMENT_JWT_SECRET)
os.environ.setdefault("JWT_ISSUER", DEVELOPMENT_JWT_ISSUER)
os.environ.setdefault("MAX_SEATS_PER_BUYER", "1000000")
os.environ.setdefault("RATE_LIMIT_BURST", "1000000")

import models  # noqa: E402
from models import seats  # noqa: E402
from plumbing import settings  # noqa: E402
from web import create_app, purchase  # noqa: E402


@pytest.fixture(scope="session")
def database() -> None:
    """The schema at Alembic head and the test catalog in MySQL."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    from models.catalog import Catalog, upsert

    with models.writer().begin() as conn:
        upsert(conn, Catalog.from_dict(TEST_CATALOG))


_session_worker: list[Worker] = []  # the session worker, once `pipeline_worker` started it


@pytest.fixture
def clean_tickets(database: None) -> None:
    """No tickets and no conflicts before the test, and none on their way: once the session
    worker runs, messages an earlier test left in the session queue are persisted (or
    dead-lettered) first, so that it cannot write them in the middle of this test."""
    from tests.support.aws import queue_counts
    from tests.support.factories import clear_tickets
    from tests.support.processes import wait_until

    if _session_relay:
        # an earlier test's events still in the outbox would reach MySQL after the clean-up,
        # where an order of this test may have taken their seats again (retried, then
        # dead-lettered, for minutes): the session relay sends them first
        from tests.support.outbox import stream_lengths

        wait_until(lambda: stream_lengths(seats.client()) == 0, 60, "an empty outbox")
    if _session_worker:
        wait_until(
            lambda: queue_counts(settings.get().queue_url) == (0, 0), 120, "an idle session queue"
        )
    with models.writer().begin() as conn:
        clear_tickets(conn)


@pytest.fixture
def redis_client():
    """The test Redis database, emptied, and no seat read kept from before."""
    from web.availability import forget_reads

    r = seats.client()
    r.flushdb()
    forget_reads()
    return r


@pytest.fixture
def loaded_seats(redis_client, database: None):
    """Redis emptied, then the test catalog's counters and catalog copy loaded."""
    from models.catalog import Catalog
    from models.tickets import sold_seats

    catalog = Catalog.from_dict(TEST_CATALOG)
    with models.writer().connect() as conn:  # what `seats rebuild` does, without the drain wait
        for event in catalog.events.values():
            zones = catalog.venues[event.venue_id].zones
            seats.rebuild_event(redis_client, event, zones, sold_seats(conn, event.event_id))
    seats.publish_catalog(redis_client, catalog)
    purchase.forget_catalog()
    yield redis_client
    purchase.forget_catalog()


@pytest.fixture(scope="session")
def app():
    """The Flask app with all three APIs, as `make run` serves it."""
    return create_app()


@pytest.fixture
def client(app, clean_tickets, loaded_seats):
    """A test client signed in as an operator (every route is open to it) on a fresh seat state
    and an empty ticket table; tests of who may call what send their own Authorization."""
    from tests.support.tokens import operator

    test_client = app.test_client()
    test_client.environ_base["HTTP_AUTHORIZATION"] = operator("test-operator")["Authorization"]
    return test_client


@pytest.fixture(scope="session")
def pipeline_worker(database: None) -> Iterator[Worker]:
    """A real Celery worker consuming the session queue (the one the app publishes to)."""
    with Worker.start(env={}) as worker:
        _session_worker.append(worker)
        yield worker


# the session relay and what stops it, while it runs
_session_relay: list[tuple[Relay, contextlib.ExitStack]] = []


@pytest.fixture
def pipeline_relay() -> Iterator[Relay]:
    """A real relay taking the outbox of the test Redis to the session topic: started on first
    use, kept for the session, started again after a test that wanted the outbox to itself."""
    if not _session_relay:
        from tests.support.outbox import drop_leftovers

        drop_leftovers(seats.client())
        stack = contextlib.ExitStack()
        _session_relay.append((stack.enter_context(Relay.start(env={})), stack))
    yield _session_relay[0][0]


@pytest.fixture
def no_session_relay() -> None:
    """For tests that run relays of their own (on their own topics): the session relay stops
    first, or it would take their outbox entries to the session topic."""
    while _session_relay:
        _session_relay.pop()[1].close()


@pytest.fixture(scope="session", autouse=True)
def _stop_session_relay() -> Iterator[None]:
    yield
    while _session_relay:
        _session_relay.pop()[1].close()


@pytest.fixture
def standin():
    """The bench's stand-in SNS endpoint on a free port for the session's topic: a real HTTP
    server of the query protocol that can answer chosen entries in `Failed`; yields (state,
    endpoint URL)."""
    import sns_standin

    state, port, stop = sns_standin.serve_in_thread(settings.get().topic_arn)
    try:
        yield state, f"http://127.0.0.1:{port}"
    finally:
        stop()


@pytest.fixture
def own_outbox(no_session_relay) -> None:
    """No session relay reads the outbox during the test, so the relays a test starts are the
    only ones (the session relay starts again when a later test asks for it)."""


@pytest.fixture
def sns_proxy():
    """A counting HTTP proxy in front of moto, for the relays a test starts
    (`AWS_ENDPOINT_URL_SNS` = its url)."""
    from tests.support.proxy import HttpProxy

    proxy = HttpProxy(os.environ["AWS_ENDPOINT_URL"])
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def session_settings() -> settings.Settings:
    return settings.get()

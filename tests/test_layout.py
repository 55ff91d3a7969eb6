"""The project's fixed points: migrations match the models, the Procfile names every process
type and its worker consumes every queue, the catalog is the seed's, settings are documented."""

from __future__ import annotations

import re
import shlex

import pytest
from alembic import command
from alembic.config import Config

from celeryconfig import QueueNames
from models.catalog import Catalog
from tests.support.processes import ROOT

SEED_SHAPE = {
    "Venue1": (50, 30, 40),
    "Venue2": (20, 25, 35),
    "Venue3": (10, 20, 25),
    "Venue4": (5, 15, 30),
    "Venue5": (30, 50, 60),
}
SEED_EVENTS = {
    "Event1": "Venue1",
    "Event2": "Venue1",
    "Event3": "Venue2",
    "Event4": "Venue2",
    "Event5": "Venue3",
    "Event6": "Venue4",
    "Event7": "Venue5",
}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_models_and_migrations_agree(database):
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logger"] = False
    command.check(config)  # raises if autogenerate would emit any operation


def test_procfile_names_every_process_type():
    assert {"purchase", "query", "events", "worker", "relay", "flower", "release"} <= (
        procfile().keys()
    )
    assert procfile()["release"] == "flask --app web database users && alembic upgrade head"
    assert "relay" in procfile()["relay"]


def test_make_run_serves_every_long_running_process_type():
    """`make run` (ops/local/stack.py) starts every Procfile type that runs for good, locally
    `web` for the three gunicorn ones; only the one-off `release` is run before them."""
    source = (ROOT / "ops" / "local" / "stack.py").read_text()
    started = set(
        re.search(r'"honcho".*?"start", ([^\]]*)\]', source).group(1).replace('"', "").split(", ")
    )
    assert started == set(procfile()) - {"purchase", "query", "events", "release"}


@pytest.mark.worker
def test_procfile_worker_consumes_every_queue(pipeline_worker):
    """The worker started with the Procfile's own command line (its `-Q`, if it ever gets one)
    consumes every queue of QueueNames, each of them a predefined SQS queue: read from the
    queue list the running worker prints at start-up, not from the configuration it came from."""
    banner = pipeline_worker.log()
    consumed = set(re.findall(r"^\s*\.> (\S+)\s+exchange=", banner, re.MULTILINE))
    assert consumed, banner[:2000]
    assert set(QueueNames.all()) <= consumed
    from tasks import celery_app

    assert consumed <= set(celery_app.conf.broker_transport_options["predefined_queues"])


def test_procfile_worker_can_fill_a_batch():
    """The projection's group commit batches concurrent tasks of one process: the thread pool,
    with at least as many threads as a batch holds (tasks/tickets.py)."""
    from plumbing import settings

    argv = shlex.split(procfile()["worker"])
    assert argv[argv.index("--pool") + 1] == "threads"
    assert int(argv[argv.index("--concurrency") + 1]) >= settings.get().persist_batch_max


def test_default_catalog_is_the_seeds():
    catalog = Catalog.from_file(ROOT / "models" / "catalog.json")
    shape = {
        v.venue_id: (len(v.zones), v.zones[1].rows, v.zones[1].columns)
        for v in catalog.venues.values()
    }
    assert shape == SEED_SHAPE
    assert all(
        z.rows == v.zones[1].rows and z.columns == v.zones[1].columns
        for v in catalog.venues.values()
        for z in v.zones.values()
    )
    assert {e.event_id: e.venue_id for e in catalog.events.values()} == SEED_EVENTS
    assert str(catalog.venues["Venue1"].zones[1].price) == "100.00"


def test_every_setting_is_in_env_example():
    source = (ROOT / "plumbing" / "settings.py").read_text()
    names = set(re.findall(r'_(?:str|float|int|bool|optional|seconds_or_off)\("([A-Z_]+)"', source))
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z_]+)=", example, re.MULTILINE))
    assert names - documented == set()

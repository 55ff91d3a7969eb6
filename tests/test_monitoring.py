"""The monitoring plane of a worker whose tasks come from SQS: Celery events and remote control
over Redis, seen by Flower as the Procfile starts it (its default inspect timeout)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from aws_resources import create_messaging

from plumbing import settings
from tests.support.aws import direct_sender
from tests.support.factories import ticket_message
from tests.support.processes import Flower, Worker, procfile_command, wait_until
from tests.support.proxy import TcpProxy

PERSIST = "tasks.tickets.persist_ticket"


@pytest.fixture(scope="module")
def messaging():
    return create_messaging(f"m{uuid.uuid4().hex[:8]}", visibility_timeout=5)


@pytest.fixture(scope="module")
def db_proxy() -> Iterator[TcpProxy]:
    """The worker reaches MariaDB through this proxy, so a test can make a task retry."""
    url = urlsplit(settings.get().database_url.replace("mysql+pymysql", "mysql"))
    proxy = TcpProxy(url.hostname, url.port or 3306)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def monitor_proxy() -> Iterator[TcpProxy]:
    """The worker reaches the monitoring Redis through this proxy; Flower reaches it directly."""
    url = urlsplit(settings.get().monitor_url())
    proxy = TcpProxy(url.hostname, url.port or 6379)
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def worker(messaging, db_proxy, monitor_proxy, database) -> Iterator[Worker]:
    db_url = settings.get().database_url
    db_host = urlsplit(db_url).netloc.rsplit("@", 1)[-1]
    monitor_url = settings.get().monitor_url()
    monitor_host = urlsplit(monitor_url).netloc.rsplit("@", 1)[-1]
    env = {
        **messaging.env(),
        "DATABASE_URL": db_url.replace(db_host, f"127.0.0.1:{db_proxy.port}"),
        "MONITOR_BROKER_URL": monitor_url.replace(monitor_host, f"127.0.0.1:{monitor_proxy.port}"),
        "TASK_RETRY_BACKOFF_CAP": "1",
        "TASK_MAX_RETRIES": "30",
        "WORKER_HEARTBEAT_SECONDS": "1",
    }
    with Worker.start(env) as w:
        # up = consuming SQS and listening for remote control on Redis
        wait_until(lambda: "remote control listening" in w.log(), 30, "remote control")
        yield w


@pytest.fixture(scope="module")
def flower(worker) -> Iterator[Flower]:
    with Flower.start(settings.get().monitor_url()) as f:
        yield f


@pytest.fixture(scope="module")
def sender(messaging):
    return direct_sender(messaging.queue_url, messaging.topic_arn.rsplit(":", 1)[-1])


def send(sender, ticket: dict) -> None:
    sender.send_task(PERSIST, kwargs={"ticket": ticket}, task_id=ticket["ticketId"])


def flower_tasks(flower: Flower) -> dict[str, dict]:
    return requests.get(f"{flower.url}/api/tasks", timeout=10).json()


def inspect_failures(flower: Flower) -> list[str]:
    return [line for line in flower.log().splitlines() if "Inspect method" in line]


def test_flower_sees_the_worker_at_its_default_timeout(worker, flower, messaging):
    """The first refresh after the worker is up lists it with stats, registered tasks and
    queues; so does every later one (Flower reuses its pooled Redis connections), and the
    worker's page (eight inspects at once) answers 200. No retries, and not one inspect of
    Flower's without its reply within Flower's default timeout (it logs each one that has none,
    and would otherwise show what an earlier inspect returned)."""
    assert "--inspect_timeout" not in " ".join(procfile_command("flower"))
    queue = messaging.queue_url.rsplit("/", 1)[-1]
    for _ in range(3):
        workers = requests.get(f"{flower.url}/api/workers?refresh=1", timeout=30).json()
        assert inspect_failures(flower) == []
        info = workers[worker.hostname]
        assert info["stats"]["pool"]["max-concurrency"] == 20
        assert PERSIST in info["registered"]
        assert [q["name"] for q in info["active_queues"]] == [queue]

        page = requests.get(f"{flower.url}/worker/{worker.hostname}", timeout=30)
        assert inspect_failures(flower) == []
        assert page.status_code == 200, page.text[:300]
        assert worker.hostname in page.text
        assert queue in page.text  # the Queues tab, from active_queues


def test_flower_sees_tasks_and_their_states(worker, flower, sender, db_proxy, clean_tickets):
    """Task events over Redis: the Tasks page and API list the tasks with their states,
    failed and retried ones too, and each task's page renders."""
    ok, bad, slow = (
        ticket_message(row="K", column="1"),
        ticket_message(eventId="Nope"),
        ticket_message(row="K", column="2"),
    )
    send(sender, ok)
    send(sender, bad)
    # events arrive asynchronously: wait for them, with a deadline
    wait_until(
        lambda: flower_tasks(flower).get(ok["ticketId"], {}).get("state") == "SUCCESS",
        30,
        "the successful task in Flower",
    )
    wait_until(
        lambda: flower_tasks(flower).get(bad["ticketId"], {}).get("state") == "FAILURE",
        30,
        "the failed task in Flower",
    )
    db_proxy.block()
    try:
        send(sender, slow)
        wait_until(
            lambda: flower_tasks(flower).get(slow["ticketId"], {}).get("state") == "RETRY",
            30,
            "the retried task in Flower",
        )
    finally:
        db_proxy.unblock()
    wait_until(
        lambda: flower_tasks(flower).get(slow["ticketId"], {}).get("state") == "SUCCESS",
        30,
        "the retried task's success",
    )
    states = flower_tasks(flower)
    assert states[slow["ticketId"]]["retries"] >= 1
    assert states[ok["ticketId"]]["worker"] == worker.hostname
    assert "UnknownCatalogEntry" in states[bad["ticketId"]]["exception"]

    page = requests.get(f"{flower.url}/tasks", timeout=30)
    assert page.status_code == 200
    datatable = requests.get(
        f"{flower.url}/tasks/datatable",
        params={
            "draw": 1,
            "start": 0,
            "length": 10,
            "search[value]": "",
            "order[0][column]": 0,
            "columns[0][data]": "name",
            "order[0][dir]": "asc",
        },
        timeout=30,
    )
    assert datatable.status_code == 200
    assert ok["ticketId"] in datatable.text
    task_page = requests.get(f"{flower.url}/task/{ok['ticketId']}", timeout=30)
    assert task_page.status_code == 200
    assert "SUCCESS" in task_page.text

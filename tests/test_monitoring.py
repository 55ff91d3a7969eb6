"""The monitoring plane of a worker whose tasks come from SQS: Celery events and remote control
over Redis, seen by Flower as the Procfile starts it (its default inspect timeout), and a
monitoring Redis that goes silent without stalling the sale."""

from __future__ import annotations

import contextlib
import os
import signal
import time
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


def proxy_to(url: str) -> TcpProxy:
    parts = urlsplit(url)
    return TcpProxy(parts.hostname, parts.port)


def through(url: str, proxy: TcpProxy) -> str:
    """`url` with its host and port replaced by the proxy's."""
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]
    return url.replace(host, f"127.0.0.1:{proxy.port}", 1)


@contextlib.contextmanager
def worker_on(messaging, listening: bool = True, **env: str) -> Iterator[Worker]:
    """A worker of the Procfile on `messaging`'s queue, up: consuming SQS and (`listening`)
    listening for remote control on Redis."""
    with Worker.start(
        {
            **messaging.env(),
            "TASK_RETRY_BACKOFF_CAP": "1",
            "TASK_MAX_RETRIES": "30",
            "WORKER_HEARTBEAT_SECONDS": "1",
            **env,
        }
    ) as w:
        if listening:
            wait_until(lambda: "remote control listening" in w.log(), 30, "remote control")
        yield w


@pytest.fixture(scope="module")
def messaging():
    return create_messaging(f"m{uuid.uuid4().hex[:8]}", visibility_timeout=5)


@pytest.fixture(scope="module")
def db_proxy() -> Iterator[TcpProxy]:
    """The worker reaches MariaDB through this proxy, so a test can make a task retry."""
    proxy = proxy_to(settings.get().database_url.replace("mysql+pymysql", "mysql"))
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def worker(messaging, db_proxy, database) -> Iterator[Worker]:
    with worker_on(messaging, DATABASE_URL=through(settings.get().database_url, db_proxy)) as w:
        yield w


@pytest.fixture(scope="module")
def flower(database) -> Iterator[Flower]:
    """Flower on the monitoring Redis, reaching it directly."""
    with Flower.start(settings.get().monitor_url()) as f:
        # its own first inspect, at its start, is over: the tests' inspects are theirs alone
        requests.get(f"{f.url}/api/workers?refresh=1", timeout=30)
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


def test_flower_sees_the_worker_at_its_default_timeout(flower, worker, messaging):
    """The first refresh after the worker is up lists it with stats, registered tasks and
    queues; so does every later one (Flower reuses its pooled Redis connections), and the
    worker's page (eight inspects at once) answers 200. No retries, and not one inspect of
    Flower's without its reply within Flower's default timeout (it logs each one that has none,
    and would otherwise show what an earlier inspect returned)."""
    assert "--inspect_timeout" not in " ".join(procfile_command("flower"))
    queue = messaging.queue_url.rsplit("/", 1)[-1]
    earlier = len(inspect_failures(flower))  # Flower's own at its start, before any worker
    for _ in range(3):
        workers = requests.get(f"{flower.url}/api/workers?refresh=1", timeout=30).json()
        assert inspect_failures(flower)[earlier:] == []
        info = workers[worker.hostname]
        assert info["stats"]["pool"]["max-concurrency"] == 20
        assert PERSIST in info["registered"]
        assert [q["name"] for q in info["active_queues"]] == [queue]

        page = requests.get(f"{flower.url}/worker/{worker.hostname}", timeout=30)
        assert inspect_failures(flower)[earlier:] == []
        assert page.status_code == 200, page.text[:300]
        assert worker.hostname in page.text
        assert queue in page.text  # the Queues tab, from active_queues


def test_flower_sees_tasks_and_their_states(flower, worker, sender, db_proxy, clean_tickets):
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


def persisted(ticket_ids: list[str]) -> int:
    from sqlalchemy import func, select

    import models
    from models.tables import Ticket

    query = select(func.count()).select_from(Ticket).where(Ticket.ticket_id.in_(ticket_ids))
    with models.reader().connect() as conn:
        return conn.scalar(query)


def fresh_worker_info(flower: Flower, hostname: str, since: float) -> dict | None:
    """The worker as a refresh of Flower's shows it, if the refresh got replies after `since`."""
    info = requests.get(f"{flower.url}/api/workers?refresh=1", timeout=30).json().get(hostname)
    return info if info and info.get("timestamp", 0) > since and "stats" in info else None


def heartbeat_age(hostname: str) -> float:
    """Seconds since the worker's last heartbeat in the monitoring Redis (read directly)."""
    from plumbing.heartbeats import HEARTBEAT_KEY, monitor_redis

    score = monitor_redis().zscore(HEARTBEAT_KEY, hostname)
    return float("inf") if score is None else time.time() - score


@contextlib.contextmanager
def silent_monitoring_redis(proxy: TcpProxy, worker: Worker) -> Iterator[None]:
    """The worker's monitoring Redis accepts and never answers, long enough for the worker to
    have met the silence: its heartbeats (one a second) stop arriving."""
    proxy.black_hole()
    try:
        wait_until(lambda: heartbeat_age(worker.hostname) > 3, 30, "heartbeats to stop")
        yield
    finally:
        proxy.heal()


def sell_and_persist(sender, flower: Flower, row: str) -> None:
    """Send 20 tickets; all are persisted, and Flower has seen none of them."""
    tickets = [ticket_message(row=row, column=str(c)) for c in range(1, 21)]
    for ticket in tickets:
        send(sender, ticket)
    ids = [t["ticketId"] for t in tickets]
    wait_until(lambda: persisted(ids) == len(ids), 60, "tickets persisted behind the black hole")
    seen = flower_tasks(flower)
    assert not any(i in seen for i in ids), "Flower was not blind: the test proves nothing"


def flower_sees_a_task(sender, flower: Flower, row: str, what: str) -> None:
    """Send a ticket; wait for Flower to show its task succeeded."""
    ticket = ticket_message(row=row, column="1")
    send(sender, ticket)
    wait_until(
        lambda: flower_tasks(flower).get(ticket["ticketId"], {}).get("state") == "SUCCESS",
        60,
        what,
    )


def crash(worker: Worker) -> None:
    """SIGKILL: a shutdown would retire its heartbeat, waiting for the silent Redis."""
    os.killpg(worker.proc.pid, signal.SIGKILL)
    worker.proc.wait()


def test_a_silent_monitoring_redis_does_not_stall_the_sale(flower, database, clean_tickets):
    """Nothing on a ticket's way waits for the monitoring Redis (events, remote control,
    heartbeats, progress notes), neither in a running worker nor in one starting: with socket
    timeouts of ten minutes, as good as none, so that any such wait would hold the tickets,
    they are still persisted while it accepts and never answers."""
    # short visibility: moto hands messages to the crashed worker's pending long poll
    messaging = create_messaging(f"b{uuid.uuid4().hex[:8]}", visibility_timeout=5)
    sender = direct_sender(messaging.queue_url, messaging.topic_arn.rsplit(":", 1)[-1])
    proxy = proxy_to(settings.get().monitor_url())
    env = {
        "MONITOR_BROKER_URL": through(settings.get().monitor_url(), proxy),
        "REDIS_SOCKET_TIMEOUT": "600",
    }
    try:
        with worker_on(messaging, **env) as running:
            flower_sees_a_task(sender, flower, "L", "Flower to see a task before the black hole")
            wait_until(lambda: heartbeat_age(running.hostname) < 2, 30, "a heartbeat")
            with silent_monitoring_redis(proxy, running):
                sell_and_persist(sender, flower, row="M")
                crash(running)
                with worker_on(messaging, listening=False, **env) as starting:
                    sell_and_persist(sender, flower, row="N")
                    crash(starting)
    finally:
        proxy.close()


def test_the_worker_reaches_flower_again_once_its_redis_answers(flower, database, clean_tickets):
    """The worker's monitoring Redis accepts and never answers, then new connections work
    again while the old ones stay silent (a half-open connection after a failover): tickets
    are persisted meanwhile, and then the worker's task events and remote control reach
    Flower again, its connections having timed out or missed their PINGs."""
    messaging = create_messaging(f"h{uuid.uuid4().hex[:8]}", visibility_timeout=30)
    sender = direct_sender(messaging.queue_url, messaging.topic_arn.rsplit(":", 1)[-1])
    proxy = proxy_to(settings.get().monitor_url())
    monitor_url = through(settings.get().monitor_url(), proxy)
    try:
        with worker_on(
            messaging,
            MONITOR_BROKER_URL=monitor_url,
            MONITOR_HEALTH_CHECK_SECONDS="1",  # a silent subscription is found within seconds
        ) as w:
            flower_sees_a_task(sender, flower, "O", "Flower to see a task before the black hole")
            with silent_monitoring_redis(proxy, w):
                sell_and_persist(sender, flower, row="P")
            healed = time.time()
            flower_sees_a_task(sender, flower, "Q", "the worker's task events in Flower again")
            info = wait_until(
                lambda: fresh_worker_info(flower, w.hostname, healed),
                60,
                "the worker's remote control to answer Flower again",
            )
            assert PERSIST in info["registered"]
            wait_until(lambda: heartbeat_age(w.hostname) < 2, 30, "heartbeats again")
    finally:
        proxy.close()


def test_events_wait_in_a_bounded_buffer_while_redis_is_silent(monkeypatch):
    """While the monitoring Redis is silent, events wait in a buffer of BUFFER events: a
    publish never waits, the oldest give way to the newest, and the drop is counted."""
    from kombu import Connection

    from celeryconfig import monitor_transport_options
    from plumbing import metrics
    from tasks import celery_app, consumer
    from tasks.events import BUFFER

    def dropped() -> float:  # this process's count
        (family,) = metrics.MONITOR_EVENTS_DROPPED.collect()
        return next(s.value for s in family.samples if s.name.endswith("_total"))

    proxy = proxy_to(settings.get().monitor_url())
    proxy.black_hole()
    url = through(settings.get().monitor_url(), proxy)
    options = monitor_transport_options()
    monkeypatch.setattr(
        consumer, "monitor_connection", lambda **kw: Connection(url, transport_options=options)
    )
    before = dropped()
    dispatcher = celery_app.events.Dispatcher(consumer.monitor_connection(), hostname="t@test")
    try:
        for i in range(BUFFER + 500):
            dispatcher.send("worker-heartbeat", i=i)
        waiting = [event["i"] for event, _ in dispatcher._outbox]
        assert waiting == list(range(500, BUFFER + 500))
        assert dropped() - before == 500
    finally:
        dispatcher.close()
        proxy.close()

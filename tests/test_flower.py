"""Flower through an on-sale: it keeps no more tasks than the Procfile's --max_tasks, however
many task events arrive, so its memory stays within its task's."""

from __future__ import annotations

import uuid

import requests

from plumbing import settings
from tests.support.events import flower_counts, send_task_events
from tests.support.processes import Flower, procfile_command, wait_until

FLOWER_ARGS: tuple[str, ...] = ()


def task_count(flower: Flower) -> int:
    """How many tasks Flower holds (its Tasks page's total)."""
    page = requests.get(
        f"{flower.url}/tasks/datatable",
        params={
            "draw": 1,
            "start": 0,
            "length": 1,
            "search[value]": "",
            "order[0][column]": 0,
            "columns[0][data]": "name",
            "order[0][dir]": "asc",
        },
        timeout=60,
    )
    return page.json()["recordsTotal"]


def succeeded(flower: Flower, hostname: str) -> float:
    """How many of `hostname`'s task-succeeded events Flower has taken in."""
    text = requests.get(f"{flower.url}/metrics", timeout=30).text
    return flower_counts(text, hostname).get("task-succeeded", 0)


def subscribed(flower: Flower) -> None:
    """Wait until Flower receives events: what is published before it subscribes is lost."""
    probe = f"probe-{uuid.uuid4().hex[:6]}@test"

    def probed() -> bool:
        send_task_events(settings.get().monitor_url(), probe, 1)
        return succeeded(flower, probe) > 0

    wait_until(probed, 30, "Flower to receive events")


def feed(flower: Flower, hostname: str, tasks: int, already: int) -> None:
    """Send `tasks` tasks' events, a chunk at a time, each taken in by Flower before the next:
    Redis disconnects a subscriber that falls 32 MB behind."""
    chunk = 2_500
    for start in range(0, tasks, chunk):
        count = min(chunk, tasks - start)
        send_task_events(settings.get().monitor_url(), hostname, count)
        total = already + start + count
        wait_until(
            lambda total=total: succeeded(flower, hostname) == total,
            60,
            f"Flower to take in {total} tasks' events",
        )


def test_flower_keeps_at_most_max_tasks_tasks(database):
    """More tasks than the bound, each with its received, started and succeeded events as the
    worker sends them: Flower has taken every event in and holds exactly the bound, and the
    tasks beyond it cost its memory next to nothing."""
    argv = procfile_command("flower")
    bounds = [int(a.split("=", 1)[1]) for a in argv if a.startswith("--max_tasks=")]
    assert bounds, "the Procfile's flower line leaves Flower's default, 100,000 tasks"
    (bound,) = bounds
    hostname = f"feeder-{uuid.uuid4().hex[:6]}@test"
    with Flower.start(settings.get().monitor_url(), *FLOWER_ARGS) as flower:
        subscribed(flower)
        rss = [flower.rss_bytes()]
        # the bound, then a third more, where Flower's event heap (4 events a task kept)
        # stops growing too, then another third
        steps = [bound, bound // 3, bound // 3]
        sent = 0
        for step in steps:
            feed(flower, hostname, step, sent)
            sent += step
            rss.append(flower.rss_bytes())
        grown = [round((r - rss[0]) / 2**20) for r in rss[1:]]
        kept = task_count(flower)
        print(f"Flower: {sent} tasks sent, {kept} kept, RSS {rss[0] // 2**20} + {grown} MiB")
        assert kept == bound
        # the last step's tasks replaced older ones (kept, they would cost 7 KiB or more each)
        assert rss[-1] - rss[-2] < steps[-1] * 7 * 1024 / 4

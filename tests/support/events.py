"""Test support: Celery task events as the worker sends them, without running the tasks, to
load Flower with many tasks at once."""

from __future__ import annotations

import time
import uuid

TASK = "tasks.tickets.persist_ticket"


def _ticket_kwargs(ticket_id: str) -> str:
    # the worker sends args and kwargs as their repr, as here (Celery's safe_repr)
    return repr(
        {
            "ticket": {
                "ticketId": ticket_id,
                "venueId": "Venue1",
                "eventId": "Event1",
                "zoneId": 1,
                "row": "C",
                "column": "3",
                "price": "100.00",
                "status": "PAID",
                "createdOn": "2026-12-01T12:33:00.919Z",
                "schemaVersion": 1,
            }
        }
    )


def send_task_events(broker_url: str, hostname: str, tasks: int) -> None:
    """Send each of `tasks` new tasks' received, started and succeeded events, with the fields
    and sizes of the worker's (in batches of 24 task events, as the worker does)."""
    from celery import Celery

    app = Celery("events-feeder", broker=broker_url, set_as_current=False)
    with (
        app.connection() as connection,
        app.events.Dispatcher(
            connection, hostname=hostname, buffer_group=["task"], buffer_limit=24
        ) as dispatcher,
    ):
        for _ in range(tasks):
            task_id = str(uuid.uuid4())
            now = time.time()
            dispatcher.send(
                "task-received",
                uuid=task_id,
                name=TASK,
                args="()",
                kwargs=_ticket_kwargs(task_id),
                root_id=task_id,
                parent_id=None,
                retries=0,
                eta=None,
                expires=None,
            )
            dispatcher.send("task-started", uuid=task_id)
            dispatcher.send(
                "task-succeeded", uuid=task_id, result="'INSERTED'", runtime=0.05, timestamp=now
            )
        dispatcher.flush()


def flower_counts(metrics_text: str, hostname: str) -> dict[str, float]:
    """Flower's `flower_events_total` of `hostname`'s task events, by event type."""
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if line.startswith("flower_events_total{") and f'worker="{hostname}"' in line:
            labels, value = line.rsplit(" ", 1)
            kind = labels.split('type="', 1)[1].split('"', 1)[0]
            counts[kind] = counts.get(kind, 0) + float(value)
    return counts


__all__ = ["flower_counts", "send_task_events"]

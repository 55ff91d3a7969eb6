"""The Celery app, configured from `celeryconfig.py`; tasks live in the modules beside it."""

import logging
import os

from celery import Celery, signals

from plumbing import emf, logs, metrics

# events leave the worker through a sender thread with a bounded buffer (tasks/events.py)
celery_app = Celery("ticketing", events="tasks.events:MonitorEvents")
celery_app.config_from_object("celeryconfig")
celery_app.conf.imports = ["tasks.tickets", "tasks.orders"]

from tasks.heartbeat import RedisHeartbeat  # noqa: E402
from tasks.monitoring import RedisRemoteControl  # noqa: E402

celery_app.steps["worker"].add(RedisHeartbeat)
celery_app.steps["consumer"].add(RedisRemoteControl)

app = celery_app  # `celery -A tasks` finds it by this name too


@signals.setup_logging.connect
def _json_logs(**_: object) -> None:
    """The worker logs JSON lines like the web processes (Celery leaves logging to us)."""
    logs.configure("worker")


@signals.worker_init.connect
def _serve_metrics(**_: object) -> None:
    """The worker's Prometheus metrics (all pool processes added up) on WORKER_METRICS_PORT."""
    from plumbing import settings

    port = settings.get().worker_metrics_port
    if port:
        from prometheus_client import start_http_server

        try:
            start_http_server(port, registry=metrics.registry())
        except OSError as exc:  # the worker works without its metrics endpoint
            logging.getLogger(__name__).warning("metrics port %s unavailable: %s", port, exc)


@signals.worker_init.connect
def _report_metrics(**_: object) -> None:
    """The worker's metrics (every pool thread added up) as CloudWatch EMF lines on stdout."""
    emf.start("worker")


@signals.worker_shutdown.connect
def _report_last_metrics(**_: object) -> None:
    emf.stop()


@signals.worker_process_shutdown.connect
def _forget_pool_process(pid: int | None = None, **_: object) -> None:
    metrics.process_exited(pid or os.getpid())

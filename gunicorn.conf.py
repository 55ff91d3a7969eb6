"""gunicorn settings for the purchase, query and events processes, from the environment."""

import logging
import os
import re
import shutil
import tempfile

from gunicorn import util

# Prometheus multi-process mode: every worker writes its samples here, /metrics adds them up.
# A fresh directory per gunicorn master, set before any worker imports prometheus_client.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(
    prefix="ticketing-web-metrics-"
)
shutil.rmtree(_metrics_dir, ignore_errors=True)
os.makedirs(_metrics_dir, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
# Longer than the load balancer's idle timeout (ops/terraform/modules/alb: 30 s): the ALB must
# be the side that closes an idle connection. If gunicorn closed first, a request the ALB sends
# on that connection at the same moment meets a reset and the buyer gets a 502.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "75"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None  # empty: no access log
errorlog = "-"
# gunicorn's control socket (gunicornc) defaults to one path per user, which every gunicorn on a
# machine would share, and cannot be made on a read-only root filesystem (ECS): nothing uses it
control_socket_disable = True


def post_worker_init(worker):
    """Connect to Redis and load the purchase script in each worker before its first purchase."""
    if "purchase" not in getattr(worker.wsgi, "blueprints", {}):
        return
    from models import seats

    try:
        scripts = seats.scripts_for(seats.client())
        scripts.redis.script_load(seats.scripts.PURCHASE_LUA)
    except Exception as exc:  # the deep health check reports it; purchases answer 503
        logging.getLogger("gunicorn.error").warning("Redis warm-up failed: %s", exc)


def _process_type(app_uri):
    """The Procfile type this master serves: `purchase`, `query`, `events`, or `web` (several)."""
    match = re.fullmatch(r"""web:create_app\((['"])(purchase|query|events)\1\)""", app_uri or "")
    return match.group(2) if match else "web"


def when_ready(server):
    """Report every worker's samples, added up once, as CloudWatch metrics (METRICS_EMF_SECONDS).

    The master outlives its workers and reads the multi-process directory they all write to.
    """
    from plumbing import emf

    emf.start(_process_type(getattr(server.app, "app_uri", None)))


def on_exit(server):
    """The metrics of the last interval, once every worker has stopped."""
    from plumbing import emf

    emf.stop()


def child_exit(server, worker):
    """Drop a dead worker's live samples."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _write_problem(sock, status_int, reason, mesg):
    """gunicorn's own error answers as problem+json, like every other answer of the API."""
    from web.problems import PROBLEM_JSON, server_problem

    body = server_problem(status_int, mesg)
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


# gunicorn answers a request line over limit_request_line (414), headers over
# limit_request_fields / limit_request_field_size (431) and requests it cannot parse (400)
# before the app sees them. It has no setting for those bodies: every worker class writes them
# through gunicorn.util.write_error (HTML), looked up at each call, so replacing it here, in
# the master before the workers fork, reaches them all. tests/test_input_edges.py pins it.
util.write_error = _write_problem

"""gunicorn settings for the purchase, query and events processes, from the environment."""

import logging
import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None  # empty: no access log
errorlog = "-"


def post_worker_init(worker):
    """Open the SNS client in each worker before it serves the first purchase."""
    if "purchase" not in getattr(worker.wsgi, "blueprints", {}):
        return
    from web import publisher

    try:
        publisher.warm_up()
    except Exception as exc:  # the health endpoint reports it; requests answer 503
        logging.getLogger("gunicorn.error").warning("publisher warm-up failed: %s", exc)

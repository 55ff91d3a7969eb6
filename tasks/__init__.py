"""The Celery app, configured from `celeryconfig.py`; tasks live in the modules beside it."""

from celery import Celery

celery_app = Celery("ticketing")
celery_app.config_from_object("celeryconfig")
celery_app.conf.imports = ["tasks.tickets"]

from tasks.heartbeat import RedisHeartbeat  # noqa: E402
from tasks.monitoring import RedisRemoteControl  # noqa: E402

celery_app.steps["worker"].add(RedisHeartbeat)
celery_app.steps["consumer"].add(RedisRemoteControl)

app = celery_app  # `celery -A tasks` finds it by this name too

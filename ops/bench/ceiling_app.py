"""The bench's ceiling: a trivial Flask POST doing one EVALSHA of a trivial script.

Served by gunicorn with the project's gunicorn.conf.py, like the purchase API, it is the most a
Flask + Redis service can do on this machine under that configuration; the purchase path is
measured as a fraction of it. The script reads the key the way the seat check does (one GETBIT).
"""

from __future__ import annotations

import os

import redis
from flask import Flask, jsonify, request

app = Flask(__name__)

# The purchase API's client settings: short timeouts, no retries (models/seats.py).
_redis = redis.Redis.from_url(
    os.environ["REDIS_URL"],
    socket_timeout=0.5,
    socket_connect_timeout=0.5,
    decode_responses=True,
)
_script = _redis.register_script("return redis.call('GETBIT', KEYS[1], ARGV[1])")


@app.post("/ceiling")
def ceiling():
    """Read the JSON body, one EVALSHA, a small JSON answer."""
    body = request.get_json(silent=True) or {}
    bit = _script(keys=["ceiling:{bench}:sold"], args=[len(body)])
    return jsonify({"bit": bit})

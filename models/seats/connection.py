"""The seat state's Redis client, and what a failed call tells about the seat.

No retries anywhere: a purchase script that timed out may have run; running it again could
answer SEAT_TAKEN to the buyer who holds the seat. `nothing_was_sent` tells the two failures
apart: an error while connecting (refused, unreachable, connect timeout) means the script
never left this process, so nothing changed; any other error (a read timeout, a connection
closed while waiting for the answer) leaves the outcome unknown.
"""

from __future__ import annotations

import os
from functools import cache

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from plumbing import settings

Client = redis.Redis | RedisCluster


def client(url: str | None = None) -> Client:
    """This process's Redis client: short timeouts, and no silent retry of a script call."""
    s = settings.get()
    return _client(url or s.redis_url, s.redis_cluster, os.getpid())


@cache
def _client(url: str, cluster: bool, pid: int) -> Client:
    return connect(url, cluster=cluster)


def connect(
    url: str, *, cluster: bool, timeout: float | None = None, decode_responses: bool = True
) -> Client:
    """A new Redis client: a RedisCluster on a cluster's configuration endpoint, else a Redis.

    A cluster client still follows MOVED and ASK redirections (a redirected command did not
    run), but with `retry` at 0 it does not re-send a command after a timeout or a lost
    connection; it refreshes its slot map and raises. No health-check PING before a command:
    it would make a failure of the check look like a failure of the script.
    """
    timeout = timeout or settings.get().redis_socket_timeout
    options = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": decode_responses,
    }
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def node_for(r: Client, key: str) -> redis.Redis:
    """The client of the node serving `key`'s slot (itself on a single server): WAIT must go
    over the same node connection as the script it waits for."""
    if isinstance(r, RedisCluster):
        return r.get_node_from_key(key).redis_connection
    return r


def nothing_was_sent(exc: redis.RedisError) -> bool:
    """Whether the failed call certainly never reached Redis (so it changed nothing).

    redis-py raises ConnectionError/TimeoutError with "connecting to" (or "Timeout connecting")
    only from `Connection.connect`, before any command bytes are written. A Redis error
    *reply* (OOM, NOSCRIPT, MOVED, LOADING, a script error before its first write) also means the
    script made no change: the scripts check everything before they write.
    """
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        text = str(exc)
        return "connecting to" in text or "Timeout connecting" in text
    return isinstance(exc, redis.ResponseError)


def ping(r: Client) -> bool:
    """Whether Redis answers; on a cluster every master must, since any event may live on any."""
    if isinstance(r, RedisCluster):
        return bool(r.ping(target_nodes=RedisCluster.PRIMARIES))
    return bool(r.ping())

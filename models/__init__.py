"""SQLAlchemy models and engines: one `Base`, typed tables, a writer and a reader engine."""

from __future__ import annotations

import os
from functools import cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import DeclarativeBase

from plumbing import settings


class Base(DeclarativeBase):
    """The declarative base of every table."""


def _engine(url: str, pid: int) -> Engine:
    # pid in the cache key: a forked Celery pool process must not share its parent's sockets.
    return create_engine(
        url,
        pool_pre_ping=True,  # a connection dropped by a failover or idle timeout is replaced
        pool_recycle=1800,
        pool_size=5,
        max_overflow=10,
        isolation_level="READ COMMITTED",
        connect_args=_connect_args(url),
    )


def _connect_args(url: str) -> dict:
    if url.startswith("mysql"):
        return {"connect_timeout": 3, "read_timeout": 30, "write_timeout": 30, "charset": "utf8mb4"}
    return {}


_cached_engine = cache(_engine)


def writer() -> Engine:
    """Engine on the writer (`DATABASE_URL`): the worker, migrations, catalog loading."""
    return _cached_engine(settings.get().database_url, os.getpid())


def reader() -> Engine:
    """Engine on the reader (`DATABASE_READ_URL`, defaults to the writer): the query API."""
    return _cached_engine(settings.get().database_read_url, os.getpid())


from models.tables import (  # noqa: E402
    Event,
    EventTotals,
    LatePayment,
    Order,
    OrderSeat,
    Ticket,
    TicketConflict,
    Venue,
    Zone,
)

__all__ = [
    "Base",
    "Event",
    "EventTotals",
    "LatePayment",
    "Order",
    "OrderSeat",
    "Ticket",
    "TicketConflict",
    "Venue",
    "Zone",
    "reader",
    "writer",
]

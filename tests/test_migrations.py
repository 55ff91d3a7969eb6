"""The migrations on a database that already has data: the ids keep their values and become
exact, the totals are backfilled from the tickets there, and the way back works."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from plumbing import settings
from tests.support.processes import BIN, ROOT


@pytest.fixture
def scratch() -> Iterator[tuple[Engine, dict[str, str]]]:
    """An empty database of its own (named after the test database) and the environment that
    points alembic at it."""
    url = make_url(settings.get().database_url)
    name = f"{url.database}_migrations"
    server = create_engine(url.set(database=""), poolclass=NullPool)
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    scratch_url = url.set(database=name)
    engine = create_engine(scratch_url, poolclass=NullPool)
    env = {**os.environ, "DATABASE_URL": scratch_url.render_as_string(hide_password=False)}
    env.pop("DATABASE_READ_URL", None)
    yield engine, env
    engine.dispose()
    with server.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    server.dispose()


def alembic(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "alembic"), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def ticket(n: int, event: str, price: str, status: str = "PAID") -> str:
    return (
        f"('00000000-0000-4000-8000-{n:012d}', 'Venue1', '{event}', 1, 'A', {n}, {price},"
        f" '{status}', '2026-11-26 12:00:00')"
    )


SEED = [
    "INSERT INTO venue VALUES ('Venue1', 'Venue one')",
    "INSERT INTO zone VALUES ('Venue1', 1, 2, 40, 80, 40, 100.00)",
    "INSERT INTO event (event_id, venue_id, name, type, event_date, capacity) VALUES"
    " ('Event1', 'Venue1', 'One', 'T', '2027-01-01', 80),"
    " ('Event2', 'Venue1', 'Two', 'T', '2027-01-02', 80),"
    " ('Event3', 'Venue1', 'Three', 'T', '2027-01-03', 80)",
    "INSERT INTO ticket (ticket_id, venue_id, event_id, zone_id, seat_row, seat_column, price,"
    " status, created_on) VALUES "
    + ", ".join(
        [
            ticket(1, "Event1", "100.00"),
            ticket(2, "Event1", "100.00"),
            ticket(3, "Event1", "95.50"),
            ticket(4, "Event1", "100.00", status="REFUNDED"),
            ticket(5, "Event2", "80.00"),
        ]
    ),
]


def test_upgrade_keeps_the_data_makes_ids_exact_and_backfills_the_totals(scratch):
    engine, env = scratch
    alembic(env, "upgrade", "0001")
    with engine.begin() as conn:
        for statement in SEED:
            conn.execute(text(statement))
    alembic(env, "upgrade", "head")
    with engine.connect() as conn:
        totals = dict(
            (e.decode(), (n, r))
            for e, n, r in conn.execute(text("SELECT * FROM event_totals ORDER BY event_id"))
        )
        assert totals == {
            "Event1": (3, Decimal("295.50")),
            "Event2": (1, Decimal("80.00")),
            "Event3": (0, Decimal("0.00")),
        }
        assert conn.scalar(text("SELECT COUNT(*) FROM ticket WHERE event_id = 'Event1'")) == 4
        assert conn.scalar(text("SELECT COUNT(*) FROM ticket WHERE event_id = 'EVENT1'")) == 0
        assert conn.scalar(text("SELECT COUNT(*) FROM event WHERE event_id = 'Event1 '")) == 0
    columns = {c["name"]: str(c["type"]) for c in inspect(engine).get_columns("ticket")}
    assert columns["ticket_id"] == "VARBINARY(36)" and columns["event_id"] == "VARBINARY(64)"
    indexes = {i["name"] for i in inspect(engine).get_indexes("ticket")}
    assert "ix_ticket_venue_zone_created" in indexes
    assert not indexes & {"ix_ticket_venue_event_price", "fk_ticket_zone"}


def test_downgrade_to_the_first_revision_and_back(scratch):
    engine, env = scratch
    alembic(env, "upgrade", "0001")
    with engine.begin() as conn:
        for statement in SEED:
            conn.execute(text(statement))
    alembic(env, "upgrade", "head")
    alembic(env, "downgrade", "0001")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT COUNT(*) FROM ticket WHERE event_id = 'EVENT1'")) == 4
    alembic(env, "upgrade", "head")
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT ticket_count FROM event_totals WHERE event_id = 'Event1'"))

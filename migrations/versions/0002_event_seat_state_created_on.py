"""event.seat_state_created_on: when the event's seat state was first written to Redis.

`catalog load` initialises only events that never had seat state; one whose state Redis lost
must be rebuilt from MySQL (`seats rebuild`), which waits for tickets still in flight. Redis
cannot tell the two apart after a loss; this column, written before the state, can. Events that
exist when this migration runs are marked: nobody can tell whether they were ever sold, so a
lost one is rebuilt, never initialised as empty.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "event",
        sa.Column(
            "seat_state_created_on",
            sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"),
            nullable=True,
        ),
    )
    op.execute("UPDATE event SET seat_state_created_on = NOW(6)")


def downgrade() -> None:
    op.drop_column("event", "seat_state_created_on")

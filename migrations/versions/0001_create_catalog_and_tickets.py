"""Create the catalog (venue, zone, event), the ticket projection and ticket_conflict.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MONEY = sa.Numeric(10, 2)


def _timestamp() -> sa.types.TypeEngine:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _seat_columns() -> list[sa.Column]:
    return [
        sa.Column("venue_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.Integer, nullable=False),
        sa.Column("seat_row", sa.String(16), nullable=False),
        sa.Column("seat_column", sa.Integer, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.Column("created_on", _timestamp(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "venue",
        sa.Column("venue_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
    )
    op.create_table(
        "zone",
        sa.Column("venue_id", sa.String(64), primary_key=True),
        sa.Column("zone_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("row_count", sa.Integer, nullable=False),
        sa.Column("column_count", sa.Integer, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("row_capacity", sa.Integer, nullable=False),
        sa.Column("price", MONEY, nullable=False),
        sa.ForeignKeyConstraint(["venue_id"], ["venue.venue_id"], name="fk_zone_venue"),
    )
    op.create_table(
        "event",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("venue_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(50), nullable=False),
        sa.Column("event_date", _timestamp(), nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.ForeignKeyConstraint(["venue_id"], ["venue.venue_id"], name="fk_event_venue"),
    )
    op.create_index("ix_event_venue_id", "event", ["venue_id"])
    op.create_table(
        "ticket",
        sa.Column("ticket_id", sa.CHAR(36), primary_key=True),
        *_seat_columns(),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("persisted_on", _timestamp(), server_default=sa.func.now(6), nullable=False),
        sa.UniqueConstraint(
            "event_id", "zone_id", "seat_row", "seat_column", name="uq_ticket_seat"
        ),
        sa.ForeignKeyConstraint(["event_id"], ["event.event_id"], name="fk_ticket_event"),
        sa.ForeignKeyConstraint(
            ["venue_id", "zone_id"], ["zone.venue_id", "zone.zone_id"], name="fk_ticket_zone"
        ),
    )
    op.create_index("ix_ticket_created", "ticket", ["created_on", "ticket_id"])
    op.create_index("ix_ticket_event_created", "ticket", ["event_id", "created_on", "ticket_id"])
    op.create_index("ix_ticket_venue_event_price", "ticket", ["venue_id", "event_id", "price"])
    op.create_table(
        "ticket_conflict",
        sa.Column("ticket_id", sa.CHAR(36), primary_key=True),
        sa.Column("owner_ticket_id", sa.CHAR(36), nullable=False),
        *_seat_columns(),
        sa.Column("detected_on", _timestamp(), server_default=sa.func.now(6), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ticket_conflict")
    op.drop_table("ticket")
    op.drop_table("event")
    op.drop_table("zone")
    op.drop_table("venue")

"""Ids compare exactly: venue, event and ticket ids become VARBINARY.

The columns were VARCHAR in the server's default collation (MariaDB: utf8mb4_general_ci, Aurora
MySQL 3: utf8mb4_0900_ai_ci), which matches "EVENT1", "Évent1" and (MariaDB) "Event1   " to
"Event1". VARBINARY compares bytes, pads nothing and exists on both engines; the NO PAD binary
collations do not share a name (MariaDB `utf8mb4_nopad_bin`, MySQL `utf8mb4_0900_bin`), and
`utf8mb4_bin` ignores trailing spaces on both. The stored bytes do not change (UTF-8), and no
two stored ids can collide after the change: exact comparison only separates values.

Foreign keys are dropped around the change (a column in a foreign key cannot change type while
the key exists), then made again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, length)
ID_COLUMNS = [
    ("venue", "venue_id", 64),
    ("zone", "venue_id", 64),
    ("event", "event_id", 64),
    ("event", "venue_id", 64),
    ("ticket", "ticket_id", 36),
    ("ticket", "venue_id", 64),
    ("ticket", "event_id", 64),
    ("ticket_conflict", "ticket_id", 36),
    ("ticket_conflict", "owner_ticket_id", 36),
    ("ticket_conflict", "venue_id", 64),
    ("ticket_conflict", "event_id", 64),
]
# (name, table, columns, referred table, referred columns)
FOREIGN_KEYS = [
    ("fk_zone_venue", "zone", ["venue_id"], "venue", ["venue_id"]),
    ("fk_event_venue", "event", ["venue_id"], "venue", ["venue_id"]),
    ("fk_ticket_event", "ticket", ["event_id"], "event", ["event_id"]),
    ("fk_ticket_zone", "ticket", ["venue_id", "zone_id"], "zone", ["venue_id", "zone_id"]),
]


def _retype(old: str, new: str) -> None:
    for name, table, *_ in FOREIGN_KEYS:
        op.drop_constraint(name, table, type_="foreignkey")
    for table, column, length in ID_COLUMNS:
        before = sa.VARBINARY(length) if old == "binary" else _text(column, length)
        after = sa.VARBINARY(length) if new == "binary" else _text(column, length)
        op.alter_column(table, column, type_=after, existing_type=before, existing_nullable=False)
    for name, table, columns, referred, referred_columns in FOREIGN_KEYS:
        op.create_foreign_key(name, table, referred, columns, referred_columns)


def _text(column: str, length: int) -> sa.types.TypeEngine:
    return sa.CHAR(length) if column.endswith("ticket_id") else sa.String(length)


def upgrade() -> None:
    _retype("text", "binary")


def downgrade() -> None:
    # Fails with a duplicate key if ids now differ only by case, accents or trailing spaces.
    _retype("binary", "text")

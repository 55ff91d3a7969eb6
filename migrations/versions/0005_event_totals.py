"""Per-event totals (PAID tickets, revenue), backfilled from the tickets.

Count and revenue were aggregates over every ticket of the event; the projection now keeps
their answers in `event_totals`, in the transaction that inserts the tickets, and the two
answers are primary-key reads. The backfill gives every event its row (zero when it has no
ticket). The index that served the revenue aggregate goes.

Workers of the previous release that still run after this migration insert tickets without
counting them: run `flask --app web tickets recount` once they are gone (it is safe while the
new workers write).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_totals",
        sa.Column("event_id", sa.VARBINARY(64), primary_key=True),
        sa.Column("ticket_count", sa.BigInteger, nullable=False),
        sa.Column("revenue", sa.Numeric(20, 2), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.event_id"], name="fk_event_totals_event"),
    )
    op.execute(
        """
        INSERT INTO event_totals (event_id, ticket_count, revenue)
        SELECT e.event_id, COUNT(t.ticket_id), COALESCE(SUM(t.price), 0)
        FROM event e LEFT JOIN ticket t ON t.event_id = e.event_id AND t.status = 'PAID'
        GROUP BY e.event_id
        """
    )
    op.drop_index("ix_ticket_venue_event_price", "ticket")


def downgrade() -> None:
    op.create_index("ix_ticket_venue_event_price", "ticket", ["venue_id", "event_id", "price"])
    op.drop_table("event_totals")

"""Who bought each ticket: the buyer (the token's `sub`) the ticket event carries.

Tickets sold before identities existed have none (NULL): only operators see them. The buyer
compares byte for byte, like the ids (up to 255 characters of UTF-8: 1020 bytes).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ticket", sa.Column("buyer", sa.VARBINARY(1020), nullable=True))
    op.create_index("ix_ticket_event_buyer", "ticket", ["event_id", "buyer"])


def downgrade() -> None:
    op.drop_index("ix_ticket_event_buyer", "ticket")
    op.drop_column("ticket", "buyer")

"""event.sales_start / sales_end: an event's sales window, as the catalog file sets it.

Both optional (NULL: no bound). MySQL keeps them so that the catalog copy rebuilt from MySQL
(`seats rebuild`) keeps the window the purchase API checks, and the query API shows it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime().with_variant(sa.dialects.mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.add_column("event", sa.Column("sales_start", _TIME, nullable=True))
    op.add_column("event", sa.Column("sales_end", _TIME, nullable=True))


def downgrade() -> None:
    op.drop_column("event", "sales_end")
    op.drop_column("event", "sales_start")

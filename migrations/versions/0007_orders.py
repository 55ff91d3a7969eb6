"""Orders as projected, their seats, tickets that can be refunded, and late payments.

`orders` holds each order's newest state (its `version` decides), `order_seat` its seats with
the order's status; a generated column that is the event while the order is live (HELD or PAID)
and NULL otherwise, UNIQUE with the seat, makes MySQL refuse two live orders on one seat.
The ticket's seat key becomes the same kind: unique among PAID tickets only, so a REFUNDED
ticket no longer blocks its seat from being sold again. Tickets remember their order.
`late_payment` keeps the payments that came for expired orders whose seats were gone, to refund.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PAID_EVENT = "CASE WHEN status = 'PAID' THEN event_id END"
_LIVE_EVENT = "CASE WHEN status IN ('HELD', 'PAID') THEN event_id END"
_TIME = sa.DateTime().with_variant(sa.dialects.mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("order_id", sa.VARBINARY(64), primary_key=True),
        sa.Column("event_id", sa.VARBINARY(64), nullable=False),
        sa.Column("venue_id", sa.VARBINARY(64), nullable=False),
        sa.Column("buyer", sa.VARBINARY(1020), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Numeric(20, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_on", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.Column("payment_id", sa.VARBINARY(255), nullable=True),
        sa.Column("updated", _TIME, server_default=sa.func.now(6), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["event.event_id"], name="fk_orders_event"),
    )
    op.create_index(
        "ix_orders_event_status_created",
        "orders",
        ["event_id", "status", "created_on", "order_id"],
    )
    op.create_index("ix_orders_buyer_created", "orders", ["buyer", "created_on", "order_id"])
    op.create_table(
        "order_seat",
        sa.Column("order_id", sa.VARBINARY(64), primary_key=True),
        sa.Column("zone_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seat_row", sa.String(16), primary_key=True),
        sa.Column("seat_column", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("venue_id", sa.VARBINARY(64), nullable=False),
        sa.Column("event_id", sa.VARBINARY(64), nullable=False),
        sa.Column("ticket_id", sa.VARBINARY(36), nullable=False),
        sa.Column("price", sa.Numeric(10, 2), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("live_event_id", sa.VARBINARY(64), sa.Computed(_LIVE_EVENT, persisted=True)),
        sa.ForeignKeyConstraint(["order_id"], ["orders.order_id"], name="fk_order_seat_order"),
        sa.ForeignKeyConstraint(
            ["venue_id", "zone_id"], ["zone.venue_id", "zone.zone_id"], name="fk_order_seat_zone"
        ),
        sa.UniqueConstraint(
            "live_event_id", "zone_id", "seat_row", "seat_column", name="uq_order_seat_live"
        ),
    )
    op.add_column("ticket", sa.Column("order_id", sa.VARBINARY(64), nullable=True))
    op.create_index("ix_ticket_order_id", "ticket", ["order_id"])
    op.add_column(
        "ticket",
        sa.Column("paid_event_id", sa.VARBINARY(64), sa.Computed(_PAID_EVENT, persisted=True)),
    )
    op.create_unique_constraint(
        "uq_ticket_paid_seat", "ticket", ["paid_event_id", "zone_id", "seat_row", "seat_column"]
    )
    op.drop_constraint("uq_ticket_seat", "ticket", type_="unique")
    op.create_table(
        "late_payment",
        sa.Column("payment_id", sa.VARBINARY(255), primary_key=True),
        sa.Column("order_id", sa.VARBINARY(64), nullable=False),
        sa.Column("event_id", sa.VARBINARY(64), nullable=False),
        sa.Column("amount", sa.Numeric(20, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("rejected_on", _TIME, nullable=False),
        sa.Column("recorded_on", _TIME, server_default=sa.func.now(6), nullable=False),
    )
    op.create_index("ix_late_payment_order_id", "late_payment", ["order_id"])


def downgrade() -> None:
    op.drop_table("late_payment")
    op.create_unique_constraint(
        "uq_ticket_seat", "ticket", ["event_id", "zone_id", "seat_row", "seat_column"]
    )
    op.drop_constraint("uq_ticket_paid_seat", "ticket", type_="unique")
    op.drop_column("ticket", "paid_event_id")
    op.drop_index("ix_ticket_order_id", "ticket")
    op.drop_column("ticket", "order_id")
    op.drop_table("order_seat")
    op.drop_table("orders")

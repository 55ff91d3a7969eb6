"""Indexes for every filter of the ticket list, each ending in the list's order.

`GET /query/api/v1/tickets` filters on eventId, venueId and zoneId (any of them together) and
reads newest first, (created_on, ticket_id) descending, from a cursor. Each combination gets an
index whose equalities come first and whose order is the list's, so a page reads one page of
rows and sorts nothing. eventId with venueId uses the event's indexes (an event is at one venue).

(venue_id, zone_id, …) also serves the foreign key to zone, so MariaDB's own index for that key
goes (MySQL 8.0 drops such an index by itself when another one can serve the key).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_INDEXES = {
    "ix_ticket_event_zone_created": ["event_id", "zone_id", "created_on", "ticket_id"],
    "ix_ticket_venue_created": ["venue_id", "created_on", "ticket_id"],
    "ix_ticket_venue_zone_created": ["venue_id", "zone_id", "created_on", "ticket_id"],
    "ix_ticket_zone_created": ["zone_id", "created_on", "ticket_id"],
}
FK_INDEX = "fk_ticket_zone"  # made by MariaDB for the foreign key of the same name


def _indexes() -> set[str]:
    return {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("ticket")}


def upgrade() -> None:
    for name, columns in NEW_INDEXES.items():
        op.create_index(name, "ticket", columns)
    if FK_INDEX in _indexes():
        op.drop_index(FK_INDEX, "ticket")


def downgrade() -> None:
    if FK_INDEX not in _indexes():  # the foreign key needs an index once ours are gone
        op.create_index(FK_INDEX, "ticket", ["venue_id", "zone_id"])
    for name in NEW_INDEXES:
        op.drop_index(name, "ticket")

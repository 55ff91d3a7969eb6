"""The bench's catalog and seat state: which venue, event and seats each phase sells.

One arena zone holds 2,000,000 seats (1,000 rows A…ALL × 2,000 columns; the catalog allows up to
18,278 rows and 100,000 columns), so the flatness phase can sell 1,000,000 seats beforehand and
still buy fresh seats; its second zone (10,000 seats) is the seat map read beside the sale.
Every phase has an event of its own; the flash sale has a 1,000-seat club.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import redis

from models.catalog import row_label
from models.seats import zone_keys

ARENA = "BenchArena"
CLUB = "BenchClub"
ARENA_ROWS, ARENA_COLUMNS = 1000, 2000
SECTION_ROWS, SECTION_COLUMNS = 100, 100  # the arena's zone 2: the seat map buyers watch
CLUB_ROWS, CLUB_COLUMNS = 25, 40


@dataclass(frozen=True)
class Seats:
    """An event's zone to buy in: venue, event, zone and its grid."""

    venue: str
    event: str
    zone: int
    rows: int
    columns: int

    @property
    def capacity(self) -> int:
        return self.rows * self.columns

    def seat(self, index: int) -> tuple[str, str]:
        """(row, column) of a seat index = rowIndex × columns + colIndex."""
        return row_label(index // self.columns), str(index % self.columns + 1)

    def body(self, index: int) -> bytes:
        """The purchase request body for one seat."""
        row, column = self.seat(index)
        return json.dumps(
            {
                "venueId": self.venue,
                "eventId": self.event,
                "zoneId": self.zone,
                "row": row,
                "column": column,
            },
            separators=(",", ":"),
        ).encode()


RUN = Seats(ARENA, "BenchRun", 1, ARENA_ROWS, ARENA_COLUMNS)  # purchase path at 64 clients
LIGHT = Seats(ARENA, "BenchLight", 1, ARENA_ROWS, ARENA_COLUMNS)  # accept vs reject
FLAT = Seats(ARENA, "BenchFlat", 1, ARENA_ROWS, ARENA_COLUMNS)  # 0 vs 1,000,000 sold
# seat-map reads beside the purchases: the map of RUN's event's other zone (same Redis slot)
WATCHED = Seats(ARENA, RUN.event, 2, SECTION_ROWS, SECTION_COLUMNS)
DRAIN = Seats(ARENA, "BenchDrain", 1, ARENA_ROWS, ARENA_COLUMNS)  # worker CPU per ticket
LAG = Seats(ARENA, "BenchLag", 1, ARENA_ROWS, ARENA_COLUMNS)  # purchase → readable
FLASH = Seats(CLUB, "BenchFlash", 1, CLUB_ROWS, CLUB_COLUMNS)  # 10,000 attempts, 1,000 seats
# the box office phase (ops/bench/box_office.py): seat state written into Redis and sold by the
# scripts, never through the API, so not in the catalog
BEST_FRONT = Seats(ARENA, "BenchBestFront", 1, ARENA_ROWS, ARENA_COLUMNS)  # 95 % sold row by row
BEST_RANDOM = Seats(ARENA, "BenchBestRandom", 1, ARENA_ROWS, ARENA_COLUMNS)  # 95 % sold at random
EXPIRY = Seats(ARENA, "BenchExpiry", 1, ARENA_ROWS, ARENA_COLUMNS)  # 10,000 holds expiring at once
# reads: an event per number of tickets in MySQL (ops/bench/reads.py)
READS = {
    n: Seats(ARENA, name, 1, ARENA_ROWS, ARENA_COLUMNS)
    for n, name in [(0, "BenchRead0"), (100_000, "BenchRead100k"), (1_000_000, "BenchRead1M")]
}


def catalog_document() -> dict:
    """The bench catalog (CATALOG_FILE): two venues, one event per phase."""
    events = [RUN, LIGHT, FLAT, DRAIN, LAG, FLASH, *READS.values()]
    return {
        "venues": [
            {
                "venueId": ARENA,
                "name": "Bench arena, a zone of 2,000,000 seats and one of 10,000",
                "zones": [
                    {"zoneId": 1, "rows": ARENA_ROWS, "columns": ARENA_COLUMNS, "price": "50.00"},
                    {
                        "zoneId": 2,
                        "rows": SECTION_ROWS,
                        "columns": SECTION_COLUMNS,
                        "price": "70.00",
                    },
                ],
            },
            {
                "venueId": CLUB,
                "name": "Bench club, 1,000 seats",
                "zones": [
                    {"zoneId": 1, "rows": CLUB_ROWS, "columns": CLUB_COLUMNS, "price": "80.00"}
                ],
            },
        ],
        "events": [
            {
                "eventId": s.event,
                "venueId": s.venue,
                "name": f"{s.event} (bench)",
                "type": "BENCH",
                "date": "2030-01-01T20:00:00Z",
            }
            for s in events
        ],
    }


def write_catalog(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalog_document(), indent=1))
    return path


def set_sold_prefix(r: redis.Redis, seats: Seats, sold: int) -> None:
    """Make exactly the first `sold` seats of the zone sold, whole rows, consistently: the bitmap
    (SETRANGE of 0xFF bytes), each row's and the zone's seats left, the event's sold counter
    (the event sells only this zone). Replaces whatever state the zone had."""
    if sold % seats.columns or sold % 8 or not 0 <= sold <= seats.capacity:
        raise ValueError(f"{sold} is not a whole number of rows of whole bytes")
    full_rows = sold // seats.columns
    sold_key, left_key, event_key = zone_keys(seats.event, seats.zone)
    left: dict[str, int] = {
        row_label(i): 0 if i < full_rows else seats.columns for i in range(seats.rows)
    }
    left["zone"] = seats.capacity - sold
    pipe = r.pipeline(transaction=True)  # one slot: also on Redis Cluster
    pipe.delete(sold_key, left_key)
    if sold:
        pipe.setrange(sold_key, 0, b"\xff" * (sold // 8))
    pipe.hset(left_key, mapping=left)
    pipe.hset(event_key, mapping={"sold": sold, "capacity": seats.capacity})
    pipe.execute()


def sold_count(r: redis.Redis, seats: Seats) -> tuple[int, int, int]:
    """(bits set in the bitmap, the zone's seats left, the event's sold counter)."""
    sold_key, left_key, event_key = zone_keys(seats.event, seats.zone)
    return (
        int(r.bitcount(sold_key)),
        int(r.hget(left_key, "zone") or 0),
        int(r.hget(event_key, "sold") or 0),
    )

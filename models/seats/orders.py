"""The box office's seat-state core: orders held, confirmed, cancelled, refunded and expired.

Each operation is ONE atomic EVALSHA in the event's slot (`order_scripts.py` has the Lua and
the key layout) that checks, changes seat state, stores the order and appends the order's full
snapshot to the bucket's outbox stream (`kind=order`), so a change without its event cannot
exist. The HTTP layer validates ids, seats in range and the sales window before calling; the
relay's sweeper calls `sweep`.

Outcomes are the contract's codes: OK (changed), NO_CHANGE (200, nothing changed), EXISTS (a
hold with an order id already stored: nothing changed), NOT_LOADED (no seat state: 503), and
SEAT_TAKEN, NOT_ENOUGH_ADJACENT_SEATS, BUYER_LIMIT_REACHED, RATE_LIMITED, ROW_FULL, ZONE_FULL,
EVENT_SOLD_OUT, ORDER_NOT_FOUND, ORDER_NOT_PAYABLE, AMOUNT_MISMATCH, HOLD_EXPIRED, ORDER_PAID,
ORDER_CLOSED, ORDER_NOT_PAID.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from models.catalog import ZoneSpec, row_label
from models.seats import keys
from models.seats.connection import Client
from models.seats.order_scripts import (
    CANCEL_LUA,
    CONFIRM_LUA,
    GET_LUA,
    HOLD_LUA,
    REFUND_LUA,
    SWEEP_LUA,
    ZONE_MAP_LUA,
)
from models.seats.scripts import Limits, canonical_amount, seat_bit

DEFAULT_HOLD_SECONDS = 600
DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class OrderSeat:
    """One seat of an order: the ticket it becomes once paid."""

    ticket_id: str
    zone_id: int
    row: str
    column: str
    price: str


@dataclass(frozen=True)
class Order:
    """An order's snapshot as stored and published (`raw` is the JSON of the outbox entry)."""

    order_id: str
    status: str
    version: int
    buyer: str
    event_id: str
    venue_id: str
    seats: tuple[OrderSeat, ...]
    total: str
    currency: str
    created_on: str
    expires_at: str
    payment_id: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: str) -> Order:
        d = json.loads(doc)
        return cls(
            order_id=d["orderId"],
            status=d["status"],
            version=int(d["version"]),
            buyer=d["buyer"],
            event_id=d["eventId"],
            venue_id=d["venueId"],
            seats=tuple(
                OrderSeat(s["ticketId"], int(s["zoneId"]), s["row"], s["column"], s["price"])
                for s in d["seats"]
            ),
            total=d["total"],
            currency=d["currency"],
            created_on=d["createdOn"],
            expires_at=d["expiresAt"],
            payment_id=d.get("paymentId"),
            raw=d,
        )


@dataclass(frozen=True)
class OrderResult:
    """A script's answer: the outcome code, the order as it stands (when there is one), the
    seats that were taken (SEAT_TAKEN: (zone id, row, column)), the ms to wait (RATE_LIMITED)."""

    outcome: str
    order: Order | None = None
    taken: tuple[tuple[int, str, str], ...] = ()
    wait_ms: int = 0

    @property
    def ok(self) -> bool:
        """A 200/201 answer: changed (OK) or nothing to change (NO_CHANGE)."""
        return self.outcome in ("OK", "NO_CHANGE")


class OrderScripts:
    """The order scripts registered on one client; every method is one EVALSHA."""

    def __init__(self, r: Client) -> None:
        self.redis = r
        self._hold = r.register_script(HOLD_LUA)
        self._confirm = r.register_script(CONFIRM_LUA)
        self._cancel = r.register_script(CANCEL_LUA)
        self._refund = r.register_script(REFUND_LUA)
        self._get = r.register_script(GET_LUA)
        self._sweep = r.register_script(SWEEP_LUA)
        self._zone_map = r.register_script(ZONE_MAP_LUA)

    @staticmethod
    def _keys(event_id: str, order_id: str = "") -> list[str]:
        return [
            keys.event_key(event_id),
            keys.buyers_key(event_id),
            keys.holds_key(event_id),
            keys.payments_key(event_id),
            keys.outbox_stream(keys.bucket(event_id)),
            keys.order_key(event_id, order_id),
        ]

    def hold(
        self,
        event_id: str,
        venue_id: str,
        *,
        buyer: str,
        seats: Sequence[tuple[ZoneSpec, int, int]] = (),
        best: tuple[ZoneSpec, int] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        hold_seconds: float = DEFAULT_HOLD_SECONDS,
        currency: str = "USD",
        order_id: str | None = None,
        ticket_ids: Sequence[str] | None = None,
        request_id: str = "",
        request_hash: str = "",
    ) -> OrderResult:
        """Hold the chosen `seats` ((zone, row index, column from 1), validated and distinct)
        or, with `best` = (zone, quantity), the best available block: all or none.

        `request_hash` (the HTTP layer's Idempotency-Key fingerprint) is stored in the order's
        snapshot as `requestHash`, so a repeat that meets EXISTS can tell the same request
        from another one; the scripts carry it along unread."""
        if bool(seats) == (best is not None):
            raise ValueError("give either seats or best")
        order_id = order_id or keys.new_order_id(event_id)
        count = len(seats) if best is None else best[1]
        if count < 1:
            raise ValueError("an order has at least one seat")
        ticket_ids = list(ticket_ids) if ticket_ids else [str(uuid.uuid4()) for _ in range(count)]
        if len(ticket_ids) != count:
            raise ValueError("one ticket id per seat")
        doc_seats: list[dict[str, Any]] = []
        cells: list[list[Any]] = []
        if best is None:
            for (zone, r_index, column), tid in zip(seats, ticket_ids, strict=True):
                label = row_label(r_index)
                doc_seats.append(
                    {
                        "ticketId": tid,
                        "zoneId": zone.zone_id,
                        "row": label,
                        "column": str(column),
                        "price": f"{zone.price:.2f}",
                    }
                )
                cells.append([zone.zone_id, seat_bit(zone, r_index, column), label, tid, r_index])
            prices = [zone.price for zone, _, _ in seats]
        else:
            zone = best[0]
            doc_seats = [
                {"ticketId": tid, "zoneId": zone.zone_id, "price": f"{zone.price:.2f}"}
                for tid in ticket_ids
            ]
            prices = [zone.price] * count
        total = sum(prices, Decimal(0))
        skeleton = {
            "orderId": order_id,
            "venueId": venue_id,
            "eventId": event_id,
            "buyer": buyer,
            "seats": doc_seats,
            "total": f"{total:.2f}",
            "currency": currency,
        }
        if request_hash:
            skeleton["requestHash"] = request_hash
        args: list[Any] = [
            keys.event_prefix(event_id),
            request_id,
            order_id,
            json.dumps(skeleton),
            json.dumps(cells),
            max(0, round(hold_seconds * 1000)),
            limits.seats_per_buyer,
            *limits.rate_args(),
            canonical_amount(total),
        ]
        if best is not None:
            args += [best[0].zone_id, best[0].rows, best[0].columns, best[1]]
        lookup = keys.order_event_key(order_id)
        if keys.order_bucket(order_id) != keys.bucket(event_id):
            lookup = None  # an id that does not name the event's slot: found by event only
        reply = self._hold(
            keys=[
                *self._keys(event_id, order_id),
                keys.rate_key(event_id, buyer),
                *([lookup] if lookup else []),
            ],
            args=args,
        )
        outcome = reply[0]
        if outcome in ("OK", "EXISTS"):
            return OrderResult(outcome, Order.from_json(reply[1]))
        if outcome == "SEAT_TAKEN":
            taken = tuple(
                (doc_seats[i]["zoneId"], doc_seats[i]["row"], doc_seats[i]["column"])
                for i in json.loads(reply[1])
            )
            return OrderResult(outcome, taken=taken)
        if outcome == "RATE_LIMITED":
            return OrderResult(outcome, wait_ms=int(reply[1]))
        return OrderResult(outcome)

    def confirm(
        self,
        event_id: str,
        order_id: str,
        *,
        payment_id: str,
        amount: Decimal | str,
        currency: str,
        limits: Limits = DEFAULT_LIMITS,
        request_id: str = "",
    ) -> OrderResult:
        """The payment provider's confirmation, as the contract's state × action table says."""
        return self._answer(
            self._confirm(
                keys=self._keys(event_id, order_id),
                args=[
                    keys.event_prefix(event_id),
                    request_id,
                    order_id,
                    payment_id,
                    canonical_amount(amount),
                    currency,
                    limits.seats_per_buyer,
                ],
            )
        )

    def cancel(
        self,
        event_id: str,
        order_id: str,
        *,
        caller: str,
        operator: bool = False,
        request_id: str = "",
    ) -> OrderResult:
        """The owner (or an operator) cancels; anyone else gets ORDER_NOT_FOUND."""
        return self._answer(
            self._cancel(
                keys=self._keys(event_id, order_id),
                args=[
                    keys.event_prefix(event_id),
                    request_id,
                    order_id,
                    caller,
                    "1" if operator else "0",
                ],
            )
        )

    def refund(
        self, event_id: str, order_id: str, *, payment_id: str | None, request_id: str = ""
    ) -> OrderResult:
        """Refund a PAID order (`payment_id` None: an operator's refund of whatever paid it)."""
        return self._answer(
            self._refund(
                keys=self._keys(event_id, order_id),
                args=[keys.event_prefix(event_id), request_id, order_id, payment_id or ""],
            )
        )

    def event_of(self, order_id: str) -> str | None:
        """The event of an order made here (one GET in the order's bucket), or None."""
        lookup = keys.order_event_key(order_id)
        if lookup is None:
            return None
        event_id = self.redis.get(lookup)
        return event_id.decode() if isinstance(event_id, bytes) else event_id

    def get(self, event_id: str, order_id: str) -> OrderResult:
        """The order's live state (an expired hold becomes EXPIRED here, with its event)."""
        return self._answer(
            self._get(
                keys=self._keys(event_id, order_id),
                args=[keys.event_prefix(event_id), "", order_id],
            )
        )

    def sweep(self, event_id: str, max_orders: int = 1000, request_id: str = "") -> int:
        """Expire up to `max_orders` due holds of the event; returns how many this call did."""
        return int(
            self._sweep(
                keys=self._keys(event_id),
                args=[keys.event_prefix(event_id), request_id, max_orders],
            )
        )

    def zone_map(self, event_id: str, zone: ZoneSpec) -> list[str] | None:
        """One string per row, one character per seat: `0` free, `h` held, `1` sold."""
        reply = self._zone_map(
            keys=[
                keys.zone_keys(event_id, zone.zone_id)[0],
                keys.held_key(event_id, zone.zone_id),
                keys.zone_keys(event_id, zone.zone_id)[1],
            ]
        )
        if reply == "NOT_LOADED":
            return None
        size = zone.rows * zone.columns
        sold, held = (
            "".join(f"{b:08b}" for b in bytes.fromhex(h)).ljust(size, "0")[:size] for h in reply
        )
        cells = "".join("h" if h == "1" else s for s, h in zip(sold, held, strict=True))
        return [cells[i * zone.columns : (i + 1) * zone.columns] for i in range(zone.rows)]

    @staticmethod
    def _answer(reply: list) -> OrderResult:
        order = Order.from_json(reply[1]) if len(reply) > 1 and reply[1] else None
        return OrderResult(reply[0], order)

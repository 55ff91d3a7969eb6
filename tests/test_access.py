"""Who may call what: every route of the app × {anonymous, buyer A, buyer B, operator}, against
one table of expected answers (the contract's "Who may call what"), on real Redis and MariaDB.

The table is checked against the app's routes both ways: a route without a row fails, and so
does a row without a route; a new route must say here who may call it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest

import models
from models.orders import OrderSnapshot, apply_order
from models.tickets import TicketRecord, persist_ticket
from plumbing import settings
from tests.support.factories import order_message
from tests.support.tokens import bearer, operator

CALLERS = ("anonymous", "buyer A", "buyer B", "operator")
SERVED = (200, 503)  # internal routes: answered (deep health is 503 while a dependency is down)
ALL_200 = (200, 200, 200, 200)

# (method, rule) → the statuses for anonymous, buyer A (the ticket's owner), buyer B, operator
TABLE: dict[tuple[str, str], tuple] = {
    ("POST", "/purchase/api/v1/tickets"): (401, 201, 201, 201),
    ("POST", "/purchase/api/v1/orders"): (401, 201, 201, 201),
    ("GET", "/purchase/api/v1/orders/<order_id>"): (401, 200, 404, 200),
    ("POST", "/purchase/api/v1/orders/<order_id>/cancel"): (401, 200, 404, 200),
    # signature only: a token is not a payment (401 BAD_SIGNATURE, see SIGNED)
    ("POST", "/purchase/api/v1/orders/<order_id>/confirm"): (401, 401, 401, 401),
    ("POST", "/purchase/api/v1/orders/<order_id>/refund"): (401, 403, 404, 200),
    ("GET", "/purchase/api/v1/events/<event_id>/availability"): ALL_200,
    ("GET", "/purchase/api/v1/events/<event_id>/zones/<positive:zone_id>/seats"): ALL_200,
    ("GET", "/purchase/health"): ALL_200,
    ("GET", "/purchase/health/deep"): (SERVED,) * 4,
    ("GET", "/purchase/metrics"): (SERVED,) * 4,
    ("GET", "/purchase/openapi.json"): ALL_200,
    ("GET", "/purchase/docs"): ALL_200,
    ("GET", "/purchase/docs/<path:filename>"): ALL_200,
    # development only (404 in production, tests/test_development.py); the test payment is
    # for buyer A's held order: its owner pays it, B cannot see it, and the operator's second
    # payment (another paymentId) finds it paid
    ("POST", "/purchase/api/v1/dev-login"): ALL_200,
    ("POST", "/purchase/api/v1/test-payments"): (401, 200, 404, 409),
    ("GET", "/shop/"): ALL_200,
    ("GET", "/shop/<path:filename>"): ALL_200,
    ("GET", "/query/api/v1/tickets"): (401, 403, 403, 200),
    ("GET", "/query/api/v1/tickets/<ticket_id>"): (401, 200, 404, 200),
    ("GET", "/query/api/v1/tickets/count/<event_id>"): (401, 403, 403, 200),
    ("GET", "/query/api/v1/tickets/revenue/<venue_id>/<event_id>"): (401, 403, 403, 200),
    ("GET", "/query/api/v1/orders/<order_id>"): (401, 200, 404, 200),
    ("GET", "/query/api/v1/orders"): (401, 403, 403, 200),
    ("GET", "/query/api/v1/me/orders"): (401, 200, 200, 200),
    ("GET", "/query/api/v1/venues"): ALL_200,
    ("GET", "/query/api/v1/venues/<venue_id>"): ALL_200,
    ("GET", "/query/api/v1/events"): ALL_200,
    ("GET", "/query/api/v1/events/<event_id>"): ALL_200,
    ("GET", "/query/health"): ALL_200,
    ("GET", "/query/health/deep"): (SERVED,) * 4,
    ("GET", "/query/metrics"): (SERVED,) * 4,
    ("GET", "/query/openapi.json"): ALL_200,
    ("GET", "/query/docs"): ALL_200,
    ("GET", "/query/docs/<path:filename>"): ALL_200,
    ("GET", "/events/health"): ALL_200,
    ("GET", "/events/health/deep"): (SERVED,) * 4,
    ("GET", "/events/metrics"): (SERVED,) * 4,
    ("GET", "/events/openapi.json"): ALL_200,
    ("GET", "/events/docs"): ALL_200,
    ("GET", "/events/docs/<path:filename>"): ALL_200,
}

INTERNAL = {rule for (_, rule), expected in TABLE.items() if expected[0] == SERVED}
# routes whose credential is the payment provider's signature: their 401 is BAD_SIGNATURE
SIGNED = {"/purchase/api/v1/orders/<order_id>/confirm"}


def _routes(app) -> set[tuple[str, str]]:
    return {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }


def test_every_route_has_a_row_and_every_row_a_route(app):
    routes = _routes(app)
    assert routes - TABLE.keys() == set(), "routes without a row in TABLE: say who may call them"
    assert TABLE.keys() - routes == set(), "rows without a route"


@pytest.fixture
def owned_ticket(clean_tickets) -> str:
    """A ticket of buyer A in MySQL (what the worker writes for A's sale)."""
    ticket = TicketRecord(
        ticket_id=str(uuid.uuid4()),
        venue_id="Venue1",
        event_id="Event1",
        zone_id=2,
        row="C",
        column=3,
        price=Decimal("10.00"),
        status="PAID",
        created_on=datetime.now(UTC),
        buyer="buyer-a",
    )
    with models.writer().begin() as conn:
        persist_ticket(conn, ticket)
    return ticket.ticket_id


@pytest.fixture
def owned_order(clean_tickets) -> str:
    """An order of buyer A in MySQL (what the worker writes for A's hold)."""
    order = order_message(buyer="buyer-a", seats=[("D", "4")])
    with models.writer().begin() as conn:
        apply_order(conn, OrderSnapshot.from_json(order))
    return order["orderId"]


@pytest.fixture
def redis_orders(loaded_seats) -> dict[str, str]:
    """Orders of buyer A in Redis (the purchase side's routes): one HELD, one PAID."""
    from models import seats
    from models.catalog import Catalog
    from tests.conftest import TEST_CATALOG

    zone = Catalog.from_dict(TEST_CATALOG).venues["Venue1"].zones[3]
    scripts = seats.orders_for(loaded_seats)
    # best available: seats that earlier tests' projected orders left taken are skipped
    held = scripts.hold("Event1", "Venue1", buyer="buyer-a", best=(zone, 1)).order
    paid = scripts.hold("Event1", "Venue1", buyer="buyer-a", best=(zone, 1)).order
    assert held is not None and paid is not None
    paying = scripts.confirm(
        "Event1", paid.order_id, payment_id="pay-access", amount=paid.total, currency="USD"
    )
    assert paying.outcome == "OK"
    return {"held": held.order_id, "paid": paid.order_id}


def _headers(caller: str) -> dict[str, str]:
    return {
        "anonymous": {},
        "buyer A": bearer("buyer-a"),
        "buyer B": bearer("buyer-b"),
        "operator": operator("ops"),
    }[caller]


def _path(rule: str, ticket_id: str, order_id: str, redis_orders: dict[str, str]) -> str:
    if rule.startswith("/purchase/api/v1/orders/"):  # the purchase side's: orders in Redis
        order_id = redis_orders["paid" if rule.endswith("/refund") else "held"]
    values = {
        "<order_id>": order_id,
        "<event_id>": "Event1",
        "<venue_id>": "Venue1",
        "<positive:zone_id>": "1",
        "<ticket_id>": ticket_id,
        "<path:filename>": "shop.js" if rule.startswith("/shop/") else "swagger-ui.css",
    }
    for name, value in values.items():
        rule = rule.replace(name, value)
    return rule


def _body(caller: str, rule: str, path: str, redis_orders: dict[str, str]) -> dict:
    """A seat of its own for each caller, so that each purchase can succeed; the order routes'
    bodies name the path's order; the development routes' bodies."""
    if rule.endswith("/dev-login"):
        return {"buyer": caller}
    if rule.endswith("/test-payments"):
        return {"orderId": redis_orders["held"]}
    column = str(CALLERS.index(caller) + 1)
    if rule == "/purchase/api/v1/orders":
        seat = {"zoneId": 2, "row": "A", "column": column}
        return {"venueId": "Venue1", "eventId": "Event1", "seats": [seat]}
    if rule.startswith("/purchase/api/v1/orders/"):
        order_id = path.split("/")[5]
        body = {"orderId": order_id, "paymentId": "pay-access"}
        return body if rule.endswith("/refund") else {**body, "amount": "95.00", "currency": "USD"}
    return {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": column}


@pytest.mark.parametrize(("method", "rule"), sorted(TABLE))
def test_who_may_call_what(
    app, loaded_seats, owned_ticket, owned_order, redis_orders, method, rule, monkeypatch
):
    if rule.endswith("/test-payments"):  # the test payment provider signs with the secret
        with_secret = dataclasses.replace(settings.get(), payment_webhook_secret="access-secret")
        monkeypatch.setattr(settings, "get", lambda: with_secret)
    anonymous = app.test_client()
    path = _path(rule, owned_ticket, owned_order, redis_orders)
    for caller, expected in zip(CALLERS, TABLE[(method, rule)], strict=True):
        send: Callable = anonymous.post if method == "POST" else anonymous.get
        kwargs = {"json": _body(caller, rule, path, redis_orders)} if method == "POST" else {}
        response = send(path, headers=_headers(caller), **kwargs)
        response.close()  # static files are streamed
        allowed = expected if isinstance(expected, tuple) else (expected,)
        assert response.status_code in allowed, (caller, response.get_data(as_text=True)[:300])
        unauthenticated = "BAD_SIGNATURE" if rule in SIGNED else "UNAUTHENTICATED"
        if response.status_code in (401, 403):
            body = response.get_json(force=True)
            assert body["code"] == (unauthenticated if response.status_code == 401 else "FORBIDDEN")
        if response.status_code == 401 and rule not in SIGNED:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("rule", sorted(INTERNAL))
def test_internal_routes_are_not_served_through_a_proxy(app, rule):
    """Metrics and deep health answer 404 to a request that came through the load balancer (it
    adds X-Forwarded-For), even with an operator's token: the back office is not public."""
    client = app.test_client()
    response = client.get(rule, headers={"X-Forwarded-For": "203.0.113.9", **operator()})
    assert response.status_code == 404
    assert response.get_json(force=True)["code"] == "NOT_FOUND"


def test_a_view_without_declared_access_stops_the_app(monkeypatch):
    """Nothing is open by omission: an undeclared view makes create_app fail."""
    from web import create_app, purchase

    monkeypatch.setattr(purchase.health, "access", None)
    with pytest.raises(RuntimeError, match="without a declared access"):
        create_app("purchase")

"""The query side of orders, read from MySQL as the projection wrote it: one order (its buyer's,
any for an operator), the operators' list by event and status, and a buyer's own orders."""

from __future__ import annotations

from typing import Any

import pytest

import models
from models.orders import OrderSnapshot, apply_order
from tests.support.factories import next_version, order_message
from tests.support.tokens import bearer, operator


def apply(order: dict[str, Any]) -> None:
    with models.writer().begin() as conn:
        apply_order(conn, OrderSnapshot.from_json(order))


@pytest.fixture
def orders(clean_tickets) -> dict[str, dict[str, Any]]:
    """buyer A: a PAID order of Event1 and a HELD one of Event3; buyer B: a CANCELLED one."""
    a_paid = order_message(buyer="buyer-a", seats=[("A", "1"), ("A", "2")])
    apply(a_paid)
    a_paid = next_version(a_paid, "PAID", paymentId="pay-a")
    apply(a_paid)
    a_held = order_message(
        buyer="buyer-a", seats=[("B", "1")], event_id="Event3", venue_id="Venue2"
    )
    a_held["createdOn"] = "2026-11-26T12:05:00.000Z"
    apply(a_held)
    b_cancelled = order_message(buyer="buyer-b", seats=[("C", "1")])
    apply(b_cancelled)
    b_cancelled = next_version(b_cancelled, "CANCELLED")
    apply(b_cancelled)
    return {"a_paid": a_paid, "a_held": a_held, "b_cancelled": b_cancelled}


def test_an_order_as_projected_to_its_buyer_and_operators_only(app, orders):
    client = app.test_client()
    path = f"/query/api/v1/orders/{orders['a_paid']['orderId']}"
    mine = client.get(path, headers=bearer("buyer-a"))
    assert mine.status_code == 200
    assert mine.get_json() == orders["a_paid"]
    assert client.get(path, headers=operator()).get_json() == orders["a_paid"]
    other = client.get(path, headers=bearer("buyer-b"))
    assert other.status_code == 404
    assert other.get_json()["code"] == "ORDER_NOT_FOUND"


@pytest.mark.parametrize("order_id", ["no-such-order", "a b", "x" * 65])
def test_an_unknown_or_malformed_order_id_is_not_found(app, orders, order_id):
    response = app.test_client().get(f"/query/api/v1/orders/{order_id}", headers=operator())
    assert response.status_code == 404
    assert response.get_json()["code"] == "ORDER_NOT_FOUND"


def test_operators_list_orders_by_event_and_status(app, orders):
    client = app.test_client()

    def ids(query: str) -> list[str]:
        response = client.get(f"/query/api/v1/orders{query}", headers=operator())
        assert response.status_code == 200, response.get_data(as_text=True)
        return [o["orderId"] for o in response.get_json()]

    assert ids("?eventId=Event1&status=PAID") == [orders["a_paid"]["orderId"]]
    assert ids("?eventId=Event1&status=CANCELLED") == [orders["b_cancelled"]["orderId"]]
    assert ids("?eventId=Event3") == [orders["a_held"]["orderId"]]
    assert ids("?status=HELD") == [orders["a_held"]["orderId"]]
    assert set(ids("")) == {o["orderId"] for o in orders.values()}
    assert ids("?status=REFUNDED") == []


@pytest.mark.parametrize(
    "query", ["?status=SOLD", "?eventId=a%20b", "?limit=0", "?limit=1001", "?other=1"]
)
def test_bad_list_parameters_are_a_400(app, orders, query):
    for path in ("/query/api/v1/orders", "/query/api/v1/me/orders"):
        response = app.test_client().get(f"{path}{query}", headers=operator())
        assert response.status_code == 400
        assert response.get_json()["code"] == "VALIDATION_FAILED"


def test_a_buyer_sees_their_own_orders_newest_first(app, orders):
    client = app.test_client()
    mine = client.get("/query/api/v1/me/orders", headers=bearer("buyer-a")).get_json()
    assert [o["orderId"] for o in mine] == [
        orders["a_held"]["orderId"],
        orders["a_paid"]["orderId"],
    ]
    theirs = client.get("/query/api/v1/me/orders", headers=bearer("buyer-b")).get_json()
    assert [o["orderId"] for o in theirs] == [orders["b_cancelled"]["orderId"]]
    # an operator's own orders: none, not everyone's
    assert client.get("/query/api/v1/me/orders", headers=operator()).get_json() == []
    paid = client.get("/query/api/v1/me/orders?status=PAID", headers=bearer("buyer-a"))
    assert [o["orderId"] for o in paid.get_json()] == [orders["a_paid"]["orderId"]]


def test_the_tickets_of_a_paid_order_are_the_buyers_tickets(app, orders):
    client = app.test_client()
    seat = orders["a_paid"]["seats"][0]
    response = client.get(f"/query/api/v1/tickets/{seat['ticketId']}", headers=bearer("buyer-a"))
    assert response.status_code == 200
    assert response.get_json()["status"] == "PAID"
    count = client.get("/query/api/v1/tickets/count/Event1", headers=operator()).get_json()
    assert count["count"] == 2
    held_seat = orders["a_held"]["seats"][0]["ticketId"]
    held = client.get(f"/query/api/v1/tickets/{held_seat}", headers=bearer("buyer-a"))
    assert held.status_code == 404


def test_order_ids_compare_exactly(app, clean_tickets):
    order = order_message(order_id="Order-Exact.1", seats=[("D", "9")])
    apply(order)
    client = app.test_client()
    assert client.get("/query/api/v1/orders/Order-Exact.1", headers=operator()).status_code == 200
    for spelling in ("order-exact.1", "ORDER-EXACT.1", "Order-Exact.1%20"):
        response = client.get(f"/query/api/v1/orders/{spelling}", headers=operator())
        assert response.status_code == 404, spelling

"""The purchase API's development helpers for the buyer page and curl users, on real Redis: the
login (`POST /purchase/api/v1/dev-login`), the test payment provider (`POST
/purchase/api/v1/test-payments`, which signs and sends the confirm webhook), `flask --app web
pay`; all of them 404 (or refused) outside APP_ENV=development. And the page's own files."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess

import pytest
import requests

from models import seats
from plumbing import settings
from tests.support.processes import BIN, ROOT, gunicorn, wait_until
from tests.support.tokens import bearer, operator
from web.identity import verifier

# Their holds reuse seats from test to test: a session relay (started by an earlier test) could
# still be carrying the last test's order events to the worker after clean_tickets emptied
# MySQL, and the projection would then meet two orders on one seat.
pytestmark = pytest.mark.usefixtures("no_session_relay")

P = "/purchase/api/v1"
A, B, OPS = bearer("buyer-a"), bearer("buyer-b"), operator("ops")
ORDER = {
    "venueId": "Venue1",
    "eventId": "Event1",
    "seats": [{"zoneId": 3, "row": "C", "column": "4"}, {"zoneId": 3, "row": "C", "column": "5"}],
}


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch) -> None:
    """The payment provider's secret (the suite's settings have none)."""
    with_settings(monkeypatch, payment_webhook_secret=settings.DEVELOPMENT_PAYMENT_WEBHOOK_SECRET)


@pytest.fixture
def api(app, clean_tickets, loaded_seats):
    """A test client without a token (each call says who it is)."""
    return app.test_client()


def with_settings(monkeypatch, **changes) -> None:
    """This process's settings with `changes` (every module reads them through settings.get)."""
    changed = dataclasses.replace(settings.get(), **changes)
    monkeypatch.setattr(settings, "get", lambda: changed)


def held_order(api, headers=A) -> dict:
    response = api.post(f"{P}/orders", json=ORDER, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.get_json(force=True)["code"] == code


# --- the development login


def test_dev_login_gives_a_token_the_services_take_as_that_buyer(api):
    response = api.post(f"{P}/dev-login", json={"buyer": "Zoë ticket-fan"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["buyer"] == "Zoë ticket-fan" and body["expiresIn"] > 0
    assert verifier().verify(body["token"]).subject == "Zoë ticket-fan"
    assert not verifier().verify(body["token"]).is_operator
    mine = api.get("/query/api/v1/me/orders", headers={"Authorization": f"Bearer {body['token']}"})
    assert mine.status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"buyer": ""}, {"buyer": "x" * 256}, {"buyer": 7}, {"buyer": "a", "roles": ["operator"]}],
)
def test_dev_login_refuses_bad_bodies(api, body):
    assert_problem(api.post(f"{P}/dev-login", json=body), 400, "VALIDATION_FAILED")


def test_dev_login_is_not_found_where_the_identity_provider_issues_tokens(api, monkeypatch):
    with_settings(monkeypatch, jwt_secret="", jwt_jwks_url="https://idp.example/jwks.json")
    assert_problem(api.post(f"{P}/dev-login", json={"buyer": "a"}), 404, "NOT_FOUND")


def test_development_routes_are_not_found_in_production_even_with_a_token(api, monkeypatch):
    order = held_order(api)
    with_settings(monkeypatch, app_env="production")
    assert_problem(api.post(f"{P}/dev-login", json={"buyer": "a"}), 404, "NOT_FOUND")
    for headers in ({}, A, OPS):  # 404 before any token is read: not 401
        paid = api.post(f"{P}/test-payments", json={"orderId": order["orderId"]}, headers=headers)
        assert_problem(paid, 404, "NOT_FOUND")
    monkeypatch.undo()
    assert api.get(f"{P}/orders/{order['orderId']}", headers=A).get_json()["status"] == "HELD"


# --- the test payment provider


def test_test_payment_pays_the_callers_order_through_the_signed_confirm(api, loaded_seats):
    order = held_order(api)
    paid = api.post(f"{P}/test-payments", json={"orderId": order["orderId"]}, headers=A)
    assert paid.status_code == 200, paid.get_data(as_text=True)
    body = paid.get_json()
    assert (body["orderId"], body["status"]) == (order["orderId"], "PAID")
    assert body["version"] == order["version"] + 1
    live = api.get(f"{P}/orders/{order['orderId']}", headers=A).get_json()
    assert live["status"] == "PAID" and live["total"] == order["total"]
    stored = seats.orders_for(loaded_seats).get("Event1", order["orderId"]).order
    assert stored is not None and re.fullmatch(r"test-[0-9a-f-]{36}", stored.payment_id or "")
    # a second payment is another paymentId: the confirm route's answer, passed on
    again = api.post(f"{P}/test-payments", json={"orderId": order["orderId"]}, headers=A)
    assert_problem(again, 409, "ORDER_NOT_PAYABLE")


def test_test_payment_of_another_buyers_order_is_not_found_and_pays_nothing(api):
    order = held_order(api)
    other = api.post(f"{P}/test-payments", json={"orderId": order["orderId"]}, headers=B)
    assert_problem(other, 404, "ORDER_NOT_FOUND")
    assert api.get(f"{P}/orders/{order['orderId']}", headers=A).get_json()["status"] == "HELD"


def test_test_payment_without_a_webhook_secret_is_not_found(api, monkeypatch):
    order = held_order(api)
    with_settings(monkeypatch, payment_webhook_secret="")
    paid = api.post(f"{P}/test-payments", json={"orderId": order["orderId"]}, headers=A)
    assert_problem(paid, 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"orderId": "a/b"}, 400, "VALIDATION_FAILED"),
        ({"orderId": ""}, 400, "VALIDATION_FAILED"),
        ({}, 400, "VALIDATION_FAILED"),
        ({"orderId": "5b15a8a4-1f84-44dd-8f3d-9ae9de6e6d10"}, 404, "ORDER_NOT_FOUND"),
    ],
)
def test_test_payment_refuses_bad_and_unknown_orders(api, body, status, code):
    assert_problem(api.post(f"{P}/test-payments", json=body, headers=A), status, code)


# --- flask --app web pay


# the server's secret; the command signs with PAYMENT_WEBHOOK_SECRET too (unset: this value)
SERVED = {"PAYMENT_WEBHOOK_SECRET": settings.DEVELOPMENT_PAYMENT_WEBHOOK_SECRET}


def _pay(base: str, order_id: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "flask"), "--app", "web", "pay", order_id, "--url", base, *extra],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PAYMENT_WEBHOOK_SECRET"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_pay_command_signs_and_posts_the_confirm_over_http(database, clean_tickets, loaded_seats):
    with gunicorn({**SERVED, "GUNICORN_WORKERS": "1"}) as base:
        wait_until(lambda: requests.get(f"{base}/purchase/health", timeout=5).ok, 60, "gunicorn")
        order = requests.post(f"{base}{P}/orders", json=ORDER, headers=A, timeout=10).json()

        short = _pay(base, order["orderId"], "--amount", "1.00")  # not the order's total
        assert short.returncode == 1 and "AMOUNT_MISMATCH" in short.stdout, short.stdout
        done = _pay(base, order["orderId"])
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("HTTP 200") and '"status": "PAID"' in done.stdout
        live = requests.get(f"{base}{P}/orders/{order['orderId']}", headers=A, timeout=10)
        assert live.json()["status"] == "PAID"
        again = _pay(base, order["orderId"])
        assert again.returncode == 1 and "ORDER_NOT_PAYABLE" in again.stdout


def test_pay_command_is_refused_outside_development(app, monkeypatch):
    with_settings(monkeypatch, app_env="production")
    result = app.test_cli_runner().invoke(args=["pay", "5b15a8a4-1f84-44dd-8f3d-9ae9de6e6d10"])
    assert result.exit_code != 0
    assert "only with APP_ENV=development" in result.output


# --- the page's files


def test_the_page_and_its_files_are_served_from_this_origin_only(app):
    client = app.test_client()
    page = client.get("/shop/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    html = page.get_data(as_text=True)
    page.close()
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts and all('src="' in attributes for attributes in scripts)  # nothing inline
    for asset in re.findall(r'(?:href|src)="([^"]+)"', html):
        assert not asset.startswith(("http:", "https:", "//")), asset
        response = client.get(f"/shop/{asset}")
        assert response.status_code == 200, asset
        response.close()
    assert_problem(client.get("/shop/nothing-here.js"), 404, "NOT_FOUND")
    assert client.get("/shop").status_code == 308  # to /shop/

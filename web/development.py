"""Development helpers of the purchase API, for the buyer page (`/shop/`) and curl users:

POST /purchase/api/v1/dev-login       a development buyer token (the page's login)
POST /purchase/api/v1/test-payments   the local test payment provider: pays one's own order

Both are served only with APP_ENV=development (`web.access.development_only`: 404 NOT_FOUND
elsewhere, to everyone), and each only when its development setting is there: the login when
tokens are HS256 with JWT_SECRET (on AWS the identity provider issues tokens, RS256 through
JWT_JWKS_URL), the payments when PAYMENT_WEBHOOK_SECRET is set.

The test payment provider does what a real one does after taking the money: it signs the
confirm webhook's body with PAYMENT_WEBHOOK_SECRET (`web.payment_signature`) and sends it to
the confirm route. It sends it through this Flask app in-process (the full request path:
access rules, body rules, signature check), not over HTTP to itself, so it needs no base URL
and holds no second gunicorn thread. Routes of the purchase blueprint (`web.purchase.bp`);
`create_app` imports this module first.
"""

from __future__ import annotations

import uuid

from flask import Response, current_app, jsonify, request
from marshmallow import RAISE, Schema, fields, validate
from werkzeug.test import TestResponse

from cli.tokens import DEFAULT_TTL_SECONDS, development_token
from models.catalog import ID_PATTERN, ID_RULE
from plumbing import logs, settings
from web.access import Access, allow, development_only
from web.bodies import JSON, json_object
from web.identity import MAX_SUBJECT
from web.openapi import documented
from web.payment_signature import HEADER, confirmation
from web.problems import Problem
from web.purchase import bp
from web.sales import validated
from web.schemas import OrderSchema

API = "/purchase/api/v1"


class DevLoginSchema(Schema):
    """`POST /purchase/api/v1/dev-login` body: the buyer to sign in as."""

    class Meta:
        unknown = RAISE

    buyer = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_SUBJECT),
        metadata={"example": "alice"},
    )


class DevTokenSchema(Schema):
    """A development token: `Authorization: Bearer <token>` acts as `buyer`."""

    buyer = fields.String(required=True)
    token = fields.String(required=True)
    expiresIn = fields.Integer(required=True, metadata={"description": "Seconds it lives."})


class TestPaymentSchema(Schema):
    """`POST /purchase/api/v1/test-payments` body: the caller's order to pay."""

    class Meta:
        unknown = RAISE

    orderId = fields.String(
        required=True,
        validate=[validate.Length(min=1, max=64), ID_RULE],
        metadata={"pattern": ID_PATTERN, "example": "5b15a8a4-1f84-44dd-8f3d-9ae9de6e6d1b"},
    )


_login_schema = DevLoginSchema()
_payment_schema = TestPaymentSchema()


@allow(Access.PUBLIC)
@development_only
@bp.post("/api/v1/dev-login")
@documented({200: DevTokenSchema}, body=DevLoginSchema, problems=("VALIDATION_FAILED", "NOT_FOUND"))
def dev_login() -> Response:
    """A development buyer token for the named buyer (the buyer page's login)."""
    s = settings.get()
    # elsewhere the identity provider issues the tokens (development_only says 404 first)
    if s.app_env != "development" or not s.jwt_secret or s.jwt_jwks_url:
        raise Problem(404, "NOT_FOUND", "Not found.")
    buyer = validated(_login_schema, json_object(request.get_data()))["buyer"]
    token = development_token(buyer, (), DEFAULT_TTL_SECONDS)
    return jsonify({"buyer": buyer, "token": token, "expiresIn": DEFAULT_TTL_SECONDS})


@allow(Access.BUYER)
@development_only
@bp.post("/api/v1/test-payments")
@documented(
    {200: OrderSchema},
    body=TestPaymentSchema,
    problems=(
        "VALIDATION_FAILED",
        "NOT_FOUND",
        "ORDER_NOT_FOUND",
        "ORDER_NOT_PAYABLE",
        "HOLD_EXPIRED",
        "BUYER_LIMIT_REACHED",
        "SERVICE_UNAVAILABLE",
        "OUTCOME_UNKNOWN",
    ),
)
def test_payment() -> Response:
    """Pay the caller's order with the local test payment provider; the confirm's answer.

    The order's amount and currency, a new `test-…` paymentId, the confirm webhook signed with
    PAYMENT_WEBHOOK_SECRET and sent to the confirm route."""
    secret = settings.get().payment_webhook_secret
    if not secret:  # no webhook can be signed, nor checked
        raise Problem(404, "NOT_FOUND", "Not found.")
    order_id = validated(_payment_schema, json_object(request.get_data()))["orderId"]
    # The order as its owner sees it: another buyer's answer is the GET route's 404.
    found = _in_process("GET", f"{API}/orders/{order_id}", request.headers["Authorization"])
    if found.status_code != 200:
        return _relayed(found)
    order = found.get_json()
    body, signature = confirmation(
        order_id, f"test-{uuid.uuid4()}", order["total"], order["currency"], secret
    )
    confirmed = _in_process(
        "POST",
        f"{API}/orders/{order_id}/confirm",
        None,
        body=body,
        headers={HEADER: signature, "Content-Type": JSON},
    )
    return _relayed(confirmed)


def _in_process(
    method: str,
    path: str,
    authorization: str | None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> TestResponse:
    """A request through this app, in a fresh application context (its own `g`), with this
    request's id for the logs."""
    sent = dict(headers or {})
    if authorization is not None:
        sent["Authorization"] = authorization
    request_id = logs.request_id.get()
    if request_id:
        sent["X-Request-ID"] = request_id
    with current_app.app_context():
        return current_app.test_client().open(path, method=method, data=body, headers=sent)


def _relayed(answer: TestResponse) -> Response:
    """The in-process answer as this request's answer (status, body, type, Retry-After)."""
    response = Response(answer.get_data(), status=answer.status_code)
    response.headers["Content-Type"] = answer.headers.get("Content-Type", JSON)
    if "Retry-After" in answer.headers:
        response.headers["Retry-After"] = answer.headers["Retry-After"]
    return response

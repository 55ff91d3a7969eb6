"""The payment side of the box office's order routes: the provider's signed confirmation, and
refunds (an operator's, or the provider's signed).

POST /purchase/api/v1/orders/{orderId}/confirm      the payment provider's signed confirmation
POST /purchase/api/v1/orders/{orderId}/refund       an operator, or the provider's signed refund

Both are PUBLIC at the token layer (`web.access`): the provider has no token, its
`Payment-Signature` (`web.payment_signature`) is its credential, checked here before anything
else; every signature failure is 401 BAD_SIGNATURE. A token alone is never a payment.
"""

from __future__ import annotations

from flask import Response, request

from models import seats
from plumbing import logs, settings
from web import payment_signature, sales
from web.access import Access, allow
from web.bodies import has_body, json_object
from web.identity import caller, unauthenticated
from web.openapi import documented
from web.orders import (
    ORDER_PROBLEMS,
    answer,
    change_order,
    event_of_order,
    live_order,
    not_found,
)
from web.problems import Problem
from web.purchase import bp
from web.schemas import ConfirmRequestSchema, OrderSchema, RefundRequestSchema

_confirm_schema = ConfirmRequestSchema()
_refund_schema = RefundRequestSchema()
_SIGNED = {
    payment_signature.HEADER: {
        "description": "t=<unix seconds>,v1=<hex HMAC-SHA256(PAYMENT_WEBHOOK_SECRET, "
        "\"<t>.<raw body>\")>; t within 300 s of now; the body's orderId must be the path's.",
        "schema": {"type": "string"},
    }
}


@allow(Access.PUBLIC)  # the provider's signature, checked in the view, is the credential
@bp.post("/api/v1/orders/<order_id>/confirm")
@documented(
    {200: OrderSchema},
    body=ConfirmRequestSchema,
    problems=(
        "BAD_SIGNATURE",
        "VALIDATION_FAILED",
        "AMOUNT_MISMATCH",
        "ORDER_NOT_PAYABLE",
        "HOLD_EXPIRED",
        "BUYER_LIMIT_REACHED",
        *ORDER_PROBLEMS,
    ),
    headers=_SIGNED,
)
def confirm_order(order_id: str) -> Response:
    """The payment provider's signed confirmation: the order becomes PAID.

    A token alone is not a payment; the state × action table of docs/api.md applies."""
    raw = request.get_data()
    _verify_signature(raw, order_id)
    event_id = event_of_order(order_id)
    req = sales.validated(_confirm_schema, json_object(raw))
    s = settings.get()
    result = change_order(
        "confirm",
        order_id,
        lambda scripts: scripts.confirm(
            event_id,
            order_id,
            payment_id=req["paymentId"],
            amount=req["amount"],
            currency=req["currency"],
            limits=seats.Limits(s.max_seats_per_buyer),
            request_id=logs.request_id.get() or "",
        ),
    )
    if result.outcome == "AMOUNT_MISMATCH":
        raise Problem(
            422, "AMOUNT_MISMATCH", "The amount or currency differ from the order's total."
        )
    return answer(result, order_id)


@allow(Access.PUBLIC)  # a token or the provider's signature, checked in the view
@bp.post("/api/v1/orders/<order_id>/refund")
@documented(
    {200: OrderSchema},
    body=RefundRequestSchema,
    problems=(
        "UNAUTHENTICATED",
        "BAD_SIGNATURE",
        "FORBIDDEN",
        "VALIDATION_FAILED",
        "ORDER_NOT_PAID",
        *ORDER_PROBLEMS,
    ),
    headers=_SIGNED,
)
def refund_order(order_id: str) -> Response:
    """Refund a paid order (an operator, or the provider signed): its seats are free at once.

    An operator refunds whatever payment paid it; the provider's signed paymentId must be the
    one that paid, else 409 ORDER_NOT_PAID."""
    raw = request.get_data()
    payment_id: str | None = None
    if payment_signature.HEADER in request.headers:
        _verify_signature(raw, order_id)
        event_id = event_of_order(order_id)
        payment_id = sales.validated(_refund_schema, json_object(raw))["paymentId"]
    else:
        identity = caller()
        if identity is None:
            raise unauthenticated("This needs an operator's token or the provider's signature.")
        event_id = event_of_order(order_id)
        if not identity.is_operator:
            _forbid_owner(event_id, order_id, identity.subject)
        if has_body():  # optional for an operator; when sent, it names this order
            body = sales.validated(_refund_schema, json_object(raw))
            if body["orderId"] != order_id:
                raise Problem(
                    400,
                    "VALIDATION_FAILED",
                    "The body names another order.",
                    errors={"orderId": ["Must be the path's order id."]},
                )
    result = change_order(
        "refund",
        order_id,
        lambda scripts: scripts.refund(
            event_id, order_id, payment_id=payment_id, request_id=logs.request_id.get() or ""
        ),
    )
    return answer(result, order_id)


def _forbid_owner(event_id: str, order_id: str, subject: str) -> None:
    """A buyer may not refund: 403 FORBIDDEN to the order's owner, 404 to anyone else."""
    found = live_order(event_id, order_id)
    if found.order is None or found.order.buyer != subject:
        raise not_found(order_id)
    raise Problem(403, "FORBIDDEN", "Refunds are made by operators or the payment provider.")


def _verify_signature(raw: bytes, order_id: str) -> None:
    """Return if the request is the provider's for this order, else 401 BAD_SIGNATURE."""
    payment_signature.verify(
        request.headers.get(payment_signature.HEADER),
        raw,
        order_id,
        settings.get().payment_webhook_secret,
    )

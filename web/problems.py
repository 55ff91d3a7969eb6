"""RFC 9457 problem details: one helper renders every error the HTTP API can answer."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, g, has_request_context
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

TITLES = {
    "MALFORMED_JSON": "Body is not a JSON object",
    "VALIDATION_FAILED": "Request failed validation",
    "UNKNOWN_VENUE": "Unknown venue",
    "UNKNOWN_EVENT": "Unknown event",
    "UNKNOWN_ZONE": "Unknown zone",
    "EVENT_NOT_AT_VENUE": "Event is held at another venue",
    "SEAT_OUT_OF_RANGE": "Seat is outside the zone",
    "SEAT_TAKEN": "Seat already sold",
    "IDEMPOTENCY_KEY_REUSED": "Idempotency key used with another request",
    "ROW_FULL": "Row sold out",
    "ZONE_FULL": "Zone sold out",
    "EVENT_SOLD_OUT": "Event sold out",
    "TICKET_NOT_FOUND": "Ticket not found",
    "ORDER_NOT_FOUND": "Order not found",
    "SERVICE_UNAVAILABLE": "Service temporarily unavailable",
    "OUTCOME_UNKNOWN": "Outcome unknown: the sale may stand",
    "NOT_FOUND": "Not found",
    "METHOD_NOT_ALLOWED": "Method not allowed",
    "PAYLOAD_TOO_LARGE": "Request body too large",
    "UNSUPPORTED_MEDIA_TYPE": "Unsupported media type",
    "URI_TOO_LONG": "Request line too long",
    "HEADERS_TOO_LARGE": "Request header fields too large",
    "EXPECTATION_FAILED": "Expectation failed",
    "NOT_IMPLEMENTED": "Not implemented",
    "BAD_REQUEST": "Bad request",
    "UNAUTHENTICATED": "Authentication required",
    "BAD_SIGNATURE": "Bad webhook signature",
    "FORBIDDEN": "Not allowed",
    "BUYER_LIMIT_REACHED": "Buyer's seat limit reached",
    "RATE_LIMITED": "Too many attempts",
    "INTERNAL_ERROR": "Internal error",
    "ORDER_TOO_LARGE": "Too many seats for one order",
    "NOT_ENOUGH_ADJACENT_SEATS": "Not enough adjacent seats",
    "AMOUNT_MISMATCH": "Amount or currency differ from the order's",
    "HOLD_EXPIRED": "Hold expired and its seats are gone",
    "ORDER_PAID": "Order is paid",
    "ORDER_NOT_PAYABLE": "Order cannot be paid",
    "ORDER_NOT_PAID": "Order is not paid",
    "ORDER_CLOSED": "Order is closed",
    "SALE_NOT_OPEN": "Sales have not opened",
    "SALE_CLOSED": "Sales have closed",
}

# The status each code is answered with (the OpenAPI spec groups codes by it).
STATUSES = {
    "MALFORMED_JSON": 400,
    "VALIDATION_FAILED": 400,
    "BAD_REQUEST": 400,
    "UNKNOWN_VENUE": 404,
    "UNKNOWN_EVENT": 404,
    "UNKNOWN_ZONE": 404,
    "TICKET_NOT_FOUND": 404,
    "ORDER_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "SEAT_TAKEN": 409,
    "ROW_FULL": 409,
    "ZONE_FULL": 409,
    "EVENT_SOLD_OUT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "EXPECTATION_FAILED": 417,
    "URI_TOO_LONG": 414,
    "HEADERS_TOO_LARGE": 431,
    "NOT_IMPLEMENTED": 501,
    "EVENT_NOT_AT_VENUE": 422,
    "SEAT_OUT_OF_RANGE": 422,
    "IDEMPOTENCY_KEY_REUSED": 422,
    "UNAUTHENTICATED": 401,
    "BAD_SIGNATURE": 401,
    "FORBIDDEN": 403,
    "BUYER_LIMIT_REACHED": 409,
    "RATE_LIMITED": 429,
    "ORDER_TOO_LARGE": 422,
    "AMOUNT_MISMATCH": 422,
    "NOT_ENOUGH_ADJACENT_SEATS": 409,
    "HOLD_EXPIRED": 409,
    "ORDER_PAID": 409,
    "ORDER_NOT_PAYABLE": 409,
    "ORDER_NOT_PAID": 409,
    "ORDER_CLOSED": 409,
    "SALE_NOT_OPEN": 409,
    "SALE_CLOSED": 409,
    "INTERNAL_ERROR": 500,
    "SERVICE_UNAVAILABLE": 503,
    "OUTCOME_UNKNOWN": 503,
}

_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


class Problem(Exception):
    """An error answer: raise it anywhere in a request, the handler renders it."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        members: dict[str, Any] | None = None,
    ) -> None:
        """`members`: extension members of the document (RFC 9457 §3.2), e.g. SEAT_TAKEN's
        `seats`."""
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}
        self.members = members or {}


def problem_document(problem: Problem) -> dict[str, Any]:
    """The RFC 9457 body of a Problem."""
    body: dict[str, Any] = {
        "type": f"urn:problem-type:ticketing:{problem.code.lower().replace('_', '-')}",
        "title": TITLES.get(problem.code, problem.code),
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    body.update(problem.members)
    return body


def problem_response(problem: Problem) -> Response:
    """The problem+json response of a Problem."""
    if has_request_context():
        g.problem_code = problem.code  # for the purchase metrics
    body = json.dumps(problem_document(problem))
    response = Response(body, status=problem.status, mimetype=PROBLEM_JSON)
    response.headers.update(problem.headers)
    return response


# What gunicorn answers by itself, before any app code runs (see gunicorn.conf.py).
_SERVER_CODES = {
    400: "BAD_REQUEST",
    414: "URI_TOO_LONG",
    417: "EXPECTATION_FAILED",
    431: "HEADERS_TOO_LARGE",
    501: "NOT_IMPLEMENTED",
}


def server_problem(status: int, detail: str) -> bytes:
    """The problem+json body of an error the HTTP server answers itself (request line or
    headers over its limits, a request it cannot parse)."""
    code = _SERVER_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
    problem = Problem(status, code, detail[:200] or TITLES[code])
    return json.dumps(problem_document(problem)).encode()


def unavailable(detail: str, retry_after: int) -> Problem:
    """503 SERVICE_UNAVAILABLE with Retry-After: nothing was changed."""
    return Problem(503, "SERVICE_UNAVAILABLE", detail, headers={"Retry-After": str(retry_after)})


def outcome_unknown(detail: str, retry_after: int) -> Problem:
    """503 OUTCOME_UNKNOWN with Retry-After: the change may stand; the same Idempotency-Key
    tells."""
    return Problem(503, "OUTCOME_UNKNOWN", detail, headers={"Retry-After": str(retry_after)})


def register_error_handlers(app: Flask) -> None:
    """Render Problems, HTTP errors and anything unexpected as problem+json."""

    @app.errorhandler(Problem)
    def _problem(problem: Problem) -> Response:
        return problem_response(problem)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
        headers = dict(exc.get_headers()) if status == 405 else {}
        headers.pop("Content-Type", None)
        return problem_response(Problem(status, code, exc.description or code, headers=headers))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem_response(Problem(500, "INTERNAL_ERROR", "unexpected error; it was logged"))

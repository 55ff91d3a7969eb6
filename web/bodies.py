"""Request bodies: `application/json` only, at most 16 KiB (chunked or not), one JSON object
whose names are unique.

Only `application/json` is read, so a cross-site HTML form (which can post `text/plain`,
`application/x-www-form-urlencoded` or `multipart/form-data` without a CORS preflight) cannot
buy anything. A `charset` parameter may only say UTF-8, the one encoding JSON is exchanged in
(RFC 8259): a body declared in another encoding would be misread, so it is refused rather than
guessed at. `+json` types (`application/merge-patch+json`, …) name other semantics than a
plain document and are refused too.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, request

from web.problems import Problem

MAX_BODY_BYTES = 16 * 1024
JSON = "application/json"


def register_body_rules(app: Flask) -> None:
    """Check every request that carries a body before its view runs: 415, then 413."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.before_request(_check_body)


# Methods whose body means something; a body on any other (GET, DELETE, …) is never read.
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def has_body() -> bool:
    """Whether the request carries a body: a Content-Length above 0, or a chunked one."""
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def _check_body() -> None:
    if request.routing_exception is not None or request.method not in BODY_METHODS:
        return  # 404 and 405 answer first
    if not has_body():
        return  # a POST without a body (a cancel) needs no Content-Type
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if request.mimetype != JSON or charset != "utf-8":
        raise Problem(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "The body must be application/json (UTF-8).",
            headers={"Accept": JSON},  # RFC 9110: which media types would have been accepted
        )
    data = request.get_data()  # cached for the view; over the limit with a Content-Length: 413
    # A chunked body has no length to check up front, and werkzeug stops reading it at the
    # limit without complaint (the view would see a truncated document): one more byte of the
    # underlying stream tells whether the body went on.
    if (
        request.content_length is None
        and len(data) >= MAX_BODY_BYTES
        and request.environ["wsgi.input"].read(1)
    ):
        raise Problem(413, "PAYLOAD_TOO_LARGE", f"The body is over {MAX_BODY_BYTES} bytes.")


class _DuplicateName(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose names are unique: RFC 8259 leaves duplicates' meaning open, and a
    proxy that reads the first while Python keeps the last would see another request."""
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise _DuplicateName(name)
        obj[name] = value
    return obj


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def json_object(data: bytes) -> dict[str, Any]:
    """The body as a JSON object: 400 MALFORMED_JSON if it is none (not UTF-8, not JSON, not
    an object, nested too deep), 400 VALIDATION_FAILED naming a name given twice."""
    try:
        body = json.loads(data.decode(), object_pairs_hook=_unique, parse_constant=_not_json)
    except _DuplicateName as exc:
        raise Problem(
            400,
            "VALIDATION_FAILED",
            f"{exc.name!r} is given more than once.",
            errors={exc.name: ["Given more than once."]},
        ) from None
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        body = None
    if not isinstance(body, dict):
        raise Problem(400, "MALFORMED_JSON", "The body must be a JSON object.")
    return body

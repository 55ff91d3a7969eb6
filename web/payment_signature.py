"""The payment provider's webhook signature (confirm, refund): the `Payment-Signature` header.

    Payment-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<raw body>")>

The key is PAYMENT_WEBHOOK_SECRET as UTF-8 bytes; the message is the header's `t` as sent, a
dot, then the body's bytes exactly as received. Exactly one `v1`; `t` within 300 s of now, past
or future; the signed body's `"orderId"` must be the path's, so a signed call cannot be replayed
onto another order. Anything else is 401 BAD_SIGNATURE, never a 5xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

from web.bodies import json_object
from web.problems import Problem

HEADER = "Payment-Signature"
TOLERANCE_SECONDS = 300
_T = re.compile(r"[0-9]{1,12}")  # ASCII digits only (int() would take "١" or "1_0")
_V1 = re.compile(r"[0-9a-fA-F]{64}")  # a SHA-256 in hex


def _bad(detail: str) -> Problem:
    return Problem(401, "BAD_SIGNATURE", detail)


def _mac(secret: str, t: str, body: bytes) -> bytes:
    message = t.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def sign(body: bytes, secret: str, t: int) -> str:
    """The Payment-Signature header value of `body` at unix time `t` (the provider's side)."""
    return f"t={t},v1={_mac(secret, str(t), body).hex()}"


def confirmation(
    order_id: str, payment_id: str, amount: str, currency: str, secret: str, t: int | None = None
) -> tuple[bytes, str]:
    """(body, Payment-Signature) of the confirm webhook the provider sends for a payment of
    `amount` `currency` (the test payment provider and `flask --app web pay`)."""
    body = json.dumps(
        {"orderId": order_id, "paymentId": payment_id, "amount": amount, "currency": currency},
        separators=(",", ":"),
    ).encode()
    return body, sign(body, secret, int(time.time()) if t is None else t)


def _parse(header: str) -> tuple[str, bytes]:
    """(t as sent, the v1 digest) of a header with exactly one t and one v1; other schemes are
    ignored, as a provider may send several."""
    found: dict[str, list[str]] = {"t": [], "v1": []}
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            raise _bad(f"{HEADER} must be t=<unix seconds>,v1=<hex>.")
        if name in found:
            found[name].append(value.strip())
    if len(found["t"]) != 1 or len(found["v1"]) != 1:
        raise _bad(f"{HEADER} must have exactly one t and one v1.")
    (t,), (v1,) = found["t"], found["v1"]
    if not _T.fullmatch(t):
        raise _bad(f"{HEADER}'s t must be unix seconds.")
    if not _V1.fullmatch(v1):
        raise _bad(f"{HEADER}'s v1 must be a hex HMAC-SHA256.")
    return t, bytes.fromhex(v1)


def verify(
    header: str | None,
    raw_body: bytes,
    order_id: str,
    secret: str,
    now: float | None = None,
) -> None:
    """Return if `header` signs `raw_body` with `secret`, within the time window, and the body
    names `order_id`; else raise 401 BAD_SIGNATURE."""
    if not secret:  # an empty key would let anyone sign
        raise _bad("Payment signatures cannot be checked: no webhook secret is configured.")
    if not header:
        raise _bad(f"The {HEADER} header is missing.")
    t, given = _parse(header)
    now = time.time() if now is None else now
    if abs(now - int(t)) > TOLERANCE_SECONDS:
        raise _bad(f"{HEADER}'s t is more than {TOLERANCE_SECONDS} s from now.")
    if not hmac.compare_digest(given, _mac(secret, t, raw_body)):
        raise _bad(f"{HEADER} does not match the body.")
    try:
        signed_order = json_object(raw_body).get("orderId")
    except Problem:
        raise _bad("The signed body is not a JSON object.") from None
    if not isinstance(signed_order, str) or signed_order != order_id:
        raise _bad("The signed body names another order.")

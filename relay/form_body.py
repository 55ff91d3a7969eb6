"""PublishBatch's form body, encoded once and fast.

botocore sends SNS calls in the query protocol: a form body that its request preparer
url-encodes from a dict (`urllib.parse.urlencode`, one byte at a time in Python) every time the
body is read — once to sign it, once to send it. For a full batch of ten ~1 KB Celery messages
that was about a third of the relay's CPU. Registered on `before-sign` (botocore's own hook for
changing a request before it is signed), `encode_once` replaces the dict by its encoding:
long values (the messages) percent-encode every byte (`bytes.hex` with `%` between the digits:
a form decoder reads `%7B` as `{` exactly as it reads `{` spelt out, and the body is signed as
the bytes sent), short ones as urlencode would.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

LONG = 64  # characters: above this, every byte is escaped in C (bytes.hex) instead of in Python


def encode(params: dict[str, Any]) -> str:
    """The form encoding of `params`, decoding to the same pairs as urlencode's."""
    parts = []
    for key, value in params.items():
        text = value if isinstance(value, str) else str(value)
        encoded = "%" + text.encode().hex("%") if len(text) > LONG else quote_plus(text)
        parts.append(f"{quote_plus(key)}={encoded}")
    return "&".join(parts)


def encode_once(request: Any, **_: Any) -> None:
    """botocore `before-sign` handler: the dict body becomes its encoding, read as is after."""
    if isinstance(request.data, dict):
        request.data = encode(request.data)

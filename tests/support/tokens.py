"""Bearer tokens for the tests: development tokens of the session's secret and issuer."""

from __future__ import annotations

from cli.tokens import development_token
from web.identity import OPERATOR


def bearer(subject: str = "buyer-a", *roles: str) -> dict[str, str]:
    """The Authorization header of a token for `subject` with `roles`."""
    return {"Authorization": f"Bearer {development_token(subject, roles)}"}


def operator(subject: str = "ops") -> dict[str, str]:
    """The Authorization header of an operator's token."""
    return bearer(subject, OPERATOR)

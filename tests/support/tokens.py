"""Bearer tokens for the tests: development tokens of the session's secret and issuer."""

from __future__ import annotations

import requests

from cli.tokens import development_token
from web.identity import OPERATOR


def bearer(subject: str = "buyer-a", *roles: str) -> dict[str, str]:
    """The Authorization header of a token for `subject` with `roles`."""
    return {"Authorization": f"Bearer {development_token(subject, roles)}"}


def operator(subject: str = "ops") -> dict[str, str]:
    """The Authorization header of an operator's token."""
    return bearer(subject, OPERATOR)


def operator_session() -> requests.Session:
    """An HTTP session that sends an operator's token with every request (tests of processes
    that buy seats and read the back office)."""
    session = requests.Session()
    session.headers.update(operator("test-operator"))
    return session

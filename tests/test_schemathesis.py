"""Schemathesis against both specs, through the app's WSGI interface, with real Redis, MariaDB
and moto behind it: no 5xx for any generated input, every answer as the spec says.

Bounded and reproducible: `max_examples` per operation and a derandomized (fixed-seed) run.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.support.tokens import operator
from web import create_app

MAX_EXAMPLES = 25


# Loaded from the app's own WSGI interface; the spec needs no service, the calls do (fixtures).
_app = create_app()
purchase_api = schemathesis.openapi.from_wsgi("/purchase/openapi.json", _app)
query_api = schemathesis.openapi.from_wsgi("/query/openapi.json", _app)

FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
# Valid bodies for ids that are not in the catalog, or seats already sold, are 404/409/422 by
# design: the "valid input must be accepted" check does not apply to a sale.
EXCLUDED = [positive_data_acceptance]
AS_OPERATOR = operator("fuzzer")


CALLS: Counter[tuple[str, int]] = Counter()
OPERATIONS: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def summary():
    """Print operations, examples and statuses at the end (the closing note quotes it)."""
    yield
    print(f"\nschemathesis: {len(OPERATIONS)} operations, {CALLS.total()} examples")
    for (label, status), n in sorted(CALLS.items()):
        print(f"  {label} -> {status}: {n}")
    assert not any(status >= 500 for _, status in CALLS)


def call(case) -> None:
    """As an operator: every operation is open to one (schemathesis's `ignored_auth` check
    also calls the secured ones without the token and expects 401)."""
    # a case generated without the Authorization header on purpose (a negative case of the
    # security scheme) goes without it: that one must be refused, and is
    authorised = "authorization" in {k.lower() for k in (case.headers or {})}
    response = case.call_and_validate(
        headers=AS_OPERATOR if authorised else None, excluded_checks=EXCLUDED
    )
    OPERATIONS.add(case.operation.label)
    CALLS[(f"{case.method} {case.operation.path}", response.status_code)] += 1


@purchase_api.parametrize()
@FUZZ
def test_purchase_api(case, clean_tickets, loaded_seats):
    call(case)


@query_api.parametrize()
@FUZZ
def test_query_api(case, clean_tickets, loaded_seats):
    call(case)

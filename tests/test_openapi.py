"""The OpenAPI specs: generated, served, complete (every route, every problem code it raises)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable

import pytest
from werkzeug.routing import Rule

from models import seats
from web import create_app
from web.openapi import _path
from web.problems import STATUSES, TITLES

UNDOCUMENTED = ("static", "metrics", "_docs.", "shop.")  # shop.: the buyer page's files
SERVICES = ("purchase", "query", "events")


@pytest.fixture(scope="module")
def full_app():
    return create_app()


@pytest.fixture(scope="module")
def specs(full_app) -> dict[str, dict]:
    client = full_app.test_client()
    served = {}
    for service in SERVICES:
        response = client.get(f"/{service}/openapi.json")
        assert response.status_code == 200
        served[service] = response.get_json()
        assert served[service]["openapi"].startswith("3.")
    return served


def routes(app) -> list[Rule]:
    return [r for r in app.url_map.iter_rules() if not any(u in r.endpoint for u in UNDOCUMENTED)]


def codes_raised(func: Callable, seen: set | None = None) -> set[str]:
    """Problem codes a view can answer: literal codes in its source and in the functions of its
    module it calls, SERVICE_UNAVAILABLE where it reaches Redis or the database."""
    seen = seen if seen is not None else set()
    if func in seen:
        return set()
    seen.add(func)
    source = inspect.getsource(func)
    source = source[source.index("def ") :]  # not the @documented list itself
    codes = {c for c in re.findall(r'"([A-Z_]+)"', source) if c in TITLES}
    if re.search(r"scripts(_for\(.*\))?\.purchase\(", source):  # the seat script's codes
        codes |= set(re.findall(r"return '([A-Z_]+)'", seats.DECIDE_LUA)) & TITLES.keys()
    if re.search(r"unavailable\(|models\.reader\(\)|seats\.client\(\)|catalog\(\)", source):
        codes.add("SERVICE_UNAVAILABLE")
    if "outcome_unknown(" in source:
        codes.add("OUTCOME_UNKNOWN")
    module = inspect.getmodule(func)
    for name in set(re.findall(r"(?<![.\w])(_?[a-z][a-z_]*)\(", source)):
        called = getattr(module, name, None)
        if inspect.isfunction(called) and called.__module__ == module.__name__:
            codes |= codes_raised(called, seen)
    return codes - {"BAD_REQUEST", "INTERNAL_ERROR"}


def test_every_route_is_in_a_spec_with_every_problem_code_it_can_answer(full_app, specs):
    checked = 0
    for rule in routes(full_app):
        service = rule.rule.split("/")[1]
        path, _ = _path(rule)
        operations = specs[service]["paths"].get(path)
        assert operations is not None, f"{rule.rule} is not in /{service}/openapi.json"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = operations[method.lower()]
            documented = {
                code
                for response in operation["responses"].values()
                for code in response.get("x-problem-codes", [])
            }
            view = full_app.view_functions[rule.endpoint]
            if "503" in operation["responses"]:  # health: 503 with its own body
                documented.add("SERVICE_UNAVAILABLE")
            missing = codes_raised(view) - documented
            assert not missing, f"{method} {path} can answer {missing}, not in its spec"
            for status, response in operation["responses"].items():
                for code in response.get("x-problem-codes", []):
                    assert STATUSES[code] == int(status)
            checked += 1
    assert checked >= 14


def test_the_scan_finds_codes_raised_outside_the_view():
    from web import purchase

    found = codes_raised(purchase.purchase_ticket)
    assert {"SEAT_TAKEN", "EVENT_SOLD_OUT", "OUTCOME_UNKNOWN"} <= found


def test_problem_table_is_complete():
    assert TITLES.keys() == STATUSES.keys()


def test_specs_describe_the_new_endpoints(specs):
    purchase = specs["purchase"]["paths"]
    post = purchase["/purchase/api/v1/tickets"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "PurchaseRequest"
    )
    assert [p["name"] for p in post["parameters"]] == ["Idempotency-Key"]
    assert post["responses"]["201"]["headers"]["Location"]
    assert post["responses"]["503"]["headers"]["Retry-After"]
    assert set(post["responses"]["422"]["x-problem-codes"]) >= {"IDEMPOTENCY_KEY_REUSED"}
    assert "/purchase/api/v1/events/{eventId}/zones/{zoneId}/seats" in purchase
    assert "/purchase/api/v1/events/{eventId}/availability" in purchase
    query = specs["query"]["paths"]
    for path in ("venues", "venues/{venueId}", "events", "events/{eventId}"):
        assert f"/query/api/v1/{path}" in query
    schemas = specs["query"]["components"]["schemas"]
    assert {"Ticket", "Problem", "Venue", "Zone", "Event"} <= schemas.keys()
    assert not any(p.endswith("metrics") for p in query)


def test_swagger_ui_is_served_from_the_local_package(full_app):
    client = full_app.test_client()
    for service in ("purchase", "query"):
        page = client.get(f"/{service}/docs")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert f"/{service}/openapi.json" in html
        for asset in re.findall(r'(?:href|src)="([^"]+)"', html):
            response = client.get(asset)
            assert response.status_code == 200, asset
            response.close()


def test_postman_collection_is_generated_from_the_specs(specs):
    """`python ops/docs/postman.py > docs/ticketing.postman_collection.json` after any API
    change."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops" / "docs"))
    from postman import collection

    committed = Path(__file__).resolve().parents[1] / "docs" / "ticketing.postman_collection.json"
    assert json.loads(committed.read_text()) == collection(specs)
    operations = sum(len(ops) for spec in specs.values() for ops in spec["paths"].values())
    assert sum(len(folder["item"]) for folder in collection(specs)["item"]) == operations


def test_reference_page_is_generated_from_the_code(specs):
    """`make docs` after any change of routes, problem codes, the Procfile or the metrics."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "ops" / "docs"))
    import reference

    from web.problems import STATUSES, TITLES

    page = reference.render(
        specs, STATUSES, TITLES, (root / "Procfile").read_text(), reference.collectors()
    )
    assert (root / "docs" / "reference.md").read_text() == page
    assert all(f"`{code}`" in page for code in STATUSES)


def test_specs_state_the_input_rules_the_server_applies(specs):
    """What the server refuses, the spec refuses too: a client reading it is not surprised."""
    purchase = specs["purchase"]
    post = purchase["paths"]["/purchase/api/v1/tickets"]["post"]
    assert list(post["requestBody"]["content"]) == ["application/json"]
    assert post["responses"]["415"]["x-problem-codes"] == ["UNSUPPORTED_MEDIA_TYPE"]
    assert post["responses"]["413"]["x-problem-codes"] == ["PAYLOAD_TOO_LARGE"]
    body = purchase["components"]["schemas"]["PurchaseRequest"]["properties"]
    seat_map = purchase["paths"]["/purchase/api/v1/events/{eventId}/zones/{zoneId}/seats"]["get"]
    params = {p["name"]: p["schema"] for p in seat_map["parameters"]}
    for id_schema in (body["venueId"], body["eventId"], params["eventId"]):
        assert id_schema["pattern"] == "^[A-Za-z0-9._-]+$"
        assert (id_schema["minLength"], id_schema["maxLength"]) == (1, 64)
    assert params["zoneId"]["minimum"] == 1
    listing = specs["query"]["paths"]["/query/api/v1/tickets"]["get"]
    query = {p["name"]: p["schema"] for p in listing["parameters"] if p["in"] == "query"}
    assert query["cursor"]["minLength"] == 1  # `cursor=` is a 400, and the spec says so
    assert query["cursor"]["pattern"] == "^[A-Za-z0-9_-]+$"
    assert query["limit"]["type"] == query["zoneId"]["type"] == "integer"

"""OpenAPI 3 specs generated from the views and their marshmallow schemas (apispec), one per
blueprint, served at `/<prefix>/openapi.json` with Swagger UI at `/<prefix>/docs`.

A view is documented by `@documented(...)`: its answers (status → schema), the problem codes it
can answer, its body, query and header parameters. Paths, path parameters and summaries come
from the Flask rules and the views' docstrings, so the spec cannot drift from the routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify, send_from_directory, url_for
from marshmallow import Schema, fields
from werkzeug.routing import IntegerConverter, Rule

from models.catalog import ID_PATTERN
from models.tickets import TICKET_ID_PATTERN
from web.access import Access, access_of, allow, is_development_only
from web.problems import PROBLEM_JSON, STATUSES, TITLES
from web.schemas import Cursor, ProblemSchema

F = TypeVar("F", bound=Callable[..., Any])
SchemaLike = type[Schema] | Schema

# Headers that go with some answers.
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
_RETRY_CODES = {"SERVICE_UNAVAILABLE", "OUTCOME_UNKNOWN", "RATE_LIMITED"}
# Example values of path parameters (Swagger UI's "try it out" and the fuzzer's first cases).
_EXAMPLES = {
    "eventId": "Event1",
    "venueId": "Venue1",
    "zoneId": 1,
    "ticketId": "5b15a8a4-1f84-44dd-8f3d-9ae9de6e6d1b",
}
_IDS = {"eventId", "venueId"}  # the contract's id pattern
# Every operation with a body can answer these (web.bodies checks them before the view).
BEARER = "bearerAuth"
_BODY_PROBLEMS = ("MALFORMED_JSON", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE")


@dataclass(frozen=True)
class Operation:
    """What the spec says about one view (set by `documented`)."""

    responses: dict[int, SchemaLike | None]
    problems: tuple[str, ...] = ()
    body: SchemaLike | None = None
    query: SchemaLike | None = None
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    response_headers: dict[str, dict[str, Any]] = field(default_factory=dict)


def documented(
    responses: dict[int, SchemaLike | None],
    *,
    problems: Iterable[str] = (),
    body: SchemaLike | None = None,
    query: SchemaLike | None = None,
    headers: dict[str, dict[str, Any]] | None = None,
    response_headers: dict[str, dict[str, Any]] | None = None,
) -> Callable[[F], F]:
    """Describe a view for the OpenAPI spec; a view without it is left out (metrics)."""
    unknown = set(problems) - STATUSES.keys()
    if unknown:
        raise ValueError(f"unknown problem codes {sorted(unknown)}")

    def mark(view: F) -> F:
        view.openapi = Operation(  # type: ignore[attr-defined]
            responses=responses,
            problems=tuple(problems),
            body=body,
            query=query,
            headers=headers or {},
            response_headers=response_headers or {},
        )
        return view

    return mark


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path of a Flask rule and its path parameters (snake_case → camelCase)."""
    params = []
    for name in re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule.rule):
        if isinstance(rule._converters[name], IntegerConverter):
            schema: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
        elif _camel(name) in _IDS:
            schema = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": ID_PATTERN}
        elif _camel(name) == "ticketId":
            schema = {"type": "string", "pattern": TICKET_ID_PATTERN}
        else:
            schema = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^/]+$"}
        param = {"in": "path", "name": _camel(name), "required": True, "schema": schema}
        if _camel(name) in _EXAMPLES:
            param["example"] = _EXAMPLES[_camel(name)]
        params.append(param)
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: "{" + _camel(m.group(1)) + "}", rule.rule)
    return path, params


def _problem_response(codes: list[str]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": "; ".join(f"`{c}`: {TITLES[c]}" for c in codes),
        "content": {PROBLEM_JSON: {"schema": "Problem"}},
        "x-problem-codes": codes,
    }
    if _RETRY_CODES & set(codes):
        response["headers"] = {"Retry-After": RETRY_AFTER}
    return response


def _operation(view: Callable[..., Any], op: Operation, path_params: list) -> dict[str, Any]:
    doc = (view.__doc__ or "").strip()
    problems = list(op.problems)
    if path_params and "NOT_FOUND" not in problems:
        problems.append("NOT_FOUND")  # a path value that routes nowhere
    if op.body is not None:
        problems += [code for code in _BODY_PROBLEMS if code not in problems]
    if is_development_only(view) and "NOT_FOUND" not in problems:
        problems.append("NOT_FOUND")  # anywhere but APP_ENV=development
    level = access_of(view)
    if level in (Access.BUYER, Access.OPERATOR):
        problems.append("UNAUTHENTICATED")
    if level is Access.OPERATOR:
        problems.append("FORBIDDEN")
    parameters = list(path_params)
    if op.query is not None:
        parameters.append({"in": "query", "schema": op.query})
    for name, spec in op.headers.items():
        parameters.append({"in": "header", "name": name, **spec})
    responses: dict[str, Any] = {}
    for status, schema in op.responses.items():
        response: dict[str, Any] = {"description": doc.splitlines()[0] if doc else str(status)}
        if schema is not None:
            response["content"] = {"application/json": {"schema": schema}}
        if status < 300 and op.response_headers:
            response["headers"] = op.response_headers
        responses[str(status)] = response
    by_status: dict[int, list[str]] = {}
    for code in problems:
        by_status.setdefault(STATUSES[code], []).append(code)
    for status, codes in sorted(by_status.items()):
        responses[str(status)] = _problem_response(codes)
    operation: dict[str, Any] = {
        "operationId": view.__name__,
        "summary": doc.splitlines()[0] if doc else view.__name__,
        "parameters": parameters,
        "responses": responses,
    }
    if level in (Access.BUYER, Access.OPERATOR):
        operation["security"] = [{BEARER: []}]
        if level is Access.OPERATOR:
            operation["description"] = "Operators only (a token with the `operator` role)."
    if is_development_only(view):
        operation["description"] = (
            "Development only: served with APP_ENV=development, 404 `NOT_FOUND` elsewhere."
        )
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": op.body}},
        }
    return operation


def build_spec(app: Flask, blueprint: str) -> dict[str, Any]:
    """The OpenAPI 3 document of one blueprint's documented routes."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=f"Ticketing {blueprint} API",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[plugin],
        info={"description": "Errors are RFC 9457 problem+json with a stable `code`."},
    )
    plugin.map_to_openapi_type(Cursor, fields.String)
    spec.components.schema("Problem", schema=ProblemSchema)
    spec.components.security_scheme(
        BEARER,
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A token of the identity provider (locally: "
            "`flask --app web token buyer NAME`); `sub` is the buyer, the `operator` role "
            "marks an operator.",
        },
    )
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.endpoint.startswith(blueprint + "."):
            continue
        view = app.view_functions[rule.endpoint]
        op = getattr(view, "openapi", None)
        if op is None:
            continue
        path, path_params = _path(rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(view, op, path_params)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def spec_for(app: Flask, blueprint: str) -> dict[str, Any]:
    """The blueprint's spec, built once per app."""
    specs = app.extensions.setdefault("openapi", {})
    if blueprint not in specs:
        specs[blueprint] = build_spec(app, blueprint)
    return specs[blueprint]


_UI_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{css}"></head>
<body><div id="swagger-ui"></div><script src="{js}"></script>
<script>window.ui = SwaggerUIBundle({{url: "{spec}", dom_id: "#swagger-ui",
  persistAuthorization: true}});</script>
</body></html>
"""


def docs_blueprint(api: Blueprint) -> Blueprint:
    """`openapi.json`, Swagger UI and its assets (the swagger-ui-bundle package) under the
    API's prefix; a new blueprint per app."""
    docs = Blueprint(f"{api.name}_docs", __name__, url_prefix=api.url_prefix)

    @docs.get("/openapi.json")
    @allow(Access.PUBLIC)
    def spec() -> Response:
        """The OpenAPI 3 document of this API."""
        return jsonify(spec_for(current_app, api.name))

    @docs.get("/docs")
    @allow(Access.PUBLIC)
    def ui() -> Response:
        """Swagger UI on this API's spec."""
        page = _UI_PAGE.format(
            title=f"Ticketing {api.name} API",
            css=url_for(".assets", filename="swagger-ui.css"),
            js=url_for(".assets", filename="swagger-ui-bundle.js"),
            spec=url_for(".spec"),
        )
        return Response(page, mimetype="text/html")

    @docs.get("/docs/<path:filename>")
    @allow(Access.PUBLIC)
    def assets(filename: str) -> Response:
        """Swagger UI's static files, shipped by the swagger-ui-bundle package."""
        from swagger_ui_bundle import swagger_ui_path

        return send_from_directory(swagger_ui_path, filename, max_age=3600)

    return docs

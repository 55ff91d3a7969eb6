"""The API reference page (docs/reference.md), generated from the OpenAPI specs and the problem
codes the code knows, so that no route or code table is copied by hand.

    .venv/bin/python ops/docs/reference.py > docs/reference.md      (or: make docs)

A test fails when the committed page differs from what this prints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

HEADER = """# API reference

Generated from the OpenAPI specs (`/purchase/openapi.json`, `/query/openapi.json`,
`/events/openapi.json`) and `web/problems.py` by `ops/docs/reference.py`; do not edit by hand
(`make docs`). The narrative, with curl examples, is in [api.md](api.md); Swagger UI is served at
`/purchase/docs` and `/query/docs`.
"""


def _answers(operation: dict[str, Any]) -> tuple[str, str]:
    """(success statuses, problem codes by status) of one operation."""
    ok, problems = [], []
    for status, response in sorted(operation["responses"].items()):
        codes = response.get("x-problem-codes")
        if codes:
            problems.append(f"{status} " + ", ".join(f"`{c}`" for c in codes))
        else:
            ok.append(status)
    return " / ".join(ok), "; ".join(problems)


def _operations_table(spec: dict[str, Any]) -> list[str]:
    lines = ["| method and path | what | answers | problems |", "|---|---|---|---|"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            ok, problems = _answers(operation)
            summary = operation.get("summary", "").replace("|", "\\|")
            lines.append(f"| `{method.upper()} {path}` | {summary} | {ok} | {problems} |")
    return lines


def _parameters(spec: dict[str, Any]) -> list[str]:
    """Query and header parameters, where an operation has any."""
    lines: list[str] = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            named = [p for p in operation.get("parameters", []) if p.get("in") != "path"]
            if not named:
                continue
            lines.append(f"`{method.upper()} {path}`:")
            for p in named:
                schema = p.get("schema", {})
                kind = schema.get("type", "")
                limits = ", ".join(
                    f"{k} {schema[k]}"
                    for k in ("minimum", "maximum", "minLength", "maxLength", "pattern", "default")
                    if k in schema
                )
                text = p.get("description", "").strip()
                detail = "; ".join(x for x in (kind, limits, text) if x)
                lines.append(f"- {p['in']} `{p['name']}`: {detail}")
            lines.append("")
    return lines


def _procfile(text: str) -> list[str]:
    lines = ["| type | command |", "|---|---|"]
    for line in text.splitlines():
        name, _, command = line.partition(": ")
        if command:
            lines.append(f"| `{name}` | `{command}` |")
    return lines


def _metrics(collectors: list[Any]) -> list[str]:
    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for c in sorted(collectors, key=lambda c: c._name):
        name = c._name + ("_total" if c._type == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in c._labelnames)
        lines.append(f"| `{name}` | {c._type} | {labels} | {c._documentation} |")
    return lines


def render(
    specs: dict[str, dict[str, Any]],
    statuses: dict[str, int],
    titles: dict[str, str],
    procfile: str,
    collectors: list[Any],
) -> str:
    """The page, from the specs (service → OpenAPI document), the problem codes, the Procfile
    and the Prometheus collectors."""
    out = [HEADER]
    used: dict[str, list[str]] = {}
    for service, spec in specs.items():
        out += [f"## {service.title()} API", "", *_operations_table(spec), ""]
        params = _parameters(spec)
        if params:
            out += ["Parameters:", "", *params]
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                for response in operation["responses"].values():
                    for code in response.get("x-problem-codes", []):
                        used.setdefault(code, []).append(f"{method.upper()} {path}")
    out += [
        "## Problem codes",
        "",
        "Every error is `application/problem+json` (RFC 9457) with a stable `code`.",
        "",
        "| code | status | title | answered by |",
        "|---|---|---|---|",
    ]
    for code, status in sorted(statuses.items(), key=lambda item: (item[1], item[0])):
        routes = used.get(code)
        where = f"{len(routes)} operations" if routes and len(routes) > 3 else None
        where = where or (", ".join(f"`{r}`" for r in routes) if routes else "any route")
        out.append(f"| `{code}` | {status} | {titles.get(code, code)} | {where} |")
    out += [
        "",
        "## Process types",
        "",
        "The `Procfile`; ECS runs the same lines from one image (`web` is local only).",
        "",
        *_procfile(procfile),
        "",
        "## Metrics",
        "",
        "Prometheus text at `/<service>/metrics` (every gunicorn worker added up), on the",
        "worker's `WORKER_METRICS_PORT` (every pool process added up) and on the relay's",
        "`RELAY_METRICS_PORT` (when set).",
        "",
        *_metrics(collectors),
        "",
        "## Settings",
        "",
        "Environment variables only, read in `plumbing/settings.py`; `.env.example` lists every",
        "one with its default and meaning (a test keeps the two in step).",
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    """Print the page for the app's three specs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from plumbing import settings

    # the specs need no token, but the apps refuse to be built without a way to verify one
    os.environ.setdefault("JWT_SECRET", settings.DEVELOPMENT_JWT_SECRET)
    os.environ.setdefault("JWT_ISSUER", settings.DEVELOPMENT_JWT_ISSUER)
    from web import SERVICES, create_app
    from web.openapi import spec_for
    from web.problems import STATUSES, TITLES

    root = Path(__file__).resolve().parents[2]
    app = create_app()
    specs = {s: spec_for(app, s) for s in SERVICES}
    procfile = (root / "Procfile").read_text()
    sys.stdout.write(render(specs, STATUSES, TITLES, procfile, collectors()))


def collectors() -> list[Any]:
    """The Prometheus metrics the services and the worker define (`plumbing.metrics`)."""
    from prometheus_client.metrics import MetricWrapperBase

    from plumbing import metrics

    return [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]


if __name__ == "__main__":
    main()

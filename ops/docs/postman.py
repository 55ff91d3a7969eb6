"""A Postman collection (v2.1) generated from the OpenAPI specs, for the seed's users.

    .venv/bin/python ops/docs/postman.py > docs/ticketing.postman_collection.json

One folder per API, one request per operation, with `{{baseUrl}}` (default
http://127.0.0.1:8000) and each path parameter's example as a collection variable. Operations
that need a token send `Bearer {{token}}` (set it to `flask --app web token buyer NAME`, or an
operator's for the back office).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
EXAMPLE_BODY = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "1"}


def _request(path: str, method: str, operation: dict[str, Any]) -> dict[str, Any]:
    raw = "{{baseUrl}}" + re.sub(r"\{(\w+)\}", r"{{\1}}", path)
    headers = [
        {"key": p["name"], "value": "", "disabled": True, "description": p.get("description", "")}
        for p in operation.get("parameters", [])
        if p.get("in") == "header"
    ]
    query = [
        {"key": p["name"], "value": "", "disabled": True}
        for p in operation.get("parameters", [])
        if p.get("in") == "query"
    ]
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": headers,
        "url": {
            "raw": raw,
            "host": ["{{baseUrl}}"],
            "path": [re.sub(r"\{(\w+)\}", r"{{\1}}", s) for s in path.strip("/").split("/")],
            "query": query,
        },
        "description": operation.get("summary", ""),
    }
    if operation.get("security"):
        request["auth"] = {
            "type": "bearer",
            "bearer": [{"key": "token", "value": "{{token}}", "type": "string"}],
        }
    if "requestBody" in operation:
        request["header"].append({"key": "Content-Type", "value": "application/json"})
        request["body"] = {"mode": "raw", "raw": json.dumps(EXAMPLE_BODY, indent=2)}
    return {"name": f"{method.upper()} {path}", "request": request}


def collection(specs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The collection of every operation of the given specs (service name → OpenAPI doc)."""
    folders, variables = [], {"baseUrl": "http://127.0.0.1:8000", "token": ""}
    for spec in specs.values():
        items = []
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                items.append(_request(path, method, operation))
                for p in operation.get("parameters", []):
                    if p.get("in") == "path":
                        variables.setdefault(p["name"], str(p.get("example", "")))
        folders.append({"name": spec["info"]["title"], "item": items})
    return {
        "info": {
            "name": "Ticketing",
            "description": "Generated from /purchase, /query and /events openapi.json "
            "(ops/docs/postman.py); do not edit by hand.",
            "schema": SCHEMA,
        },
        "item": folders,
        "variable": [{"key": k, "value": v} for k, v in variables.items()],
    }


def main() -> None:
    """Print the collection of the app's three specs."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from plumbing import settings

    # the specs need no token, but the apps refuse to be built without a way to verify one
    os.environ.setdefault("JWT_SECRET", settings.DEVELOPMENT_JWT_SECRET)
    os.environ.setdefault("JWT_ISSUER", settings.DEVELOPMENT_JWT_ISSUER)
    from web import SERVICES, create_app
    from web.openapi import spec_for

    app = create_app()
    specs = {service: spec_for(app, service) for service in SERVICES}
    json.dump(collection(specs), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

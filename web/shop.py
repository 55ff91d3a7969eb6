"""The buyer page, `/shop/`, served by the purchase service: plain HTML, CSS and JavaScript
files from `web/shop/` (no build step, nothing from a CDN).

GET /shop/              the page (index.html)
GET /shop/<file>        its script, style sheet and the deployment's `config.js`

The page calls only this origin: the catalog (`/query/api/v1/events`, `/venues/{id}`), the seat
map, the order routes, and locally the development login and test payment provider
(`web.development`). How it is used: docs/shop.md.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from web.access import Access, allow

FILES = Path(__file__).resolve().parent / "shop"

bp = Blueprint("shop", __name__, url_prefix="/shop")

# Only this origin's files and calls; no inline script or style (a token lives in this page).
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@allow(Access.PUBLIC)
@bp.get("/")
def page() -> Response:
    """The buyer page."""
    return _file("index.html")


@allow(Access.PUBLIC)
@bp.get("/<path:filename>")
def asset(filename: str) -> Response:
    """The page's script, style sheet and configuration (404 for anything else)."""
    return _file(filename)


def _file(name: str) -> Response:
    """A file of the page, revalidated on each load (its ETag makes that a 304)."""
    response = send_from_directory(FILES, name, max_age=0)
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response

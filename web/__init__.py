"""The HTTP side: `create_app(services)` builds the purchase, query and events APIs.

Behind the ALB each runs as its own process type (`create_app("purchase")`, …); locally one
process serves all three under one base URL, the way the ALB routes them.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from plumbing import logs, metrics, settings
from web.access import Access, allow

SERVICES = ("purchase", "query", "events")


def create_app(services: str = ",".join(SERVICES)) -> Flask:
    """Build the app with the named blueprints (comma-separated)."""
    chosen = [s.strip() for s in services.split(",") if s.strip()]
    unknown = set(chosen) - set(SERVICES)
    if unknown or not chosen:
        raise ValueError(f"services must be some of {SERVICES}, got {services!r}")
    settings.get()  # fail fast on a bad environment
    app = Flask(__name__)
    app.json.sort_keys = False
    logs.configure("web:" + "+".join(chosen))
    register_request_ids(app)
    register_access(app, chosen)
    register_input_rules(app)
    register_blueprints(app, chosen)
    register_error_handlers(app)
    register_commands(app)
    from web.access import check_every_view_declared

    check_every_view_declared(app)
    return app


def register_access(app: Flask, services: list[str]) -> None:
    """Who may call what (web.access), checked before the body is read; a serving purchase or
    query API needs a way to verify tokens (JWT_SECRET or JWT_JWKS_URL)."""
    from web.access import register_access_rules

    s = settings.get()
    needs_tokens = {"purchase", "query"} & set(services)
    if needs_tokens and not (s.jwt_secret or s.jwt_jwks_url) and not _for_cli():
        raise settings.SettingsError(
            "JWT_SECRET (HS256) or JWT_JWKS_URL (RS256) must be set to serve "
            + " and ".join(sorted(needs_tokens))
            + ": buyers and operators are identified by their tokens"
        )
    register_access_rules(app)


def register_request_ids(app: Flask) -> None:
    """Take X-Request-ID (or make one) for the logs and the task headers; echo it back."""

    @app.before_request
    def _take_request_id() -> None:
        g.request_id_token = logs.request_id.set(
            logs.accept_request_id(request.headers.get("X-Request-ID"))
        )

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        rid = logs.request_id.get()
        if rid:
            response.headers["X-Request-ID"] = rid
        return response

    @app.teardown_request
    def _forget_request_id(_: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            logs.request_id.reset(token)


def register_input_rules(app: Flask) -> None:
    """Bodies (JSON only, 16 KiB) and path integers (ASCII digits) as strict as the schemas."""
    from web.bodies import register_body_rules
    from web.schemas import PositiveIntConverter

    register_body_rules(app)
    app.url_map.converters["positive"] = PositiveIntConverter  # before any route uses it


def register_blueprints(app: Flask, services: list[str]) -> None:
    """Mount the chosen APIs under /purchase, /query and /events, each with its OpenAPI spec
    (`openapi.json`) and Swagger UI (`docs`); the purchase service serves the buyer page
    (`/shop/`) too."""
    from web.openapi import docs_blueprint

    if "purchase" in services:
        from web import (  # noqa: F401 (their routes)
            availability,
            development,
            order_payments,
            orders,
            purchase,
            shop,
        )

        app.register_blueprint(purchase.bp)
        app.register_blueprint(docs_blueprint(purchase.bp))
        app.register_blueprint(shop.bp)
    if "query" in services:
        from web import query

        app.register_blueprint(query.bp)
        app.register_blueprint(docs_blueprint(query.bp))
    if "events" in services:
        from web import events

        if not _for_cli():  # the heartbeats' Redis: a serving process fails fast without it
            settings.get().monitor_url()

        app.register_blueprint(events.bp)
        app.register_blueprint(docs_blueprint(events.bp))
    for service in services:
        app.add_url_rule(f"/{service}/metrics", f"{service}_metrics", metrics_view)


@allow(Access.INTERNAL)
def metrics_view() -> Response:
    """Prometheus metrics of this service's processes (every gunicorn worker added up)."""
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def _for_cli() -> bool:
    """The app is being built for a `flask --app web …` command, not to serve requests.

    The commands (catalog, seats, dlq) use no blueprint; the release and ops tasks that run them
    have no monitoring plane (MONITOR_BROKER_URL), and must not need one.
    """
    import click

    return click.get_current_context(silent=True) is not None


def register_error_handlers(app: Flask) -> None:
    """Every error as RFC 9457 problem+json."""
    from web.problems import register_error_handlers as register

    register(app)


def register_commands(app: Flask) -> None:
    """CLI commands (`flask --app web catalog load`)."""
    from cli import register_commands as register

    register(app)

"""The HTTP side: `create_app(services)` builds the purchase, query and events APIs.

Behind the ALB each runs as its own process type (`create_app("purchase")`, …); locally one
process serves all three under one base URL, the way the ALB routes them.
"""

from __future__ import annotations

import logging

from flask import Flask

import settings

SERVICES = ("purchase", "query", "events")
MAX_BODY_BYTES = 16 * 1024


def create_app(services: str = ",".join(SERVICES)) -> Flask:
    """Build the app with the named blueprints (comma-separated)."""
    chosen = [s.strip() for s in services.split(",") if s.strip()]
    unknown = set(chosen) - set(SERVICES)
    if unknown or not chosen:
        raise ValueError(f"services must be some of {SERVICES}, got {services!r}")
    settings.get()  # fail fast on a bad environment
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    configure_logging()
    register_blueprints(app, chosen)
    register_error_handlers(app)
    register_commands(app)
    return app


def configure_logging() -> None:
    """Log lines with time, level and logger to stderr."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )


def register_blueprints(app: Flask, services: list[str]) -> None:
    """Mount the chosen APIs under /purchase, /query and /events."""
    if "purchase" in services:
        from web import publisher, purchase

        app.register_blueprint(purchase.bp)
        publisher.publisher_app()
    if "query" in services:
        from web import query

        app.register_blueprint(query.bp)
    if "events" in services:
        from web import events

        app.register_blueprint(events.bp)


def register_error_handlers(app: Flask) -> None:
    """Every error as RFC 9457 problem+json."""
    from web.problems import register_error_handlers as register

    register(app)


def register_commands(app: Flask) -> None:
    """CLI commands (`flask --app web catalog load`)."""
    from web.cli import register_commands as register

    register(app)

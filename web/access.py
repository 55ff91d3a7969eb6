"""Who may call what: every view declares its access, one hook enforces it before the view.

- PUBLIC: anyone (catalog, availability, seat maps, docs, shallow health).
- BUYER: any verified caller (a buyer or an operator); views that return one buyer's resource
  answer 404 to another buyer (`owns`), so ids of others' tickets leak nothing.
- OPERATOR: a verified caller with the `operator` role (back office: lists, counts, revenue).
- INTERNAL: metrics and deep health. The public load balancer does not route them; a request
  that came through a proxy (it carries `X-Forwarded-For`, which the ALB always adds) is answered
  404 all the same, so a missing listener rule does not expose them. Locally they are served on
  loopback only (gunicorn binds 127.0.0.1).

A view without a declared access makes `create_app` fail: nothing is open by omission.

`@development_only` views (the development login and the test payment provider) answer 404
NOT_FOUND to everyone, before any token is read, unless APP_ENV=development.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request

from plumbing import settings
from web.identity import Identity, caller, unauthenticated
from web.problems import Problem

F = TypeVar("F", bound=Callable[..., Any])


class Access(enum.StrEnum):
    PUBLIC = "public"
    BUYER = "buyer"
    OPERATOR = "operator"
    INTERNAL = "internal"


def allow(level: Access) -> Callable[[F], F]:
    """Declare who may call a view: `@allow(Access.PUBLIC)`."""

    def mark(view: F) -> F:
        view.access = level  # type: ignore[attr-defined]
        return view

    return mark


def development_only(view: F) -> F:
    """Serve a view only with APP_ENV=development: 404 NOT_FOUND elsewhere, as if it did not
    exist (checked before its access level, so production answers 404 even without a token)."""
    view.development_only = True  # type: ignore[attr-defined]
    return view


def is_development_only(view: Callable[..., Any]) -> bool:
    return getattr(view, "development_only", False)


def access_of(view: Callable[..., Any]) -> Access | None:
    return getattr(view, "access", None)


def register_access_rules(app: Flask) -> None:
    """Enforce each view's access before anything else reads the request."""
    app.before_request(_enforce)


def check_every_view_declared(app: Flask) -> None:
    """Refuse to build an app with a view that says nothing about who may call it."""
    missing = sorted(
        endpoint
        for endpoint, view in app.view_functions.items()
        if endpoint != "static" and access_of(view) is None
    )
    if missing:
        raise RuntimeError(f"views without a declared access (web.access): {missing}")


def _enforce() -> None:
    if request.endpoint is None:  # no route: 404/405 follow
        return
    view = current_app.view_functions[request.endpoint]
    if is_development_only(view) and settings.get().app_env != "development":
        raise Problem(404, "NOT_FOUND", "Not found.")
    level = access_of(view)
    if level is Access.PUBLIC:
        return
    if level is Access.INTERNAL:
        if "X-Forwarded-For" in request.headers:
            raise Problem(404, "NOT_FOUND", "Not found.")
        return
    identity = caller()
    if identity is None:
        raise unauthenticated("This needs a Bearer token.")
    if level is Access.OPERATOR and not identity.is_operator:
        raise Problem(403, "FORBIDDEN", "This needs the operator role.")


def current() -> Identity:
    """The verified caller of a BUYER or OPERATOR view."""
    identity = caller()
    if identity is None:  # the hook let an anonymous call through: a view declared wrongly
        raise unauthenticated("This needs a Bearer token.")
    return identity


def owns(owner: str | None) -> bool:
    """Whether the caller may see a resource owned by `owner` (its owner, or an operator)."""
    identity = current()
    return identity.is_operator or (owner is not None and owner == identity.subject)

"""`flask --app web token buyer NAME` and `token operator NAME`: development tokens.

HS256 with JWT_SECRET, for the issuer and audience the services check (unset: the development
values `make run` gives its processes). Only with development settings: on AWS the identity
provider issues the tokens (RS256), and a production process refuses the development secret.
"""

from __future__ import annotations

import time

import click
import jwt

from plumbing import settings
from web.identity import OPERATOR

DEFAULT_TTL_SECONDS = 12 * 3600


def development_token(
    subject: str, roles: tuple[str, ...] = (), ttl_seconds: int = DEFAULT_TTL_SECONDS
) -> str:
    """A token the local services accept: `sub` = subject, the roles in JWT_ROLES_CLAIM."""
    s = settings.get()
    if s.app_env != "development":
        raise click.ClickException("tokens are minted only with APP_ENV=development")
    if s.jwt_jwks_url:
        raise click.ClickException("JWT_JWKS_URL is set: the identity provider issues tokens")
    # unset: the values `make run` gives its processes, so a plain shell mints for them
    return mint(
        subject,
        roles,
        secret=s.jwt_secret or settings.DEVELOPMENT_JWT_SECRET,
        issuer=s.jwt_issuer or settings.DEVELOPMENT_JWT_ISSUER,
        audience=s.jwt_audience,
        roles_claim=s.jwt_roles_claim,
        ttl_seconds=ttl_seconds,
    )


def mint(
    subject: str,
    roles: tuple[str, ...],
    *,
    secret: str,
    issuer: str,
    audience: str = "ticketing",
    roles_claim: str = "roles",
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
) -> str:
    """An HS256 token: `sub`, `iss`, `iat`, `exp`, the roles in `roles_claim`, `aud` if given."""
    now = int(time.time())
    claims: dict = {
        "sub": subject,
        "iss": issuer,
        "iat": now,
        "exp": now + ttl_seconds,
        roles_claim: list(roles),
    }
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


@click.group("token")
def token_group() -> None:
    """Development tokens (APP_ENV=development, JWT_SECRET set)."""


@token_group.command("buyer")
@click.argument("name")
@click.option("--ttl", default=DEFAULT_TTL_SECONDS, show_default=True, help="Seconds it lives.")
def buyer_command(name: str, ttl: int) -> None:
    """Print a buyer's token (sub = NAME)."""
    click.echo(development_token(_subject(name), (), ttl))


@token_group.command("operator")
@click.argument("name")
@click.option("--ttl", default=DEFAULT_TTL_SECONDS, show_default=True, help="Seconds it lives.")
def operator_command(name: str, ttl: int) -> None:
    """Print an operator's token (sub = NAME, role operator)."""
    click.echo(development_token(_subject(name), (OPERATOR,), ttl))


def _subject(name: str) -> str:
    if not 1 <= len(name) <= 255:
        raise click.BadParameter("1 to 255 characters", param_hint="NAME")
    return name

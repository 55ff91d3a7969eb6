"""Who is calling: `Authorization: Bearer <JWT>` verified with PyJWT.

Locally HS256 with JWT_SECRET; on AWS RS256 with the identity provider's keys (JWT_JWKS_URL,
fetched by PyJWKClient, cached, fetched again for an unknown key id). Issuer, audience (unless
JWT_AUDIENCE is empty) and expiry are checked; `sub` is the buyer id; the claim named by
JWT_ROLES_CLAIM lists the roles, and `operator` among them marks an operator.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import jwt
from flask import g, request

from plumbing import settings
from web.problems import Problem, unavailable

log = logging.getLogger(__name__)

OPERATOR = "operator"
MAX_SUBJECT = 255
LEEWAY_SECONDS = 30  # clock skew between the identity provider and us
# A token verified once is taken again without its signature check for at most this long (and
# never past its `exp`): a buyer sends the same token with every request, and an RS256 check
# costs a purchase about 0.3 ms of CPU. A signing key the provider withdraws stops working here
# within this time.
VERIFIED_SECONDS = 60.0
VERIFIED_MAX = 4096  # tokens remembered per process (the oldest go first)


@dataclass(frozen=True)
class Identity:
    """A verified caller."""

    subject: str
    roles: frozenset[str]

    @property
    def is_operator(self) -> bool:
        return OPERATOR in self.roles


class TokenVerifier:
    """Verifies tokens as the settings say (HS256 secret or RS256 JWKS)."""

    def __init__(self, s: settings.Settings, refetch_cooldown: float = 30.0) -> None:
        """`refetch_cooldown`: a token naming an unknown key id makes the keys be fetched again
        at most this often (PyJWKClient's guard: a flood of made-up key ids does not turn into a
        flood of requests to the provider; a rotated key may wait that long)."""
        self._issuer = s.jwt_issuer
        self._audience = s.jwt_audience or None
        self._roles_claim = s.jwt_roles_claim
        self._secret = s.jwt_secret
        self._jwks = (
            jwt.PyJWKClient(
                s.jwt_jwks_url,
                cache_keys=True,
                lifespan=int(s.jwt_jwks_cache_seconds),
                timeout=3,
                cooldown_duration=refetch_cooldown,
            )
            if s.jwt_jwks_url
            else None
        )

        self._verified: dict[str, tuple[float, Identity]] = {}
        self._verified_lock = threading.Lock()

    def verify(self, token: str) -> Identity:
        """The token's identity; raises jwt.PyJWTError for any token that does not verify, and
        jwt.PyJWKClientConnectionError when the provider's keys cannot be fetched. A token that
        verified in the last VERIFIED_SECONDS (and has not expired) is not checked again."""
        now = time.time()
        known = self._verified.get(token)
        if known is not None and known[0] > now:
            return known[1]
        identity, expires = self._check(token)
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_MAX:
                self._verified.pop(next(iter(self._verified)))  # the oldest
            self._verified[token] = (min(expires, now + VERIFIED_SECONDS), identity)
        return identity

    def _check(self, token: str) -> tuple[Identity, float]:
        """Signature, issuer, audience, expiry and subject: the identity and its `exp`."""
        if self._jwks is not None:
            key, algorithms = self._jwks.get_signing_key_from_jwt(token).key, ["RS256"]
        elif self._secret:
            key, algorithms = self._secret, ["HS256"]
        else:
            raise jwt.InvalidTokenError("no JWT_SECRET or JWT_JWKS_URL: no token can verify")
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=self._issuer,
            audience=self._audience,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "sub"], "verify_aud": self._audience is not None},
        )
        subject = claims["sub"]
        if not isinstance(subject, str) or not 1 <= len(subject) <= MAX_SUBJECT:
            raise jwt.InvalidTokenError(f"sub must be a string of 1 to {MAX_SUBJECT} characters")
        return Identity(subject, _roles(claims.get(self._roles_claim))), float(claims["exp"])


def _roles(value: object) -> frozenset[str]:
    """A list of role names, or one space-separated string (as some providers send them)."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


_lock = threading.Lock()
_verifier: TokenVerifier | None = None


def verifier() -> TokenVerifier:
    """This process's verifier (one JWKS cache per process)."""
    global _verifier
    if _verifier is None:
        with _lock:
            if _verifier is None:
                _verifier = TokenVerifier(settings.get())
    return _verifier


def forget_verifier() -> None:
    """Drop the verifier (tests that change the token settings)."""
    global _verifier
    _verifier = None


def caller() -> Identity | None:
    """The request's verified identity, None without an Authorization header; 401 for a header
    that is not a valid Bearer token; 503 when the provider's keys cannot be fetched."""
    if "identity" in g:
        return g.identity
    header = request.headers.get("Authorization")
    identity = None
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("The Authorization header must be 'Bearer <token>'.")
        try:
            identity = verifier().verify(token.strip())
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("token keys unreachable: %s", exc)
            raise unavailable(
                "The identity provider's keys are unreachable.",
                settings.get().retry_after_seconds,
            ) from None
        except jwt.PyJWTError as exc:
            log.info("token refused: %s", exc)
            raise unauthenticated("The token is invalid or expired.") from None
    g.identity = identity
    return identity


def unauthenticated(detail: str) -> Problem:
    return Problem(
        401, "UNAUTHENTICATED", detail, headers={"WWW-Authenticate": 'Bearer realm="ticketing"'}
    )

"""Tokens: what verifies and what does not, HS256 locally and RS256 from a real JWKS endpoint
(an HTTP server in this process serving the provider's keys, as Cognito's would)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from plumbing import settings
from tests.support.tokens import bearer
from tests.test_purchase_api import sold_bits
from web import identity
from web.identity import Identity, TokenVerifier

URL = "/purchase/api/v1/tickets"
SEAT = {"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "1"}


def claims(**changes) -> dict:
    s = settings.get()
    now = int(time.time())
    base = {"sub": "alice", "iss": s.jwt_issuer, "aud": s.jwt_audience, "exp": now + 60}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**changes) -> str:
    return jwt.encode(claims(**changes), settings.get().jwt_secret, algorithm="HS256")


def test_a_development_token_verifies_with_its_subject_and_roles():
    verifier = TokenVerifier(settings.get())
    token = bearer("alice", "operator")["Authorization"].split()[1]
    assert verifier.verify(token) == Identity("alice", frozenset({"operator"}))


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": int(time.time()) - 3600},  # expired (beyond the leeway)
        {"exp": None},  # no expiry
        {"iss": "someone-else"},
        {"iss": None},
        {"aud": "another-api"},
        {"aud": None},
        {"sub": None},
        {"sub": ""},
        {"sub": "x" * 256},
        {"sub": 42},
    ],
    ids=lambda c: ",".join(f"{k}={str(v)[:12]}" for k, v in c.items()),
)
def test_tokens_that_do_not_verify(changes):
    with pytest.raises(jwt.PyJWTError):
        TokenVerifier(settings.get()).verify(hs256(**changes))


def test_another_secret_and_alg_none_do_not_verify():
    verifier = TokenVerifier(settings.get())
    with pytest.raises(jwt.PyJWTError):
        verifier.verify(jwt.encode(claims(), "another-secret-of-32-bytes-or-more!!", "HS256"))
    unsigned = jwt.encode(claims(), None, algorithm="none")
    with pytest.raises(jwt.PyJWTError):
        verifier.verify(unsigned)


def test_roles_come_from_the_configured_claim():
    s = dataclasses.replace(settings.get(), jwt_roles_claim="cognito:groups")
    token = hs256(**{"cognito:groups": ["operator", "staff"], "roles": None})
    assert TokenVerifier(s).verify(token).is_operator
    assert not TokenVerifier(settings.get()).verify(token).is_operator  # `roles` has none


def test_without_an_audience_setting_aud_is_not_checked():
    s = dataclasses.replace(settings.get(), jwt_audience="")
    assert TokenVerifier(s).verify(hs256(aud=None)).subject == "alice"


@pytest.mark.parametrize(
    "header",
    ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer ", "Bearer not.a.token", "token-without-scheme"],
)
def test_bad_authorization_headers_are_401_problems(app, clean_tickets, loaded_seats, header):
    response = app.test_client().post(URL, json=SEAT, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.get_json()["code"] == "UNAUTHENTICATED"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert sold_bits(loaded_seats) == 0
    assert not any(loaded_seats.xlen(s) for s in loaded_seats.scan_iter("outbox:*"))


def test_a_token_of_a_buyer_is_forbidden_the_back_office(app, clean_tickets):
    response = app.test_client().get("/query/api/v1/tickets", headers=bearer("alice"))
    assert response.status_code == 403
    assert response.get_json()["code"] == "FORBIDDEN"


# --- RS256 from the identity provider's JWKS -------------------------------------------------


class Provider:
    """An identity provider's signing keys, served as a JWKS document over real HTTP."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        self.down = False
        self.url = ""

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> bytes:
        documents = []
        for kid, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            documents.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return json.dumps({"keys": documents}).encode()

    def token(self, kid: str, **changes) -> str:
        return jwt.encode(claims(**changes), self.keys[kid], "RS256", headers={"kid": kid})


@contextlib.contextmanager
def serving(provider: Provider) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            provider.fetches += 1
            if provider.down:
                self.send_response(503)
                self.end_headers()
                return
            body = provider.jwks()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def provider() -> Iterator[tuple[Provider, TokenVerifier]]:
    """The provider with one key, and a verifier of its keys as on AWS."""
    p = Provider()
    p.add_key("k1")
    with serving(p) as url:
        p.url = url
        yield p, rs256(url)


def rs256(url: str, refetch_cooldown: float = 30.0) -> TokenVerifier:
    s = dataclasses.replace(settings.get(), jwt_secret="", jwt_jwks_url=url)
    return TokenVerifier(s, refetch_cooldown)


def test_rs256_tokens_verify_with_the_providers_keys_fetched_once(provider):
    p, verifier = provider
    assert verifier.verify(p.token("k1")).subject == "alice"
    assert verifier.verify(p.token("k1", sub="bob")).subject == "bob"
    assert p.fetches == 1  # the keys are cached


def test_a_new_signing_key_is_fetched_when_a_token_names_it(provider):
    """After the refetch cooldown (0 here) an unknown key id fetches the keys again; within it,
    a made-up key id costs the provider nothing."""
    p, guarded = provider
    guarded.verify(p.token("k1"))
    p.add_key("k2")  # the provider rotates its keys
    with pytest.raises(jwt.PyJWTError):
        guarded.verify(p.token("k2"))  # within the cooldown: not fetched again
    assert p.fetches == 1
    verifier = rs256(p.url, refetch_cooldown=0)
    assert verifier.verify(p.token("k1")).subject == "alice"
    assert p.fetches == 2
    p.add_key("k3")
    assert verifier.verify(p.token("k3")).subject == "alice"
    assert p.fetches == 3


def test_rs256_refuses_hs256_tokens_and_unknown_keys(provider):
    p, verifier = provider
    with pytest.raises(jwt.PyJWTError):
        verifier.verify(hs256())  # HS256 where RS256 is expected
    stranger = Provider()
    stranger.add_key("k1")  # same key id, another key
    with pytest.raises(jwt.PyJWTError):
        verifier.verify(stranger.token("k1"))
    with pytest.raises(jwt.PyJWTError):
        verifier.verify(p.token("k1", exp=int(time.time()) - 3600))


def test_unreachable_keys_are_503_not_401(app, loaded_seats, provider, monkeypatch):
    """The provider's keys cannot be fetched: the caller is not at fault, and nothing is sold."""
    p, verifier = provider
    p.down = True
    monkeypatch.setattr(identity, "_verifier", verifier)
    response = app.test_client().post(
        URL, json=SEAT, headers={"Authorization": f"Bearer {p.token('k1')}"}
    )
    assert response.status_code == 503
    assert response.get_json()["code"] == "SERVICE_UNAVAILABLE"
    assert "Retry-After" in response.headers
    assert "503" not in response.get_json()["detail"]  # no exception text in answers


def test_an_rs256_buyer_buys_through_the_app(app, client, provider, monkeypatch):
    p, verifier = provider
    monkeypatch.setattr(identity, "_verifier", verifier)
    response = app.test_client().post(
        URL, json=SEAT, headers={"Authorization": f"Bearer {p.token('k1', sub='carol')}"}
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def test_a_verified_token_is_remembered_briefly_and_boundedly(monkeypatch):
    """A token seen again within VERIFIED_SECONDS is not checked again (the secret changed
    meanwhile: still accepted); after that it is (and now refused); at most VERIFIED_MAX are
    kept."""
    monkeypatch.setattr(identity, "VERIFIED_SECONDS", 0.3)
    verifier = TokenVerifier(settings.get())
    token = hs256()
    assert verifier.verify(token).subject == "alice"
    verifier._secret = "a-rotated-secret-of-at-least-32-bytes!"
    assert verifier.verify(token).subject == "alice"  # remembered
    time.sleep(0.35)
    with pytest.raises(jwt.PyJWTError):
        verifier.verify(token)  # checked again, against the new secret
    monkeypatch.setattr(identity, "VERIFIED_MAX", 3)
    fresh = TokenVerifier(settings.get())
    for n in range(5):
        fresh.verify(hs256(sub=f"buyer-{n}"))
    assert len(fresh._verified) == 3


def test_a_remembered_token_still_expires(monkeypatch):
    """Remembered at most until its own `exp`: a token about to expire is checked again after
    it, and refused once past the leeway."""
    verifier = TokenVerifier(settings.get())
    token = hs256(exp=int(time.time()) - identity.LEEWAY_SECONDS + 1)  # valid for ~1 s more
    assert verifier.verify(token).subject == "alice"
    assert verifier._verified[token][0] <= time.time()  # not kept: its exp has passed
    time.sleep(1.5)
    with pytest.raises(jwt.ExpiredSignatureError):
        verifier.verify(token)

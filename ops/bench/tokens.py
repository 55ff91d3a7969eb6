"""The CPU a token verification adds to a purchase: HS256 (development) and RS256 (a JWKS
provider, served over HTTP in this process as Cognito's would be; the keys fetched once and
cached, as in a serving process). Measured with the verifier the purchase API uses."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from plumbing import settings
from web.identity import TokenVerifier

ISSUER = "bench-issuer"


@dataclasses.dataclass(frozen=True)
class TokenCosts:
    """CPU ms per verification: a token seen for the first time, and one seen again (a buyer's
    next request with the same token: the verifier remembers it)."""

    hs256_ms: float
    rs256_ms: float
    repeat_ms: float


def _cpu_ms_each(verify: Callable[[str], object], tokens: list[str]) -> float:
    verify(tokens[0])  # warm: caches, imports
    started = time.process_time()
    for token in tokens[1:]:
        verify(token)
    return (time.process_time() - started) * 1000 / (len(tokens) - 1)


def _claims(n: int = 0) -> dict:
    exp = int(time.time()) + 600
    return {"sub": f"bench-buyer-{n}", "iss": ISSUER, "aud": "ticketing", "exp": exp}


def measure(n: int = 2000) -> TokenCosts:
    """CPU ms per verification of `n` distinct tokens, HS256 and RS256, and of one token again."""
    base = dataclasses.replace(settings.load(), jwt_issuer=ISSUER, jwt_audience="ticketing")
    secret = "bench-secret-" + "x" * 32
    hs = TokenVerifier(dataclasses.replace(base, jwt_secret=secret, jwt_jwks_url=""))
    hs_tokens = [jwt.encode(_claims(i), secret, "HS256") for i in range(n)]

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": "k1"}
    body = json.dumps({"keys": [{**jwk, "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        rs = TokenVerifier(dataclasses.replace(base, jwt_secret="", jwt_jwks_url=url))
        rs_tokens = [jwt.encode(_claims(i), key, "RS256", headers={"kid": "k1"}) for i in range(n)]
        hs_ms = _cpu_ms_each(hs.verify, hs_tokens)
        rs_ms = _cpu_ms_each(rs.verify, rs_tokens)
        repeat_ms = _cpu_ms_each(rs.verify, [rs_tokens[0]] * n)
    finally:
        server.shutdown()
        server.server_close()
    return TokenCosts(hs_ms, rs_ms, repeat_ms)


def render(costs: TokenCosts) -> str:
    return (
        f"token verification per purchase: HS256 {costs.hs256_ms * 1000:.0f} µs CPU, "
        f"RS256 {costs.rs256_ms * 1000:.0f} µs CPU for a token seen first, "
        f"{costs.repeat_ms * 1000:.1f} µs for one seen again"
    )

"""`flask --app web pay ORDER_ID [--url URL]`: the local test payment provider, for curl users.

What the buyer page's test payments do (`POST /purchase/api/v1/test-payments`), over HTTP:
read the order's amount and currency (as a development operator, who may read any order),
sign the confirm webhook's body with PAYMENT_WEBHOOK_SECRET (`web.payment_signature`) and POST
it to the order's confirm route; print the answer. Only with APP_ENV=development: on AWS the
payment provider signs with a secret that never leaves it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid

import click

from cli.tokens import development_token
from models.catalog import is_id
from plumbing import settings
from web.identity import OPERATOR
from web.payment_signature import HEADER, confirmation

API = "/purchase/api/v1"
TIMEOUT_SECONDS = 10


@click.command("pay")
@click.argument("order_id")
@click.option(
    "--url", default="http://127.0.0.1:8000", show_default=True, help="The purchase API's base."
)
@click.option("--amount", help="Pay this amount instead of the order's total.")
@click.option("--currency", help="Pay in this currency instead of the order's.")
@click.option("--payment-id", help="The provider's payment id (default: test-<uuid>).")
def pay_command(
    order_id: str, url: str, amount: str | None, currency: str | None, payment_id: str | None
) -> None:
    """Pay ORDER_ID as the test payment provider: sign and send its confirm webhook."""
    s = settings.get()
    if s.app_env != "development":
        raise click.ClickException("test payments are made only with APP_ENV=development")
    if not is_id(order_id):
        raise click.BadParameter("an order id ([A-Za-z0-9._-], 1 to 64)", param_hint="ORDER_ID")
    base = url.rstrip("/")
    if amount is None or currency is None:
        status, order = _send(
            "GET",
            f"{base}{API}/orders/{order_id}",
            headers={"Authorization": f"Bearer {development_token('payments', (OPERATOR,))}"},
        )
        if status != 200:
            _print(status, order)
            raise SystemExit(1)
        amount = amount if amount is not None else order["total"]
        currency = currency if currency is not None else order["currency"]
    # unset: the value `make run` gives its processes
    secret = s.payment_webhook_secret or settings.DEVELOPMENT_PAYMENT_WEBHOOK_SECRET
    body, signature = confirmation(
        order_id, payment_id or f"test-{uuid.uuid4()}", amount, currency, secret
    )
    status, answer = _send(
        "POST",
        f"{base}{API}/orders/{order_id}/confirm",
        body=body,
        headers={HEADER: signature, "Content-Type": "application/json"},
    )
    _print(status, answer)
    if not 200 <= status < 300:
        raise SystemExit(1)


def _send(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str]
) -> tuple[int, dict]:
    """(status, JSON body) of one request; a server that cannot be reached ends the command."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, _json(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"{url}: {exc}") from None


def _json(raw: bytes) -> dict:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"body": raw.decode(errors="replace")}
    return value if isinstance(value, dict) else {"body": value}


def _print(status: int, answer: dict) -> None:
    click.echo(f"HTTP {status}")
    click.echo(json.dumps(answer, indent=2))

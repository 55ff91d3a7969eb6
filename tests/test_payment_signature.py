"""The payment provider's `Payment-Signature`: t=<unix s>,v1=<hex HMAC-SHA256(secret as UTF-8,
"<t>.<raw body>")>, exactly one v1, |now − t| ≤ 300 s, the body's orderId the path's; anything
else 401 BAD_SIGNATURE, never another error."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plumbing import settings as app_settings
from tests.test_production_settings import ENDPOINTS, PRODUCTION
from web.payment_signature import sign, verify
from web.problems import Problem

SECRET = "whsec-test-0123456789"
ORDER = "0b6f7d1e-9c4a-4d7e-8f61-2a1b3c4d5e6f"
T = 1_800_000_000
BODY = json.dumps(
    {"orderId": ORDER, "paymentId": "pay_1", "amount": "100.00", "currency": "USD"}
).encode()


def mac_hex(secret: bytes, t: str, body: bytes) -> str:
    """The contract's HMAC, computed here independently of the module under test."""
    return hmac.new(secret, t.encode() + b"." + body, hashlib.sha256).hexdigest()


def header(body: bytes = BODY, secret: str = SECRET, t: int = T) -> str:
    return f"t={t},v1={mac_hex(secret.encode('utf-8'), str(t), body)}"


def refused(
    value: str | None,
    body: bytes = BODY,
    order: str = ORDER,
    secret: str = SECRET,
    now: float = T,
) -> str:
    with pytest.raises(Problem) as caught:
        verify(value, body, order, secret, now=now)
    assert (caught.value.status, caught.value.code) == (401, "BAD_SIGNATURE")
    return caught.value.detail


def test_a_valid_signature_passes():
    verify(header(), BODY, ORDER, SECRET, now=T)


def test_sign_makes_the_contracts_header():
    assert sign(BODY, SECRET, T) == header()
    verify(sign(BODY, SECRET, T), BODY, ORDER, SECRET, now=T)


def test_another_secret_is_refused():
    refused(header(secret="whsec-test-0123456788"))


def test_a_body_changed_by_one_byte_is_refused():
    changed = BODY.replace(b'"100.00"', b'"100.01"')
    assert len(changed) == len(BODY) and changed != BODY
    refused(header(), body=changed)


@pytest.mark.parametrize("offset", [-301, 301, -(10**6), 10**6])
def test_t_more_than_300_s_from_now_is_refused(offset):
    assert "300 s" in refused(header(t=T + offset))


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_t_at_most_300_s_from_now_passes(offset):
    verify(header(t=T + offset), BODY, ORDER, SECRET, now=T)


def test_the_window_takes_fractions_of_now_into_account():
    refused(header(t=T - 300), now=T + 0.001)
    verify(header(t=T - 300), BODY, ORDER, SECRET, now=T - 0.001)


def test_two_v1_are_refused_even_when_both_are_right():
    good = header()
    refused(good + "," + good.split(",")[1])
    other = mac_hex(b"another", str(T), BODY)
    refused(f"{good},v1={other}")
    refused(f"t={T},v1={other},{good.split(',')[1]}")


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        f"t={T}",  # no v1
        f"t={T},v0={mac_hex(SECRET.encode(), str(T), BODY)}",  # another scheme only
        "v1=" + "0" * 64,  # no t
    ],
)
def test_a_missing_part_is_refused(value):
    refused(value)


def test_other_schemes_beside_v1_are_ignored():
    verify(f"{header()},v0=whatever", BODY, ORDER, SECRET, now=T)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "t=1800000000;v1=00",
        f"t={T},t={T},v1={'0' * 64}",  # two t
        f"t=,v1={'0' * 64}",
        f"t=-{T},v1={'0' * 64}",
        f"t=+{T},v1={'0' * 64}",
        f"t=1.8e9,v1={'0' * 64}",
        f"t=1_800_000_000,v1={'0' * 64}",
        f"t=١٨٠٠٠٠٠٠٠٠,v1={'0' * 64}",  # Arabic-Indic digits: int() would take them
        f"t={'9' * 40},v1={'0' * 64}",
        f"t={T},v1=",
        f"t={T},v1={'0' * 63}",  # too short
        f"t={T},v1={'0' * 66}",  # too long
        f"t={T},v1={'g' * 64}",  # not hex
        f"t={T},v1={'é' * 64}",
        f"t={T},v1=" + "０" * 64,  # full-width digits
    ],
)
def test_a_malformed_header_is_refused(value):
    refused(value)


def test_upper_case_hex_is_the_same_digest():
    t, v1 = header().split(",")
    verify(f"{t},{v1.upper().replace('V1=', 'v1=')}", BODY, ORDER, SECRET, now=T)


def test_spaces_around_the_parts_are_allowed():
    t, v1 = header().split(",")
    verify(f" {t} , {v1} ", BODY, ORDER, SECRET, now=T)


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"orderId": "another-order"}).encode(),
        json.dumps({"orderId": ORDER.upper()}).encode(),  # ids compare exactly
        json.dumps({"orderId": ORDER + " "}).encode(),
        json.dumps({"paymentId": "pay_1"}).encode(),  # no orderId
        json.dumps({"orderId": None}).encode(),
        json.dumps({"orderId": [ORDER]}).encode(),
    ],
)
def test_a_signed_body_naming_another_order_is_refused(body):
    assert "another order" in refused(header(body), body=body)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe not utf-8",
        b'{"orderId": "\xe9"}',  # latin-1, not UTF-8
        b"not json",
        b"[1, 2]",
        b'"just a string"',
        b'{"orderId": NaN}',
        b"[" * 100_000 + b"]" * 100_000,  # nested too deep for the parser
        b'{"orderId": "' + ORDER.encode() + b'"',  # cut short
        b'{"orderId": "%s", "orderId": "another"}' % ORDER.encode(),  # a name given twice
    ],
)
def test_a_signed_body_that_is_not_a_json_object_is_401(body):
    refused(header(body), body=body)


def test_the_secret_is_taken_as_utf8():
    secret = "sécret-ключ-🔑"
    by_hand = mac_hex(secret.encode("utf-8"), str(T), BODY)
    verify(f"t={T},v1={by_hand}", BODY, ORDER, secret, now=T)
    assert sign(BODY, secret, T) == f"t={T},v1={by_hand}"
    as_utf16 = mac_hex(secret.encode("utf-16-le"), str(T), BODY)
    refused(f"t={T},v1={as_utf16}", secret=secret)
    accented = "sécret"  # a key Latin-1 can encode too, to other bytes than UTF-8's
    as_latin1 = mac_hex(accented.encode("latin-1"), str(T), BODY)
    refused(f"t={T},v1={as_latin1}", secret=accented)
    verify(f"t={T},v1={mac_hex(accented.encode(), str(T), BODY)}", BODY, ORDER, accented, now=T)


def test_no_secret_refuses_everything():
    """An empty key is a key anyone can sign with."""
    assert "no webhook secret" in refused(header(secret=""), secret="")


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.none(), st.text(max_size=200)), body=st.binary(max_size=200))
def test_any_input_is_accepted_or_401(value, body):
    try:
        verify(value, body, ORDER, SECRET, now=T)
    except Problem as problem:
        assert (problem.status, problem.code) == (401, "BAD_SIGNATURE")


def test_production_refuses_the_development_secret(monkeypatch):
    for name in ENDPOINTS:
        monkeypatch.delenv(name, raising=False)
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", app_settings.DEVELOPMENT_PAYMENT_WEBHOOK_SECRET)
    with pytest.raises(app_settings.SettingsError, match="PAYMENT_WEBHOOK_SECRET is the devel"):
        app_settings.load()
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", "a-production-secret")
    assert app_settings.load().payment_webhook_secret == "a-production-secret"
    monkeypatch.delenv("PAYMENT_WEBHOOK_SECRET")
    assert app_settings.load().payment_webhook_secret == ""  # optional: webhooks refused


def test_development_accepts_the_development_secret(monkeypatch):
    monkeypatch.setenv("APP_ENV", "development")
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", app_settings.DEVELOPMENT_PAYMENT_WEBHOOK_SECRET)
    assert (
        app_settings.load().payment_webhook_secret
        == app_settings.DEVELOPMENT_PAYMENT_WEBHOOK_SECRET
    )

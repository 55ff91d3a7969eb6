"""Input edges of the HTTP API: media types (415), duplicate names in a JSON body, bodies over
16 KiB sent chunked (413), and the answers gunicorn gives by itself (414, 431), the last two
through a real gunicorn on a raw socket."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.support.processes import gunicorn
from tests.support.tokens import operator
from tests.test_purchase_api import GOOD, URL, assert_problem, sold_bits

BODY = json.dumps(GOOD).encode()


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what a cross-site form posts without a CORS preflight
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
        "",
        "application/json; charset=iso-8859-1",
        "application/json; charset=utf-16",
        "application/merge-patch+json",
        "application/problem+json",
        "application/jsonx",
        "json",
    ],
)
def test_a_body_that_is_not_application_json_is_415_and_sells_nothing(
    client, redis_client, content_type
):
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post(URL, data=BODY, headers=headers)
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert response.headers["Accept"] == "application/json"
    assert sold_bits(redis_client) == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        'Application/JSON; charset="UTF-8"',
        "application/json;charset=UTF-8",
    ],
)
def test_application_json_with_or_without_utf8_charset_buys(client, content_type):
    response = client.post(URL, data=BODY, headers={"Content-Type": content_type})
    assert response.status_code == 201, response.get_data(as_text=True)


def test_a_post_without_a_body_needs_no_content_type(client):
    """No body, no media type to check: the view answers (here: not a JSON object)."""
    assert_problem(client.post(URL), 400, "MALFORMED_JSON")
    assert_problem(client.post(URL, headers={"Content-Type": "text/plain"}), 400, "MALFORMED_JSON")


def test_unknown_paths_and_methods_answer_before_the_media_type(client):
    assert_problem(client.post("/nowhere", data=BODY, content_type="text/plain"), 404, "NOT_FOUND")
    response = client.put(URL, data=BODY, content_type="text/plain")
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (
            b'{"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "1",'
            b' "column": "2"}',
            "column",
        ),
        (
            b'{"venueId": "Venue1", "venueId": "Venue1", "eventId": "Event1", "zoneId": 1,'
            b' "row": "A", "column": "1"}',
            "venueId",
        ),
    ],
)
def test_a_name_given_twice_is_400_and_sells_nothing(client, redis_client, raw, name):
    response = client.post(URL, data=raw, content_type="application/json")
    body = assert_problem(response, 400, "VALIDATION_FAILED")
    assert list(body["errors"]) == [name]
    assert sold_bits(redis_client) == 0


# --- through gunicorn: what the Flask test client cannot show ---------------------------------


@pytest.fixture(scope="module")
def server(database) -> Iterator[tuple[str, int]]:
    """The web processes in a real gunicorn: (host, port)."""
    with gunicorn({}) as base:
        url = urlsplit(base)
        yield url.hostname, url.port


def chunked_post(server: tuple[str, int], body: bytes) -> tuple[int, str, dict]:
    """POST the body with Transfer-Encoding: chunked, in 1000-byte chunks."""
    conn = http.client.HTTPConnection(*server, timeout=30)
    try:
        chunks = (body[i : i + 1000] for i in range(0, len(body), 1000))
        conn.request(
            "POST",
            URL,
            body=chunks,
            headers={"Content-Type": "application/json", **operator()},
            encode_chunked=True,
        )
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), json.loads(response.read())
    finally:
        conn.close()


def padded(size: int) -> bytes:
    """The good purchase body, padded with spaces to exactly `size` bytes."""
    return BODY[:-1] + b" " * (size - len(BODY)) + b"}"


def test_a_chunked_body_over_16_kib_is_413(server, client, redis_client):
    status, content_type, body = chunked_post(server, padded(16 * 1024 + 1))
    assert (status, content_type, body["code"]) == (
        413,
        "application/problem+json",
        "PAYLOAD_TOO_LARGE",
    )
    assert sold_bits(redis_client) == 0
    status, _, body = chunked_post(server, b'{"venueId": "' + b"x" * 100_000 + b'"}')
    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_a_chunked_body_of_exactly_16_kib_is_read_whole(server, client):
    status, _, body = chunked_post(server, padded(16 * 1024))
    assert status == 201, body
    assert (body["row"], body["column"]) == ("A", "1")


def raw_exchange(server: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are, read the answer until gunicorn closes the connection."""
    with socket.create_connection(server, timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URI_TOO_LONG"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "HEADERS_TOO_LARGE",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-N: 1\r\n" * 200 + b"\r\n",
            431,
            "HEADERS_TOO_LARGE",
        ),
        (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "BAD_REQUEST"),
    ],
)
def test_gunicorns_own_answers_are_problem_json(server, request_bytes, status, code):
    got, headers, body = raw_exchange(server, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (status, code)
    assert {"type", "title", "detail"} <= problem.keys()


def test_a_body_on_a_get_is_not_read(client):
    """Only POST, PUT and PATCH bodies mean something here; a GET's is ignored, as its spec says."""
    response = client.get(
        "/purchase/api/v1/events/Event1/availability", data=b"x" * 100, content_type="text/plain"
    )
    assert response.status_code == 200

"""The parts of `make bench` that could break without anyone noticing: the stand-in SNS endpoint
must answer what botocore sends, the relay's PublishBatch included (or the bench would measure
errors), and time each message it acknowledged (the relay's latency), wrk's
script must send exactly the attempts asked for, the 1M-sold state must be the one the purchase
script reads, and the result line must keep its form."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from datetime import datetime
from decimal import Decimal

import boto3
import pytest
import report
import seating
import sns_standin
import wrk_load
from botocore.exceptions import ClientError
from sqlalchemy import select

import models
from models import seats
from models.catalog import ZoneSpec, row_label
from models.tables import Ticket
from models.tickets import is_ticket_id
from plumbing import settings
from tests.support.factories import sell
from tests.support.outbox import stream_lengths
from tests.support.processes import Relay, wait_until
from tests.support.tokens import operator


def sns_client(url: str):
    return boto3.client("sns", endpoint_url=url)


def test_standin_acknowledges_publish_and_topic_attributes(standin):
    state, url = standin
    sns = sns_client(url)
    arn = settings.get().topic_arn
    answer = sns.publish(
        TopicArn=arn,
        Message='{"a": "b & c = d"}',
        MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}},
    )
    assert answer["MessageId"]
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["TopicArn"] == arn
    assert state.stats()["messages"] == 1
    assert state.stats()["calls"] == {"Publish": 1, "GetTopicAttributes": 1}


def test_standin_acknowledges_each_batch_entry_and_fails_only_the_injected(standin):
    state, url = standin
    sns = sns_client(url)
    arn = settings.get().topic_arn
    entries = [{"Id": f"entry-{i}", "Message": f"message {i}"} for i in range(10)]
    answer = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries)
    assert [e["Id"] for e in answer["Successful"]] == [e["Id"] for e in entries]
    assert answer.get("Failed", []) == []

    state.reset(record=True)
    state.fail_next = 1
    answer = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=entries[:3])
    assert [e["Id"] for e in answer["Failed"]] == ["entry-0"]
    assert answer["Failed"][0]["SenderFault"] is False
    assert [e["Id"] for e in answer["Successful"]] == ["entry-1", "entry-2"]
    assert state.recorded == ["message 1", "message 2"]
    assert state.stats()["messages"] == 2 and state.stats()["failed"] == 1


def test_standin_refuses_what_it_does_not_serve(standin):
    state, url = standin
    sns = sns_client(url)
    with pytest.raises(ClientError, match="NotFound"):
        sns.publish(TopicArn=settings.get().topic_arn + "-other", Message="m")
    with pytest.raises(ClientError, match="InvalidAction"):
        sns.list_topics()
    too_many = [{"Id": f"e{i}", "Message": "m"} for i in range(11)]
    with pytest.raises(ClientError, match="TooManyEntriesInBatchRequest"):
        sns.publish_batch(TopicArn=settings.get().topic_arn, PublishBatchRequestEntries=too_many)
    assert state.stats()["messages"] == 0 and state.stats()["errors"] == 3


def test_the_relay_takes_a_sale_to_the_standin_once(
    standin, client, redis_client, no_session_relay
):
    """What the bench runs beside the purchase API: the real relay (the Procfile's command) with
    SNS's endpoint on the stand-in. A sale made through the purchase API reaches the stand-in
    through botocore's PublishBatch: the task of its PAID order of one seat, decodable, the ticket
    inside (the answer's seat, id and createdOn), once, with
    the moment it was acknowledged after the ticket's createdOn; the outbox is empty after."""
    from celeryconfig import TaskNames

    state, url = standin
    state.reset(record=True)
    with Relay.start(env={"AWS_ENDPOINT_URL_SNS": url}):
        answer = client.post(
            "/purchase/api/v1/tickets",
            json={"venueId": "Venue1", "eventId": "Event1", "zoneId": 1, "row": "A", "column": "1"},
        )
        assert answer.status_code == 201
        ticket = answer.get_json()
        wait_until(
            lambda: stream_lengths(redis_client) == 0 and state.stats()["messages"] >= 1,
            30,
            "the sale relayed to the stand-in",
        )
    assert state.stats()["calls"] == {"PublishBatch": 1}
    assert state.stats()["messages"] == 1 and state.stats()["errors"] == 0
    task = sns_standin.decode_task(state.recorded[0])
    assert task["task"] == TaskNames.APPLY_ORDER
    order = task["kwargs"]["order"]
    assert (order["status"], order["version"], task["id"]) == ("PAID", 1, f"{order['orderId']}:1")
    [seat] = sns_standin.sale_tickets(task)
    assert {k: seat[k] for k in ticket if k in seat} == {k: ticket[k] for k in seat if k in ticket}
    assert seat["ticketId"] == ticket["ticketId"] and seat["createdOn"] == ticket["createdOn"]
    [[acked_at, ticket_id, created]] = state.tickets()
    assert ticket_id == ticket["ticketId"]
    assert created == datetime.fromisoformat(ticket["createdOn"].replace("Z", "+00:00")).timestamp()
    assert created <= acked_at


def test_standin_times_each_acknowledged_message(standin):
    """The relay's latency is read from these times: one per message, in order, none for a
    failed entry, and a message that is no ticket task gives no ticket."""
    state, url = standin
    state.reset(record=True)
    state.fail_next = 1
    before = time.time()
    entries = [{"Id": f"e{i}", "Message": f"not a task {i}"} for i in range(3)]
    sns_client(url).publish_batch(
        TopicArn=settings.get().topic_arn, PublishBatchRequestEntries=entries
    )
    after = time.time()
    assert state.recorded == ["not a task 1", "not a task 2"]
    times = state.tickets()
    assert [row[1:] for row in times] == [[None, None], [None, None]]
    assert all(before <= row[0] <= after for row in times)


def test_result_line_has_the_issues_form():
    line = report.result_line(
        purchase_rps=2240.4,
        ceiling_rps=2800.2,
        p50_ms=21.04,
        p99_ms=48.96,
        reject_p50_ms=3.21,
        relay_p99_ms=87.44,
        worker_ms_per_ticket=0.874,
        lag_p99_ms=412.6,
        oversold=0,
    )
    assert line == (
        "bench: purchase 2240/s = 0.80 × ceiling (2800/s), p50 21.0 ms, p99 49.0 ms; "
        "reject p50 3.2 ms; relay p99 87.4 ms; worker 0.87 ms CPU/ticket; lag p99 413 ms; "
        "oversold 0"
    )
    missing = report.result_line(
        purchase_rps=None,
        ceiling_rps=2800,
        p50_ms=None,
        p99_ms=float("nan"),
        reject_p50_ms=None,
        relay_p99_ms=None,
        worker_ms_per_ticket=None,
        lag_p99_ms=None,
        oversold=None,
    )
    assert missing == (
        "bench: purchase n/a/s = n/a × ceiling (2800/s), p50 n/a ms, p99 n/a ms; "
        "reject p50 n/a ms; relay p99 n/a ms; worker n/a ms CPU/ticket; lag p99 n/a ms; "
        "oversold n/a"
    )


def test_the_flash_sale_is_exact_only_with_one_entry_and_one_message_per_sale():
    """The bench's correctness verdict (its exit status): an outbox entry for a rejection, a
    sale not relayed, a ticket published twice or a message for a seat nobody owns fail it."""
    import dataclasses

    from load_phases import FlashSale

    result = wrk_load.LoadResult(
        requests=100, seconds=1.0, sent=100, p50_ms=1, p90_ms=1, p99_ms=1, p999_ms=1, max_ms=1,
        statuses={201: 10, 409: 90}, seats_sold=10,
    )  # fmt: skip
    exact = FlashSale(
        attempts=100,
        seats=10,
        result=result,
        redis_calls=100,
        outbox_appends=10,
        relayed=True,
        messages=10,
        published_seats=10,
        published_tickets=10,
        owners_published=True,
        published_tasks_ok=True,
        bitmap_sold=10,
        zone_left=0,
        event_sold=10,
    )
    assert exact.exact and exact.oversold == 0
    for change in (
        {"outbox_appends": 11},  # a rejection appended an entry
        {"relayed": False},
        {"messages": 11, "published_tickets": 10},  # a ticket published twice
        {"owners_published": False},
        {"redis_calls": 101},
    ):
        assert not dataclasses.replace(exact, **change).exact, change
    assert dataclasses.replace(exact, messages=11, published_seats=10).oversold == 1


def test_verdicts_say_by_how_much_a_target_is_missed():
    assert report.at_least(0.85, 0.8) == "met"
    assert report.at_least(0.6, 0.8) == "MISSED by 25%"
    assert report.at_most(60, 50) == "MISSED by 20%"
    assert report.at_most(None, 50) == "n/a"


def test_wrk_result_line_is_parsed():
    out = (
        "Running 1s test\n"
        'BENCH_RESULT {"requests":10,"duration_us":2000000,"sent":11,"p50_us":1500,'
        '"p90_us":2000,"p99_us":3000,"p999_us":3100,"max_us":3200,"mean_us":1600.5,'
        '"errors":{"connect":0,"read":0,"write":0,"status":9,"timeout":0},'
        '"statuses":{"201":1,"409":9},"codes":{"SEAT_TAKEN":9},"seats_sold":1,"double_sales":0}\n'
    )
    result = wrk_load.parse_result(out)
    assert result.rate == 5.0
    assert result.p99_ms == 3.0
    assert result.statuses == {201: 1, 409: 9}
    assert result.failures == 9


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_flash_mode_sends_exactly_the_attempts_asked_for(standin):
    """Quota by delay(), the uncounted check call, and the early stop through SIGINT."""
    state, url = standin
    args = wrk_load.flash("V", "E", 1, 40, 100, 500, 10)
    args[1] = "/"  # the stand-in answers every POST (here: 400, no Action)
    result = wrk_load.run(shutil.which("wrk"), url, args, connections=16, seconds=60)
    assert result.requests == result.sent == 500
    assert result.seconds < 30
    assert state.stats()["calls"] == {"": 500}


class _Recorder:
    """A local HTTP server that answers 200 and keeps each request's method, path and headers."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append((self.command, self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorder():
    server = _Recorder()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_purchases_carry_the_headers_of_purchase_requests(recorder, monkeypatch):
    """A header added in ops/bench/purchase_requests.py reaches every purchase wrk sends."""
    import purchase_requests

    extra = {"Content-Type": "application/json", "Authorization": "Bearer bench-token"}
    monkeypatch.setattr(purchase_requests, "headers", lambda: extra)
    wrk = shutil.which("wrk")
    wrk_load.run(
        wrk, recorder.url, wrk_load.flash("V", "E", 1, 40, 10, 20, 2), connections=2, seconds=30
    )
    wrk_load.run(wrk, recorder.url, wrk_load.seats("V", "E", 1, 40, 0, 9), connections=1, seconds=1)
    posts = [(path, headers) for method, path, headers in recorder.seen if method == "POST"]
    assert len(posts) > 20
    assert all(path == purchase_requests.PATH for path, _ in posts)
    assert all(h.get("Authorization") == "Bearer bench-token" for _, h in posts)
    assert all(h.get("Content-Type") == "application/json" for _, h in posts)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_paced_mode_keeps_to_its_rate(recorder):
    wrk = shutil.which("wrk")
    result = wrk_load.run(wrk, recorder.url, wrk_load.paced("/x", 50, 5), connections=5, seconds=2)
    assert 60 <= result.requests <= 110  # about 50/s for 2 s; unpaced it would be thousands
    assert {path for _, path, _ in recorder.seen} == {"/x"}


def test_sold_prefix_is_the_state_the_purchase_script_reads(redis_client):
    """The flatness phase writes 'n seats sold' straight into Redis: it must agree with
    models/seats.py's key layout, bit order and counters."""
    s = seating.Seats("BenchVenue", f"BenchTest{uuid.uuid4().hex[:6]}", 1, rows=4, columns=16)
    seating.set_sold_prefix(redis_client, s, 32)
    assert seating.sold_count(redis_client, s) == (32, 32, 32)
    zone = ZoneSpec(1, s.rows, s.columns, Decimal("1.00"), s.capacity, s.columns)
    scripts = seats.scripts_for(redis_client)
    assert sell(scripts, s.event, zone, 1, 16) == "SEAT_TAKEN"  # row B, the last sold seat
    assert sell(scripts, s.event, zone, 2, 1) == "OK"  # row C, the first free one
    assert redis_client.hget(seats.zone_keys(s.event, 1)[1], row_label(2)) == "15"
    assert seating.sold_count(redis_client, s) == (33, 31, 33)
    with pytest.raises(ValueError):
        seating.set_sold_prefix(redis_client, s, 20)  # not whole rows


def test_the_read_phase_generates_valid_distinct_tickets_and_the_recount_counts_them(
    clean_tickets, app
):
    """The read phase's tickets are made by SQL in MariaDB, not by the projection: they must be
    tickets the API reads back (distinct seats of the zone, uuid-shaped ids, newest first), and
    the recount must give the totals that count and revenue answer."""
    import reads
    from projection import connect

    from models import totals

    s = seating.Seats("Venue1", "Event1", 1, rows=30, columns=40)
    db = connect(settings.get().database_url)
    db.autocommit(False)
    reads.insert_tickets(db, s, 1_000, tag=7, chunk=300)
    db.close()
    with models.writer().connect() as conn:
        rows = conn.execute(select(Ticket)).all()
        assert totals.recount(conn, "Event1").tickets == 1_000
    assert {(t.seat_row, str(t.seat_column)) for t in rows} == {s.seat(i) for i in range(1_000)}
    assert len({t.ticket_id for t in rows}) == 1_000 and all(
        is_ticket_id(t.ticket_id) for t in rows
    )
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = operator()["Authorization"]
    page = client.get("/query/api/v1/tickets?eventId=Event1&limit=2").get_json()
    assert [(t["row"], t["column"]) for t in page] == [s.seat(999), s.seat(998)]
    assert client.get("/query/api/v1/tickets/count/Event1").get_json()["count"] == 1_000
    revenue = client.get("/query/api/v1/tickets/revenue/Venue1/Event1").get_json()["revenue"]
    assert revenue == "50000.00"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_rotate_mode_times_each_path_on_its_own():
    """The read phase's verdict compares the latency of paths asked in turn on one connection:
    every path gets its share of the requests, each timed apart (a slower path, a higher p50)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection, as wrk holds it
        disable_nagle_algorithm = True  # no 40 ms wait for the body after the headers

        def do_GET(self) -> None:
            asked.append(self.path)
            time.sleep({"/a": 0.001, "/b": 0.008, "/c": 0.003}[self.path])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        args = wrk_load.rotate("/a", "/b", "/c")
        result = wrk_load.run(shutil.which("wrk"), url, args, connections=1, seconds=2)
    finally:
        server.shutdown()
        server.server_close()
    a, b, c = result.paths
    assert result.failures == 0
    assert abs(a.answers - b.answers) <= 1 and abs(b.answers - c.answers) <= 1
    assert a.answers + b.answers + c.answers == result.requests
    assert asked[:6] == ["/a", "/b", "/c", "/a", "/b", "/c"]
    assert a.p50_ms < c.p50_ms < b.p50_ms
    assert 8 <= b.p50_ms < 30


def test_box_office_states_are_written_as_the_scripts_leave_them(redis_client):
    """The box office phase writes 95 %-sold zones straight into Redis: the seat map script
    must read back the bitmap written, and each row's and the zone's counters must match it."""
    import box_office

    s = seating.Seats("BenchVenue", f"BoxState{uuid.uuid4().hex[:6]}", 1, rows=7, columns=13)
    bitmap = box_office.random_bitmap(s, 60)
    left = box_office.write_state(redis_client, s, bitmap)
    assert seating.sold_count(redis_client, s) == (60, 31, 60)  # no bit past the last seat
    grid, counters = seats.scripts_for(redis_client).zone_state(s.event, box_office.zone_spec(s))
    assert "".join(grid) == box_office.bits_of(bitmap, s)
    assert left == [row.count("0") for row in grid]
    assert counters == {row_label(i): n for i, n in enumerate(left)} | {"zone": 31}
    front = seating.Seats("BenchVenue", f"BoxFront{uuid.uuid4().hex[:6]}", 1, rows=4, columns=16)
    assert box_office.write_state(redis_client, front, box_office.front_bitmap(front, 32)) == [
        0, 0, 16, 16
    ]  # fmt: skip
    assert seating.sold_count(redis_client, front) == (32, 32, 32)
    plan = box_office.placements(s, 20)
    assert [len(cells) for cells in plan[:5]] == [1, 2, 3, 4, 1]
    assert all(len({row for row, _ in cells}) == 1 for cells in plan)  # never across rows
    assert all(column <= s.columns for cells in plan for _, column in cells)
    taken = [cell for cells in plan for cell in cells]
    assert len(taken) == len(set(taken))


def test_the_box_office_phase_leaves_its_states_as_found_and_frees_every_expired_hold(
    redis_client, no_session_relay
):
    """The phase on small zones, for correctness only: best available chooses the block
    predicted from the bitmap written, every sample leaves the state as it found it (the
    purchases aside), and the sweeper's drain frees every hold that expired at once."""
    import json

    import box_office

    tag = uuid.uuid4().hex[:6]
    front = seating.Seats("BenchVenue", f"BoxFront{tag}", 1, rows=40, columns=40)
    scattered = seating.Seats("BenchVenue", f"BoxRandom{tag}", 1, rows=40, columns=40)
    expiry = seating.Seats("BenchVenue", f"BoxExpiry{tag}", 1, rows=20, columns=40)
    result = box_office.measure(
        redis_client,
        front,
        scattered,
        expiry,
        holds=250,
        share=0.75,
        rounds=2,
        per_round=5,
        say=lambda _: None,
    )
    f, s, e = result.front, result.random, result.expiry
    assert (f.sold, f.row, f.columns) == (1200, 30, (19, 22))  # row AE, the block at the centre
    assert (f.scanned_cold, f.decoded_cold, f.rows_with_block) == (31, 1, 10)
    bits = box_office.bits_of(box_office.random_bitmap(scattered, 1200), scattered)
    assert s.row == box_office.first_block_row(bits, scattered, 4) and s.scanned_cold == s.row + 1
    assert {k: len(v) for k, v in f.ms.items()} == {
        "purchase": 10, "warm": 10, "chosen": 10, "cold": 10
    }  # fmt: skip
    for case, chosen in ((front, f.row), (scattered, s.row)):
        assert redis_client.hget(seats.keys.front_key(case.event, 1), "4") == str(chosen)
        assert seating.sold_count(redis_client, case) == (1210, 390, 1210)  # + 10 purchases
        assert redis_client.bitcount(seats.keys.held_key(case.event, 1)) == 0
        assert redis_client.zcard(seats.keys.holds_key(case.event)) == 0
        assert redis_client.hlen(seats.owners_key(case.event, 1)) == 10
        assert sorted(redis_client.hvals(seats.buyers_key(case.event))) == ["1"] * 10
    blocks = box_office.without_blocks(box_office.random_bitmap(scattered, 1200), scattered)
    assert result.full.rows == 40 and len(result.full.ms) == len(result.full.again_ms) == 3
    no_block = seating.Seats("BenchVenue", f"BoxRandom{tag}NoBlock", 1, rows=40, columns=40)
    assert (
        seating.sold_count(redis_client, no_block)[0]
        == result.full.sold
        == bin(int.from_bytes(blocks, "big")).count("1")
    )  # the refused holds changed nothing
    assert box_office.first_block_row(box_office.bits_of(blocks, scattered), scattered, 4) is None
    assert (e.holds, e.seats, e.expired_entries) == (250, 623, 250)
    assert len(e.call_ms) == 3 and e.problems == [] and e.clean  # 100, 100, 50
    assert [row[3] for row in box_office.verdicts(result)][2] == "met"
    assert "rows scanned" in box_office.render(result)
    assert json.loads(json.dumps(box_office.figures(result)))["expiry"]["calls"] == 3

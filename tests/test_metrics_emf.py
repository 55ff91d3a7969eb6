"""The service's own Prometheus numbers as CloudWatch embedded metric format (EMF) lines: the
lines for known samples (deltas, histogram fields, dimensions, the `_aws` block as the EMF
specification defines it), and a real gunicorn and a real Celery worker writing them, each
process group's samples added up once."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
import requests
from aws_resources import create_messaging
from prometheus_client import multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

import models
from models.tables import Ticket
from plumbing import emf, settings
from tests.support.aws import direct_sender
from tests.support.factories import ticket_message
from tests.support.processes import Worker, gunicorn, wait_until
from tests.support.tokens import operator
from tests.test_deploy_alarms import matches
from tests.test_terraform import MODULES, config

NAMESPACE = "Ticketing/test"

# The EMF specification (CloudWatch User Guide, "Specification: Embedded metric format") as a
# JSON schema: the root has an `_aws` object with an integer Timestamp (ms since the epoch) and
# an array of MetricDirectives; a directive has a Namespace, a non-empty array of DimensionSets
# (each at most 9 keys) and at most 100 MetricDefinitions (Name, optional Unit from
# CloudWatch's list); objects the specification defines have no other members.
UNITS = [
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
]  # fmt: skip
NAME = {"type": "string", "minLength": 1, "maxLength": 255}
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "additionalProperties": False,
            "properties": {
                "Timestamp": {"type": "integer"},
                "CloudWatchMetrics": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": NAME,
                            "Dimensions": {
                                "type": "array",
                                "minItems": 1,
                                "items": {"type": "array", "maxItems": 9, "items": NAME},
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {"Name": NAME, "Unit": {"enum": UNITS}},
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def conforming(line: str) -> dict:
    """The document of one EMF line, checked against the specification: the schema, and every
    reference resolves to a root member (a string for a dimension, a number for a metric)."""
    document = json.loads(line)
    jsonschema.validate(document, EMF_SCHEMA)
    assert abs(document["_aws"]["Timestamp"] / 1000 - time.time()) < 600
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(document[key], str) and document[key], key
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            assert isinstance(value, int | float) and not isinstance(value, bool), metric
            assert math.isfinite(value)
    return document


def dimensions(document: dict) -> dict[str, str]:
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    (keys,) = directive["Dimensions"]
    return {key: document[key] for key in keys}


def metric_names(document: dict) -> list[str]:
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    return [m["Name"] for m in directive["Metrics"]]


def series(lines: list[str]) -> dict[tuple, float]:
    """{(metric, (dimension, value)…): value} over a flush's lines; each series once."""
    found: dict[tuple, float] = {}
    for line in lines:
        document = conforming(line)
        for name in metric_names(document):
            key = (name, *sorted(dimensions(document).items()))
            assert key not in found, key
            found[key] = document[name]
    return found


class Samples:
    """A registry whose samples the test sets (no process-wide metric is touched)."""

    def __init__(self) -> None:
        self.purchases: dict[tuple[str, str], float] = {}  # (code, ticket id) → total
        self.latency: list[tuple[str, float]] = []  # cumulative (le, count)
        self.latency_sum = 0.0
        self.depth: float | None = None
        self.fail = False

    def collect(self):
        if self.fail:
            raise RuntimeError("the registry broke")
        counter = CounterMetricFamily("ticketing_purchases", "", labels=["code", "ticket_id"])
        for (code, ticket), value in self.purchases.items():
            counter.add_metric([code, ticket], value)
        yield counter
        if self.latency:
            histogram = HistogramMetricFamily("ticketing_purchase_seconds", "")
            histogram.add_metric([], self.latency, sum_value=self.latency_sum)
            yield histogram
        if self.depth is not None:
            gauge = GaugeMetricFamily("ticketing_outbox_depth", "")
            gauge.add_metric([], self.depth)
            yield gauge


@pytest.fixture
def samples() -> Samples:
    return Samples()


@pytest.fixture
def emitter(samples) -> emf.Emitter:
    return emf.Emitter(samples, "purchase", NAMESPACE)


def test_counters_are_deltas_since_the_previous_flush(samples, emitter):
    samples.purchases = {("SOLD", "t1"): 3, ("SEAT_TAKEN", "t2"): 1}
    first = series(emitter.lines())
    assert first == {
        ("ticketing_purchases_total", ("Code", "SOLD"), ("Service", "purchase")): 3,
        ("ticketing_purchases_total", ("Code", "SEAT_TAKEN"), ("Service", "purchase")): 1,
        ("ticketing_purchases_total", ("Service", "purchase")): 4,  # every code added up
    }
    samples.purchases = {("SOLD", "t1"): 3, ("SOLD", "t3"): 2, ("SEAT_TAKEN", "t2"): 1}
    second = series(emitter.lines())
    assert second == {
        ("ticketing_purchases_total", ("Code", "SOLD"), ("Service", "purchase")): 2,
        ("ticketing_purchases_total", ("Code", "SEAT_TAKEN"), ("Service", "purchase")): 0,
        ("ticketing_purchases_total", ("Service", "purchase")): 2,
    }
    assert series(emitter.lines())[("ticketing_purchases_total", ("Service", "purchase"))] == 0
    # a counter that went down was reset (a new process group): all of it is new
    samples.purchases = {("SOLD", "t1"): 1}
    third = series(emitter.lines())
    assert third[("ticketing_purchases_total", ("Code", "SOLD"), ("Service", "purchase"))] == 1


def test_histograms_as_count_sum_and_quantiles_of_the_interval(samples, emitter):
    samples.latency = [("0.01", 50), ("0.1", 90), ("1.0", 100), ("+Inf", 100)]
    samples.latency_sum = 4.5
    first = series(emitter.lines())
    service = ("Service", "purchase")
    assert first[("ticketing_purchase_seconds_count", service)] == 100
    assert first[("ticketing_purchase_seconds_sum", service)] == 4.5
    assert first[("ticketing_purchase_seconds_p50", service)] == 0.01  # rank 50: top of bucket 1
    assert first[("ticketing_purchase_seconds_p99", service)] == pytest.approx(0.91)  # 9/10 of it
    # the next interval: 10 more observations, all between 1 and +Inf
    samples.latency = [("0.01", 50), ("0.1", 90), ("1.0", 100), ("+Inf", 110)]
    samples.latency_sum = 34.5
    second = series(emitter.lines())
    assert second[("ticketing_purchase_seconds_count", service)] == 10
    assert second[("ticketing_purchase_seconds_sum", service)] == 30
    # beyond the last finite bound: that bound, as Prometheus's histogram_quantile answers
    assert second[("ticketing_purchase_seconds_p99", service)] == 1.0
    # an idle interval: count and sum 0, no quantile (there is none)
    idle = series(emitter.lines())
    assert idle == {
        ("ticketing_purchase_seconds_count", service): 0,
        ("ticketing_purchase_seconds_sum", service): 0,
    }
    units = {
        m["Name"]: m["Unit"]
        for line in emitter.lines()
        for m in json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert units == {
        "ticketing_purchase_seconds_count": "Count",
        "ticketing_purchase_seconds_sum": "Seconds",
    }


def test_quantile_matches_histogram_quantile():
    buckets = [(0.1, 0.0), (0.2, 4.0), (0.4, 8.0), (math.inf, 8.0)]
    assert emf.quantile(0.5, buckets) == pytest.approx(0.2)
    assert emf.quantile(0.75, buckets) == pytest.approx(0.3)
    assert emf.quantile(0.25, buckets) == pytest.approx(0.15)
    assert emf.quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None


def test_gauges_are_current_values_and_silent_series_cost_nothing(samples, emitter):
    samples.purchases = {("SOLD", "t1"): 0}  # registered, never incremented
    samples.latency = [("0.1", 0), ("+Inf", 0)]
    samples.depth = 0
    assert emitter.lines() == []
    samples.depth = 7
    assert series(emitter.lines()) == {("ticketing_outbox_depth", ("Service", "purchase")): 7}
    samples.depth = 0  # once it moved, it stays visible: a gauge back at 0 is news
    assert series(emitter.lines()) == {("ticketing_outbox_depth", ("Service", "purchase")): 0}


def test_only_bounded_labels_become_dimensions(samples, emitter):
    many = {(f"CODE_{n}", f"ticket-{n}"): 1 for n in range(emf.MAX_DIMENSION_VALUES + 5)}
    samples.purchases = {**many, ("not a code!", "t"): 1}
    found = series(emitter.lines())
    codes = {dict(key[1:]).get("Code") for key in found}
    assert len(codes - {None, emf.OTHER}) == emf.MAX_DIMENSION_VALUES
    other = ("ticketing_purchases_total", ("Code", emf.OTHER), ("Service", "purchase"))
    assert found[other] == 6  # five codes over the cap and the malformed one, added up
    assert found[("ticketing_purchases_total", ("Service", "purchase"))] == len(many) + 1
    for line in emitter.lines():
        assert "ticket" not in json.dumps(dimensions(json.loads(line))).lower()
        assert "ticket-" not in line  # ticket ids are added up away, never sent


def test_long_lines_are_split_below_pipe_buf():
    class Wide:
        def collect(self):
            for n in range(120):
                family = HistogramMetricFamily(f"ticketing_something_{n:03d}_seconds", "")
                family.add_metric([], [("0.1", 1), ("+Inf", 2)], sum_value=1.5)
                yield family

    lines = emf.Emitter(Wide(), "worker", NAMESPACE).lines()
    assert len(lines) > 1
    assert all(len(line.encode()) <= emf.LINE_LIMIT for line in lines)
    found = series(lines)
    assert len(found) == 120 * 4  # count, sum, p50, p99 of each, each exactly once


def test_lines_never_feed_the_log_metric_filters():
    """The alarms' metric filters match `$.outcome` in the JSON logs; an EMF line for the
    worker's CONFLICT outcome must not count as a conflict (dimensions are PascalCase)."""

    class Persisted:
        def collect(self):
            family = CounterMetricFamily("ticketing_persisted", "", labels=["outcome"])
            for outcome in ("INSERTED", "CONFLICT", "SERVICE_UNAVAILABLE", "OUTCOME_UNKNOWN"):
                family.add_metric([outcome], 1)
            yield family

    lines = emf.Emitter(Persisted(), "worker", NAMESPACE).lines()
    assert any('"Outcome":"CONFLICT"' in line for line in lines)
    filters = config("monitoring").resources
    patterns = [body["pattern"] for (kind, _), body in filters.items() if kind.endswith("filter")]
    assert len(patterns) >= 2
    for line in lines:
        for pattern in patterns:
            assert not matches(pattern, json.loads(line)), (pattern, line)


def test_the_namespace_is_terraforms():
    monitoring = config("monitoring")
    assert monitoring.locals["namespace"] == "Ticketing/${var.name}"
    assert monitoring.outputs["metrics_namespace"]["value"] == "${local.namespace}"
    environment = config().locals["common_environment"]
    assert environment["METRICS_NAMESPACE"] == "${module.monitoring.metrics_namespace}"
    assert environment["METRICS_EMF_SECONDS"] == "${var.metrics_emf_seconds}"
    assert config().variables["metrics_emf_seconds"]["default"] == 60


def emitted_names() -> set[str]:
    """The EMF metric names that the code's metrics (plumbing.metrics) turn into."""
    from prometheus_client.metrics import MetricWrapperBase

    from plumbing import metrics

    names = set()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._type == "counter":
            names.add(f"{metric._name}_total")
        elif isinstance(metric, MetricWrapperBase) and metric._type == "histogram":
            names |= {f"{metric._name}_{part}" for part in ("count", "sum", *emf.QUANTILES)}
    return names


def test_the_dashboard_and_the_alarm_name_metrics_the_code_sends():
    monitoring = config("monitoring")
    body = monitoring.resource("aws_cloudwatch_dashboard", "service")["dashboard_body"]
    assert 'templatefile("${path.module}/dashboard.json.tftpl"' in body
    template = (MODULES / "monitoring" / "dashboard.json.tftpl").read_text()
    dashboard = json.loads(
        template.replace("${namespace}", NAMESPACE).replace("${region}", "us-east-1")
    )
    referenced = set()
    for widget in dashboard["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):  # a SEARCH over one dimension's values
                expression = row[0]["expression"]
                (dimension,) = re.findall(r"\{" + NAMESPACE + r",(\w+),Service\}", expression)
                assert dimension in emf.DIMENSIONS.values()
                referenced |= set(re.findall(r'MetricName="(\w+)"', expression))
            else:
                assert row[0] == NAMESPACE and row[2] == "Service", row
                assert row[3] in ("purchase", "worker"), row
                referenced.add(row[1])
    alarm = monitoring.resource("aws_cloudwatch_metric_alarm", "purchase_latency_p99")
    assert (alarm["namespace"], alarm["dimensions"]) == (
        "${local.namespace}",
        {"Service": "purchase"},
    )
    referenced.add(alarm["metric_name"])
    assert referenced <= emitted_names(), referenced - emitted_names()


def test_failures_are_logged_and_swallowed(samples, emitter, caplog):
    samples.fail = True
    reporter = emf.Reporter(emitter, seconds=3600)
    with caplog.at_level(logging.ERROR, logger="plumbing.emf"):
        reporter.flush()
    assert "EMF metrics not written" in caplog.text
    samples.fail = False
    samples.purchases = {("SOLD", "t"): 1}
    read, write = os.pipe()
    os.close(read)  # nobody reads: every write fails with EPIPE
    reporter = emf.Reporter(emitter, seconds=3600, fd=write)
    reporter.flush()
    os.close(write)


def test_the_reporter_writes_one_line_per_write(samples, emitter):
    samples.purchases = {("SOLD", "t"): 2}
    read, write = os.pipe()
    reporter = emf.Reporter(emitter, seconds=0.05, fd=write)
    reporter.start()
    try:
        text = wait_until(lambda: os.read(read, 65536).decode(), 5, "an EMF line")
    finally:
        reporter.stop()
        os.close(write)
        os.close(read)
    first = text.splitlines()[0]
    assert conforming(first)["Service"] == "purchase"


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 0.0), ("", 0.0), ("0", 0.0), ("60", 60.0), ("0.5", 0.5)]
)
def test_the_interval_setting(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv("METRICS_EMF_SECONDS", raising=False)
    else:
        monkeypatch.setenv("METRICS_EMF_SECONDS", raw)
    assert settings.load().metrics_emf_seconds == expected


@pytest.mark.parametrize("raw", ["-1", "sixty"])
def test_a_bad_interval_is_refused(monkeypatch, raw):
    monkeypatch.setenv("METRICS_EMF_SECONDS", raw)
    with pytest.raises(settings.SettingsError, match="METRICS_EMF_SECONDS"):
        settings.load()


# --- real processes


def documents(text: str) -> list[dict]:
    """Every EMF document in a process's output. A line naming `_aws` must be one whole
    document: a line torn or interleaved with another process's output fails here."""
    return [conforming(line) for line in text.splitlines() if '"_aws"' in line]


def total(found: list[dict], metric: str, service: str, **labelled: str) -> float:
    """The sum of `metric` over the documents of exactly these dimensions."""
    wanted = {"Service": service, **labelled}
    return sum(d[metric] for d in found if metric in d and dimensions(d) == wanted)


@pytest.fixture
def messaging():
    """A topic and queue of the test's own."""
    return create_messaging(f"m{uuid.uuid4().hex[:8]}")


def purchases_by_process(directory: Path) -> dict[int, float]:
    """Each process's own purchase count, read from its file in the multi-process directory."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        counts[pid] = sum(
            sample.value
            for family in multiprocess.MultiProcessCollector.merge([str(path)])
            for sample in family.samples
            if sample.name == "ticketing_purchases_total"
        )
    return counts


def test_the_gunicorn_master_adds_up_every_workers_purchases_once(
    messaging, loaded_seats, tmp_path
):
    metrics_dir, log = tmp_path / "metrics", tmp_path / "gunicorn.log"
    env = {
        **messaging.env(),
        "METRICS_EMF_SECONDS": "1",
        "METRICS_NAMESPACE": NAMESPACE,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "GUNICORN_WORKERS": "2",
    }
    seats = iter(
        {"venueId": "Venue1", "eventId": "Event1", "zoneId": 4, "row": row, "column": str(c)}
        for row in "ABCDEFGHIJ"
        for c in range(1, 41)
    )
    with gunicorn(env, app="web:create_app('purchase')", log=log) as base:

        def buy(seat: dict) -> requests.Response:
            url = f"{base}/purchase/api/v1/tickets"
            # a connection each: the kernel hands them to whichever worker accepts first
            headers = {"Connection": "close", **operator()}
            return requests.post(url, json=seat, headers=headers, timeout=10)

        sold = 0
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(8) as pool:
            while sold < 20 or sum(1 for n in purchases_by_process(metrics_dir).values() if n) < 2:
                assert time.monotonic() < deadline, purchases_by_process(metrics_dir)
                answers = list(pool.map(buy, [next(seats) for _ in range(16)]))
                assert all(a.status_code == 201 for a in answers), answers[0].text
                sold += len(answers)
        by_process = purchases_by_process(metrics_dir)
        assert sorted(n > 0 for n in by_process.values()).count(True) == 2, by_process
        assert sum(by_process.values()) == sold

        def reported() -> list[dict]:
            return documents(log.read_text())

        wait_until(
            lambda: total(reported(), "ticketing_purchases_total", "purchase", Code="SOLD") == sold,
            30,
            f"EMF lines adding up to {sold} purchases",
        )
        time.sleep(3)  # three more intervals: a second reporter would have added its share
        found = reported()
        assert total(found, "ticketing_purchases_total", "purchase", Code="SOLD") == sold
        assert total(found, "ticketing_purchases_total", "purchase") == sold  # every code
        assert total(found, "ticketing_purchase_seconds_count", "purchase") == sold
        assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in found} == {NAMESPACE}
    # the master's last flush at shutdown adds nothing twice
    assert total(documents(log.read_text()), "ticketing_purchases_total", "purchase") == sold


@pytest.mark.worker
def test_the_worker_reports_its_persisted_tickets(messaging, clean_tickets):
    env = {**messaging.env(), "METRICS_EMF_SECONDS": "1", "METRICS_NAMESPACE": NAMESPACE}
    sender = direct_sender(messaging.queue_url, messaging.topic_arn.rsplit(":", 1)[-1])
    tickets = [ticket_message(zoneId=5, row="M", column=str(c)) for c in range(1, 7)]
    with Worker.start(env) as worker:
        for ticket in [*tickets, tickets[0]]:  # the first one twice: one DUPLICATE
            task_id = ticket["ticketId"]
            sender.send_task(
                "tasks.tickets.persist_ticket", kwargs={"ticket": ticket}, task_id=task_id
            )

        def rows() -> int:
            ours = Ticket.ticket_id.in_([t["ticketId"] for t in tickets])
            with models.writer().connect() as conn:
                return conn.execute(select(func.count()).where(ours)).scalar_one()

        wait_until(lambda: worker.count("persisted: DUPLICATE") == 1 and rows() == 6, 60, "rows")

        def reported(outcome: str | None = None) -> float:
            labelled = {"Outcome": outcome} if outcome else {}
            found = documents(worker.log())
            return total(found, "ticketing_persisted_total", "worker", **labelled)

        wait_until(lambda: reported() == 7, 30, "EMF lines adding up to 7 persist outcomes")
        assert reported("INSERTED") == 6
        assert reported("DUPLICATE") == 1
        found = documents(worker.log())
        assert total(found, "ticketing_projection_lag_seconds_count", "worker") == 6  # new rows
        assert not any(d.get("logger") or d.get("message") for d in found)  # not wrapped in logs


@pytest.fixture(autouse=True)
def _no_reporter_leaks() -> Iterator[None]:
    """Unit tests build their own reporters; none runs in the test process itself."""
    yield
    assert emf._reporter is None

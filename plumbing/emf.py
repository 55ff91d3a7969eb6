"""A process group's Prometheus samples as CloudWatch embedded metric format (EMF) lines.

On ECS the awslogs driver already ships every stdout line to CloudWatch Logs, and CloudWatch Logs
turns a JSON line with an `_aws` member into metrics: no agent, no sidecar, no IAM permission.
One thread per process group (the gunicorn master, the Celery worker's main process) reads the
multi-process registry every METRICS_EMF_SECONDS, so every gunicorn worker's and pool thread's
samples are added up once, not once per process.

What the lines carry (namespace METRICS_NAMESPACE, dimension `Service`):
- a counter as its increase since the previous flush (Unit Count). CloudWatch adds datapoints up,
  so the Sum over any period is the count in that period, over all tasks. A cumulative value
  would need a rate, which CloudWatch cannot take across several tasks and their restarts.
- a histogram as `<name>_count` and `<name>_sum` of the interval, and `_p50`, `_p99` estimated
  from the interval's bucket counts the way Prometheus's histogram_quantile does. An EMF value
  is a number or a list of samples, so the buckets themselves cannot travel.
- a gauge as its current value.
- the labels in DIMENSIONS as dimensions, at most MAX_DIMENSION_VALUES values each (then
  `other`); every other label is added up away, so no id can ever become a dimension: each
  dimension value is one more custom metric, billed per month. Every metric also has a series
  with all its labels added up (only `Service`), which alarms can use without knowing the values.

Series that never moved are not sent (every process imports every metric; a service pays only
for what it records). Each line is written with one os.write on stdout, under PIPE_BUF bytes: the
kernel never interleaves it with other processes' lines, and it bypasses sys.stdout (which Celery
may redirect into the logger). Failures are logged and swallowed: metrics never break a process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections import defaultdict
from typing import Any

from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Prometheus label → CloudWatch dimension. PascalCase like AWS's own dimensions, and never the
# name of a JSON log field: the metric filters match `$.outcome`, which these lines must not have.
DIMENSIONS = {"code": "Code", "outcome": "Outcome", "reason": "Reason"}
MAX_DIMENSION_VALUES = 20
OTHER = "other"
QUANTILES = {"p50": 0.5, "p99": 0.99}
LINE_LIMIT = 4096  # PIPE_BUF on Linux: a write up to this size to a pipe is atomic
_DIMENSION_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")

Dimensions = tuple[tuple[str, str], ...]
Datum = tuple[str, float, str]  # metric name, value, CloudWatch unit


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile of cumulative (upper bound, count) buckets, as histogram_quantile: linear
    within the bucket holding the rank; the highest finite bound when the rank is in +Inf."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def _unit(name: str) -> str:
    if name.endswith("_seconds"):
        return "Seconds"
    if name.endswith(("_total", "_size")):
        return "Count"
    return "None"


class Emitter:
    """Turns a registry's samples into EMF lines; counters and histograms as deltas since the
    previous `lines()` call."""

    def __init__(
        self,
        registry: Collector,
        service: str,
        namespace: str,
        dimensions: dict[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.service = service
        self.namespace = namespace
        self.dimensions = DIMENSIONS if dimensions is None else dimensions
        self._previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._admitted: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._moved: set[tuple[str, Dimensions]] = set()

    def lines(self, now: float | None = None) -> list[str]:
        """The EMF lines of the samples now (JSON, no newline), each under LINE_LIMIT bytes."""
        data: dict[Dimensions, list[Datum]] = defaultdict(list)
        for family in self.registry.collect():
            if family.type == "counter":
                self._counter(family, data)
            elif family.type == "histogram":
                self._histogram(family, data)
            elif family.type == "gauge":
                self._gauge(family, data)
        timestamp = int((time.time() if now is None else now) * 1000)
        out: list[str] = []
        for dims, datums in data.items():
            out.extend(self._serialize(dims, datums, timestamp))
        return out

    # --- samples → datums per dimension set

    def _delta(self, name: str, labels: dict[str, str], value: float, monotonic: bool) -> float:
        key = (name, tuple(sorted(labels.items())))
        previous = self._previous.get(key, 0.0)
        self._previous[key] = value
        if monotonic and value < previous:  # a reset: everything now is new
            return value
        return value - previous

    def _dims(self, metric: str, labels: dict[str, str]) -> Dimensions:
        """The series' dimensions: the allowed labels, a bounded number of values each."""
        dims = []
        for label, dimension in self.dimensions.items():
            if label not in labels:
                continue
            value = labels[label]
            admitted = self._admitted[(metric, label)]
            if value not in admitted:
                if not _DIMENSION_VALUE.match(value) or len(admitted) >= MAX_DIMENSION_VALUES:
                    value = OTHER
                else:
                    admitted.add(value)
            dims.append((dimension, value))
        return tuple(dims)

    def _series(self, metric: str, labels: dict[str, str]) -> list[Dimensions]:
        """The labelled series and the series with every label added up (the same if none)."""
        dims = self._dims(metric, labels)
        return [dims, ()] if dims else [()]

    def _keep(self, name: str, dims: Dimensions, moved: bool) -> bool:
        """Send a series from the first time it moves on; never before."""
        if moved:
            self._moved.add((name, dims))
        return (name, dims) in self._moved

    def _counter(self, family: Any, data: dict[Dimensions, list[Datum]]) -> None:
        totals: dict[tuple[str, Dimensions], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue  # _created: not a count
            delta = self._delta(sample.name, sample.labels, sample.value, monotonic=True)
            for dims in self._series(family.name, sample.labels):
                totals[(sample.name, dims)][0] += delta
                totals[(sample.name, dims)][1] += sample.value
        for (name, dims), (delta, value) in totals.items():
            if self._keep(name, dims, value != 0):
                data[dims].append((name, delta, "Count"))

    def _gauge(self, family: Any, data: dict[Dimensions, list[Datum]]) -> None:
        values: dict[tuple[str, Dimensions], float] = defaultdict(float)
        for sample in family.samples:
            for dims in self._series(family.name, sample.labels):
                values[(sample.name, dims)] += sample.value
        for (name, dims), value in values.items():
            if self._keep(name, dims, value != 0):
                data[dims].append((name, value, _unit(name)))

    def _histogram(self, family: Any, data: dict[Dimensions, list[Datum]]) -> None:
        name = family.name
        buckets: dict[Dimensions, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        sums: dict[Dimensions, float] = defaultdict(float)
        seen: dict[Dimensions, float] = defaultdict(float)
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            if sample.name == f"{name}_bucket":
                delta = self._delta(sample.name, sample.labels, sample.value, monotonic=True)
                bound = float(sample.labels["le"])
                for dims in self._series(name, labels):
                    buckets[dims][bound] += delta
                    if math.isinf(bound):
                        seen[dims] += sample.value
            elif sample.name == f"{name}_sum":
                # not monotonic: an observation may be negative (a lag across skewed clocks)
                delta = self._delta(sample.name, sample.labels, sample.value, monotonic=False)
                for dims in self._series(name, labels):
                    sums[dims] += delta
        for dims, by_bound in buckets.items():
            if not self._keep(name, dims, seen[dims] != 0):
                continue
            cumulative = sorted(by_bound.items())
            count = cumulative[-1][1]
            unit = _unit(name)
            datums = data[dims]
            datums.append((f"{name}_count", count, "Count"))
            datums.append((f"{name}_sum", sums[dims], unit))
            for suffix, q in QUANTILES.items():
                value = quantile(q, cumulative)
                if value is not None:
                    datums.append((f"{name}_{suffix}", value, unit))

    # --- datums → lines

    def _serialize(self, dims: Dimensions, datums: list[Datum], timestamp: int) -> list[str]:
        """One or more lines for one dimension set, split until each fits in LINE_LIMIT."""
        line = self._line(dims, datums, timestamp)
        if len(line.encode()) <= LINE_LIMIT or len(datums) == 1:
            return [line]
        half = len(datums) // 2
        return self._serialize(dims, datums[:half], timestamp) + self._serialize(
            dims, datums[half:], timestamp
        )

    def _line(self, dims: Dimensions, datums: list[Datum], timestamp: int) -> str:
        document: dict[str, Any] = {
            "_aws": {
                "Timestamp": timestamp,
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [["Service", *(name for name, _ in dims)]],
                        "Metrics": [{"Name": name, "Unit": unit} for name, _, unit in datums],
                    }
                ],
            },
            "Service": self.service,
            **dict(dims),
        }
        for name, value, _ in datums:
            value = round(float(value), 6)
            document[name] = int(value) if value.is_integer() else value
        return json.dumps(document, separators=(",", ":"), allow_nan=False)


class Reporter:
    """A daemon thread that writes an emitter's lines to a file descriptor every `seconds`."""

    def __init__(self, emitter: Emitter, seconds: float, fd: int = 1) -> None:
        self.emitter = emitter
        self.seconds = seconds
        self.fd = fd
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emf-reporter", daemon=True)
        self._lock = threading.Lock()  # the thread's flush and stop()'s last flush, one at a time

    def start(self) -> None:
        """Begin reporting."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.seconds):
            self.flush()

    def flush(self, wait: float = -1) -> None:
        """Write the current lines; log and swallow any failure."""
        if not self._lock.acquire(timeout=wait):
            return  # the thread is stuck writing (a full pipe): never hold up a shutdown
        try:
            for line in self.emitter.lines():
                self._write(line.encode() + b"\n")
        except Exception:
            log.exception("EMF metrics not written")
        finally:
            self._lock.release()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def stop(self) -> None:
        """Stop the thread and write what changed since its last flush."""
        self._stopped.set()
        self.flush(wait=1.0)


_reporter: Reporter | None = None


def start(service: str) -> Reporter | None:
    """Report this process group's metrics as `service` if METRICS_EMF_SECONDS is above 0.

    Call it once per process group, in the process that outlives the others (the gunicorn
    master, the Celery worker's main process); a second call in the same process does nothing.
    """
    global _reporter
    if _reporter is not None:
        return _reporter
    try:
        from plumbing import metrics, settings

        config = settings.get()
        if not config.metrics_emf_seconds:
            return None
        emitter = Emitter(metrics.registry(), service, config.metrics_namespace)
        _reporter = Reporter(emitter, config.metrics_emf_seconds)
        _reporter.start()
    except Exception:
        log.exception("EMF metrics not started")
    return _reporter


def stop() -> None:
    """The last flush at shutdown, if a reporter runs in this process."""
    if _reporter is not None:
        _reporter.stop()

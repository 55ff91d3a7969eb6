"""Group commit: concurrent callers share a write, each hears its own outcome (unit tests)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.group_commit import GroupCommit, GroupCommitTimeout


class Recorder:
    """A writer that records its batches; items named 'bad…' fail alone, 'boom' fails the batch."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, items: list[str]) -> list[str | BaseException]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait()
        self.batches.append(list(items))
        if "boom" in items:
            raise ConnectionError("the whole batch failed")
        return [ValueError(i) if i.startswith("bad") else i.upper() for i in items]


def run_concurrently(committer: GroupCommit, items: list[str]) -> list[str | BaseException]:
    start = threading.Barrier(len(items))

    def call(item: str) -> str | BaseException:
        start.wait()
        try:
            return committer.submit(item, timeout=10)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(call, items))


def test_concurrent_callers_share_batches_of_at_most_max_batch():
    writer = Recorder()
    committer = GroupCommit(writer, name="t", max_batch=10, window=0.05, senders=1)
    items = [f"item{i}" for i in range(30)]
    assert run_concurrently(committer, items) == [i.upper() for i in items]
    assert sorted(i for b in writer.batches for i in b) == sorted(items)
    assert all(len(b) <= 10 for b in writer.batches)
    assert len(writer.batches) < 30  # some callers really shared a write


def test_idle_senders_do_not_split_a_batch_being_collected():
    """Two senders: callers arriving together share one batch; the second sender does not take
    some of them meanwhile (it waits to collect the next batch)."""
    writer = Recorder()
    committer = GroupCommit(writer, name="t", max_batch=10, window=0.5, senders=2)
    for round_ in range(5):
        items = [f"item{round_}-{i}" for i in range(10)]
        assert run_concurrently(committer, items) == [i.upper() for i in items]
    assert [len(batch) for batch in writer.batches] == [10] * 5


def test_a_lone_caller_does_not_wait_for_company_unless_asked_to():
    eager = GroupCommit(Recorder(), name="t", window=5, senders=1, linger_alone=False)
    started = time.monotonic()
    assert eager.submit("alone", timeout=10) == "ALONE"
    assert time.monotonic() - started < 5  # not the window: it was sent at once
    patient = GroupCommit(Recorder(), name="t", window=0.3, senders=1)
    started = time.monotonic()
    assert patient.submit("alone", timeout=10) == "ALONE"
    assert time.monotonic() - started >= 0.3


def test_a_failed_item_fails_only_its_caller():
    writer = Recorder()
    committer = GroupCommit(writer, name="t", max_batch=10, window=0.05, senders=1)
    outcomes = run_concurrently(committer, ["a", "bad1", "b", "c"])
    assert outcomes[0] == "A" and outcomes[2:] == ["B", "C"]
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "bad1"


def test_a_failed_write_fails_every_caller_of_that_batch_only():
    gate = threading.Event()
    writer = Recorder(gate)
    committer = GroupCommit(writer, name="t", max_batch=10, window=0.2, senders=1)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(committer.submit, i, 10) for i in ("x", "boom", "y")]
        gate.set()
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result())
            except ConnectionError as exc:
                outcomes.append(exc)
    batch_of = {i: n for n, b in enumerate(writer.batches) for i in b}
    for item, outcome in zip(("x", "boom", "y"), outcomes, strict=True):
        if batch_of[item] == batch_of["boom"]:
            assert isinstance(outcome, ConnectionError)
        else:
            assert outcome == item.upper()
    assert committer.submit("later", timeout=10) == "LATER"  # the sender survived


def test_a_queued_item_that_times_out_is_withdrawn_never_written():
    gate = threading.Event()
    writer = Recorder(gate)
    committer = GroupCommit(writer, name="t", window=0, senders=1)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(committer.submit, "first", 10)  # holds the only sender at the gate
        assert writer.entered.wait(10)
        with pytest.raises(GroupCommitTimeout):
            committer.submit("late", timeout=0.05)
        gate.set()
        assert first.result() == "FIRST"
    assert committer.submit("next", timeout=10) == "NEXT"
    assert [i for b in writer.batches for i in b] == ["first", "next"]  # "late" never written


def test_an_item_already_being_written_waits_for_its_real_outcome():
    gate = threading.Event()
    committer = GroupCommit(Recorder(gate), name="t", window=0, senders=1)
    threading.Timer(0.2, gate.set).start()
    assert committer.submit("slow", timeout=0.05) == "SLOW"  # timed out in flight: not withdrawn


def test_wrong_number_of_outcomes_fails_the_batch():
    committer = GroupCommit(lambda items: [], name="t", window=0, senders=1)
    with pytest.raises(RuntimeError, match="0 outcomes for 1 items"):
        committer.submit("x", timeout=10)


def test_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        GroupCommit(Recorder(), name="t", max_batch=0)

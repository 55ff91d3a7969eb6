"""What the bench prints: a table (phase, measured, target, verdict), notes, and the last line in
a fixed form, which CI logs and docs/benchmarks.md quote. A missing figure prints as `n/a`,
never as a made-up number.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field


def fmt(value: float | None, spec: str) -> str:
    """`value` formatted, or n/a when it was not measured."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def result_line(
    *,
    purchase_rps: float | None,
    ceiling_rps: float | None,
    p50_ms: float | None,
    p99_ms: float | None,
    reject_p50_ms: float | None,
    relay_p99_ms: float | None,
    worker_ms_per_ticket: float | None,
    lag_p99_ms: float | None,
    oversold: int | None,
) -> str:
    """bench: purchase R/s = X × ceiling (C/s), p50 A ms, p99 B ms; reject p50 D ms;
    relay p99 E ms; worker F ms CPU/ticket; lag p99 G ms; oversold N"""
    ratio = None
    if purchase_rps is not None and ceiling_rps:
        ratio = purchase_rps / ceiling_rps
    return (
        f"bench: purchase {fmt(purchase_rps, '.0f')}/s = {fmt(ratio, '.2f')} × ceiling "
        f"({fmt(ceiling_rps, '.0f')}/s), p50 {fmt(p50_ms, '.1f')} ms, p99 {fmt(p99_ms, '.1f')} ms; "
        f"reject p50 {fmt(reject_p50_ms, '.1f')} ms; "
        f"relay p99 {fmt(relay_p99_ms, '.1f')} ms; "
        f"worker {fmt(worker_ms_per_ticket, '.2f')} ms CPU/ticket; "
        f"lag p99 {fmt(lag_p99_ms, '.0f')} ms; oversold {fmt(oversold, 'd')}"
    )


def at_least(value: float | None, target: float) -> str:
    """Verdict for a floor: met, or missed by how much of the target."""
    if value is None or math.isnan(value):
        return "n/a"
    if value >= target:
        return "met"
    return f"MISSED by {(target - value) / target:.0%}"


def at_most(value: float | None, target: float) -> str:
    """Verdict for a ceiling: met, or over the target by how much of it."""
    if value is None or math.isnan(value):
        return "n/a"
    if value <= target:
        return "met"
    return f"MISSED by {(value - target) / target:.0%}"


@dataclass
class Table:
    """Rows under a header, cells wrapped to a column's width, and free notes below them."""

    header: tuple[str, ...] = ("phase", "measured", "target", "verdict")
    wrap: tuple[int, ...] = (18, 78, 26, 16)
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        self.rows.append(tuple(cells) + ("",) * (len(self.header) - len(cells)))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        wrapped = [
            [textwrap.wrap(cell, width) or [""] for cell, width in zip(row, self.wrap, strict=True)]
            for row in [self.header, *self.rows]
        ]
        widths = [
            max(len(line) for row in wrapped for line in row[i]) for i in range(len(self.header))
        ]
        lines = []
        for i, row in enumerate(wrapped):
            for k in range(max(len(cell) for cell in row)):
                parts = [cell[k] if k < len(cell) else "" for cell in row]
                lines.append("  ".join(p.ljust(w) for p, w in zip(parts, widths, strict=True)))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines = [line.rstrip() for line in lines]
        for note in self.notes:
            lines += textwrap.wrap(note, 110, initial_indent="  * ", subsequent_indent="    ")
        return "\n".join(lines)


def rss_table(rows: list[tuple[str, list[float]]]) -> str:
    """process | count | RSS MiB (each process, and the sum when there are several)."""
    lines = ["process                     RSS MiB"]
    for name, sizes in rows:
        if not sizes:
            lines.append(f"{name:<27} n/a")
        elif len(sizes) == 1:
            lines.append(f"{name:<27} {sizes[0]:.0f}")
        else:
            each = " + ".join(f"{s:.0f}" for s in sizes)
            lines.append(f"{name:<27} {sum(sizes):.0f} ({each})")
    return "\n".join(lines)

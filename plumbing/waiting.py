"""Waiting for a condition to hold steadily: the drains before a seat-state rebuild."""

from __future__ import annotations

import time
from collections.abc import Callable


def until_steady(check: Callable[[], bool], timeout: float, confirmations: int = 2) -> bool:
    """Whether `check` held `confirmations` times in a row, a second apart, within `timeout`
    seconds (one true reading of an approximate counter is not enough)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        seen = seen + 1 if check() else 0
        if seen >= confirmations:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(1)

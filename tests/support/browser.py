"""Test support: a real browser (Debian's chromium driven by Playwright for Python).

Playwright's own browser download is not reachable from here; `ops/local/stack.py test`
installs Debian's `chromium` when it is missing. Without it the browser tests fail, saying so:
they are never skipped.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest


def chromium_path() -> str:
    """Debian's chromium, or a failed test that says how to get it."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail(
            "chromium is missing: `ops/local/stack.py test` installs Debian's chromium package "
            "when run as root (apt-get install chromium)",
            pytrace=False,
        )
    return found


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless chromium (Playwright's Browser) until the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield browser
        finally:
            browser.close()

"""A real browser for the UI tests: Debian's Chromium, driven headless by Playwright.

On a machine without it the tests that need it are skipped with the reason; in CI (`CI` set) they
fail, since `.ci/run` installs it (`apt-get install chromium`). Playwright's own browser download
(`playwright install`) is never used.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest
from databases import in_ci

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]


@contextlib.contextmanager
def chromium_page(width: int = 1600, height: int = 1000) -> Iterator:
    """A page of a headless Chromium; Dagster's "join the community" dialog, which a fresh
    instance shows once, is dismissed whenever it covers what a test waits for."""
    if shutil.which(CHROMIUM) is None:
        message = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if in_ci():
            pytest.fail(f"{message}; .ci/run must install it", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.add_locator_handler(
                page.get_by_role("button", name="Skip"), lambda skip: skip.click()
            )
            yield page
        finally:
            browser.close()

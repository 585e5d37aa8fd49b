"""Fixtures for the browser tests: the app served by `streamlit run`, a headless Chromium, a fresh page per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.serving import serve

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
PAGE_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1400, "height": 900}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/browser with `browser` (before `-m` deselects anything)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


@cache
def _missing_requirement() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.is_file():
        return f"Chromium not found at {CHROMIUM}; install it with `apt-get install -y chromium`"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        return f"the `playwright` package cannot be imported ({e}); `pip install -r requirements-dev.txt`"
    return None


@pytest.fixture(scope="session", autouse=True)
def browser_requirements() -> None:
    """Skip the browser tests when Chromium or Playwright is missing; in CI (CI=true/1) fail instead."""
    reason = _missing_requirement()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"browser tests must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def app_server(browser_requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run `streamlit run app.py` on a free loopback port; yield its base URL."""
    with serve(log_path=tmp_path_factory.mktemp("streamlit") / "server.log") as server:
        yield server.url


@pytest.fixture(scope="session")
def browser(browser_requirements: None) -> Iterator[Browser]:
    """A headless Debian Chromium driven by Playwright, shared by the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context and page per test (1400x900, downloads accepted, 30 s default timeout)."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)  # type: ignore[arg-type]
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        pg = context.new_page()
        pg.set_default_timeout(PAGE_TIMEOUT_MS)
        yield pg
    finally:
        context.close()

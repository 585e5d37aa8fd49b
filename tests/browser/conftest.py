"""Fixtures for the browser tests: the app served by `streamlit run`, a headless Chromium, a fresh page per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]  # the directory that holds app.py
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
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 10.0
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: never via a proxy
    try:
        with opener.open(url, timeout=2) as resp:
            return bool(resp.status == 200 and resp.read().decode().strip() == "ok")
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def streamlit_server(port: int, log_path: Path, *, options: Sequence[str] = (),
                     env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`streamlit run app.py` on `port` (loopback), with extra `--option value` pairs; stopped on exit.
    Yields the process once /_stcore/health answers; fails the test with the server's output otherwise."""
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        *options,
    ]  # fmt: skip
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(f"{base_url}/_stcore/health"):
            if proc.poll() is not None:
                pytest.fail(
                    f"streamlit exited early (code {proc.returncode}); its output ({log_path}):\n"
                    f"{log_path.read_text(errors='replace')}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"streamlit did not answer {base_url}/_stcore/health within {SERVER_START_TIMEOUT_S:.0f} s; "
                    f"its output ({log_path}):\n{log_path.read_text(errors='replace')}",
                    pytrace=False,
                )
            time.sleep(0.25)
        yield proc
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def app_server(browser_requirements: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run `streamlit run app.py` on a free loopback port; yield its base URL."""
    port = _free_port()
    with streamlit_server(port, tmp_path_factory.mktemp("streamlit") / "server.log"):
        yield f"http://127.0.0.1:{port}"


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

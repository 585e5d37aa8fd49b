"""Load and soak tests: marked `browser` and `slow`, skipped without Chromium (failed instead in CI).

Their size comes from $LOAD_TEST_SIZE: `reduced` (the default, part of `make test`) or `full` (`make test-load`).
Each test adds its summary table to the end of the pytest output and writes it under its tmp dir.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import _in_ci, _missing_requirement

from .harness import Sizes, sizes_from_env

HERE = Path(__file__).resolve().parent
_SUMMARIES: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/load `browser` and `slow` (before `-m` deselects anything)."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def load_requirements() -> None:
    """As for tests/browser: skip when Chromium or Playwright is missing, but fail in CI (CI=true/1)."""
    reason = _missing_requirement()
    if reason is None:
        return
    if _in_ci():
        pytest.fail(f"load tests must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return sizes_from_env()


@pytest.fixture
def summary() -> list[str]:
    """Append text here; it is printed after the run's results (pytest captures what tests print)."""
    return _SUMMARIES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _SUMMARIES:
        terminalreporter.section("load and soak")
        for text in _SUMMARIES:
            terminalreporter.write_line(text)
            terminalreporter.write_line("")

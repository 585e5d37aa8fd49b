"""Helpers for driving the Streamlit app from Playwright (test ids checked against Streamlit 1.67)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, expect
else:

    def expect(actual: Any, message: str | None = None) -> Any:
        """Playwright's `expect`, imported on first use so a missing playwright skips instead of breaking collection."""
        from playwright.sync_api import expect as _expect

        return _expect(actual, message)


# True once the app has been connected, idle (script not running) and without a status widget for `quiet` ms.
_IDLE_JS = """
(quiet) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const idle = app !== null
    && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && document.querySelector('[data-testid="stAppViewContainer"]') !== null
    && document.querySelector('[data-testid="stStatusWidget"]') === null;
  if (!idle) { window.__pwIdleSince = undefined; return false; }
  if (window.__pwIdleSince === undefined) window.__pwIdleSince = performance.now();
  return performance.now() - window.__pwIdleSince >= quiet;
}
"""


def wait_for_app(page: Page, *, timeout_ms: float = 60_000, quiet_ms: int = 300) -> None:
    """Wait until Streamlit has connected and finished running the script (idle for `quiet_ms`)."""
    page.wait_for_selector('[data-testid="stApp"]', state="attached", timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stAppViewContainer"]', state="attached", timeout=timeout_ms)
    page.evaluate("() => { window.__pwIdleSince = undefined; }")
    page.wait_for_function(_IDLE_JS, arg=quiet_ms, polling=50, timeout=timeout_ms)


def metric_value(page: Page, label: str) -> str:
    """The displayed value of the `st.metric` whose label is exactly `label`."""
    label_el = page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    metric = page.get_by_test_id("stMetric").filter(has=label_el)
    return metric.get_by_test_id("stMetricValue").inner_text().strip()


def screenshot(page: Page, path: str | Path) -> Path:
    """Save a full-page PNG screenshot to `path` (parents created) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    return out


def metric_locator(page: Page, label: str) -> Locator:
    """The value element of the `st.metric` whose label is exactly `label` (for `expect(...)`, which retries)."""
    label_el = page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    return page.get_by_test_id("stMetric").filter(has=label_el).get_by_test_id("stMetricValue")


# Arms a watch on the app's script state: window.__pwRunSeen turns true once a script run has started.
_ARM_RERUN_JS = """
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  window.__pwRunSeen = false;
  if (window.__pwRunObserver) window.__pwRunObserver.disconnect();
  window.__pwRunObserver = new MutationObserver((records) => {
    if (app.getAttribute('data-test-script-state') === 'running'
        || records.some((r) => r.oldValue === 'running')) window.__pwRunSeen = true;
  });
  window.__pwRunObserver.observe(app, {attributes: true, attributeFilter: ['data-test-script-state'],
                                       attributeOldValue: true});
}
"""


@contextmanager
def expect_rerun(page: Page, *, timeout_ms: float = 60_000) -> Iterator[None]:
    """Around an action that reruns the script: wait until a run has started after it, then `wait_for_app`.

    `wait_for_app` alone can return before a slow rerun starts (it only needs the app idle for a moment);
    this cannot. Use it only for actions that do rerun (a changed widget value), or it times out.
    """
    page.evaluate(_ARM_RERUN_JS)
    yield
    page.wait_for_function("() => window.__pwRunSeen === true", polling=20, timeout=timeout_ms)
    wait_for_app(page, timeout_ms=timeout_ms)


def choose_option(page: Page, label: str, option: str) -> None:
    """Pick `option` in the `st.selectbox` labelled `label`: click it open, click the option, wait for the rerun."""
    combobox = page.get_by_role("combobox", name=label, exact=True)
    if combobox.input_value() == option:
        return  # already chosen: no rerun to wait for
    combobox.click()
    listbox = page.get_by_role("listbox", name=re.compile(rf"^{re.escape(label)}( |$)"))  # named "<label> Open"
    with expect_rerun(page):
        listbox.get_by_role("option", name=option, exact=True).click()
    expect(combobox).to_have_value(option)

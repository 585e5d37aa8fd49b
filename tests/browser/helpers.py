"""Helpers for driving the Streamlit app from Playwright (test ids checked against Streamlit 1.67)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tests.conftest import torch_threads

# How long `expect(...)` retries (Playwright's default is 5 s): a first page on a busy 2-core machine takes longer.
EXPECT_TIMEOUT_MS = 30_000

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page, expect
else:

    def expect(actual: Any, message: str | None = None) -> Any:
        """Playwright's `expect`, imported on first use so a missing playwright skips instead of breaking collection."""
        from playwright.sync_api import expect as _expect

        _expect.set_options(timeout=EXPECT_TIMEOUT_MS)
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


# The figure plotly.js draws in a chart: its traces and layout, as JSON (typed arrays stay {dtype, bdata, shape}).
_PLOTLY_FIGURE_JS = "(gd) => JSON.stringify({data: gd.data || [], layout: gd.layout || {}})"
_BDATA_DTYPES = {"f8", "f4", "i4", "i2", "i1", "u4", "u2", "u1"}


def plotly_figure(chart: Locator, *, timeout_ms: float = 60_000) -> dict[str, Any]:
    """The figure in the `st.plotly_chart` element `chart`, as plotly.js holds it: {"data": [...], "layout": {...}}.

    Waits until `chart` matches exactly one chart: while a script reruns, Streamlit can show the previous run's
    chart beside the new one until the run ends."""
    expect(chart).to_have_count(1, timeout=timeout_ms)
    return dict(json.loads(chart.locator(".js-plotly-plot").evaluate(_PLOTLY_FIGURE_JS)))


def plotly_values(values: Any) -> list[Any]:
    """A trace's x, y, z or customdata as a (nested) list: plain JSON arrays as they are, numpy arrays (which plotly
    sends base64-encoded as {"dtype", "bdata", "shape"}) decoded."""
    if isinstance(values, dict) and "bdata" in values:
        dtype = str(values["dtype"])
        assert dtype in _BDATA_DTYPES, f"unknown plotly dtype {dtype!r}"
        arr = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(dtype).newbyteorder("<"))
        if "shape" in values:
            arr = arr.reshape([int(n) for n in str(values["shape"]).split(",")])
        return list(arr.tolist())
    return list(values)


def plotly_trace(figure: dict[str, Any], name: str, *, xaxis: str = "x") -> dict[str, Any]:
    """The one trace called `name` drawn against `xaxis` ("x" is the first subplot, "x2" the second...)."""
    found = [t for t in figure["data"] if t.get("name") == name and t.get("xaxis", "x") == xaxis]
    assert len(found) == 1, f"{len(found)} traces named {name!r} on {xaxis}: {[t.get('name') for t in figure['data']]}"
    return dict(found[0])


def subplot_titles(figure: dict[str, Any]) -> list[str]:
    """The subplot titles of a `make_subplots` figure (they are layout annotations), left to right."""
    return [str(a["text"]) for a in figure["layout"].get("annotations", [])]


# How many points trace `name` on `xaxis` holds in the first plotly chart whose text includes `title`; false until it
# holds more than `least` (x given as a plain array, as plotly sends a Python list).
_TRACE_POINTS_JS = """
([title, name, xaxis, least]) => {
  for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    if (!chart.textContent.includes(title)) continue;
    const gd = chart.querySelector('.js-plotly-plot');
    const trace = ((gd && gd.data) || []).find((t) => t.name === name && (t.xaxis || 'x') === xaxis);
    return trace !== undefined && Array.isArray(trace.x) && trace.x.length > least ? trace.x.length : false;
  }
  return false;
}
"""


def wait_for_points(
    page: Page, title: str, trace: str, *, more_than: int = 0, xaxis: str = "x", timeout_ms: float = 60_000
) -> int:
    """Wait until trace `trace` (on `xaxis`) of the plotly chart showing `title` holds more than `more_than`
    points, for a chart that grows live; return how many it holds then."""
    handle = page.wait_for_function(
        _TRACE_POINTS_JS, arg=[title, trace, xaxis, more_than], polling=100, timeout=timeout_ms
    )
    return int(handle.json_value())


def one_torch_thread() -> AbstractContextManager[None]:
    """Run torch on one intra-op thread inside the block (quick on a busy CPU), then restore the thread count.

    For the expected numbers a test computes itself; results agree with more threads to float rounding."""
    return torch_threads(1)


@contextmanager
def stop_on_failure(page: Page, button: str = "Stop") -> Iterator[None]:
    """Around the part of a test where a job it started runs: if that part fails, press the job's `button` (best
    effort), so the server's shared queue is free for the next test; the failure itself is what gets reported."""
    try:
        yield
    except BaseException:
        with suppress(Exception):
            page.get_by_role("button", name=button, exact=True).click(timeout=5_000)
        raise

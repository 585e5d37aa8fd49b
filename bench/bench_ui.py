"""UI latency: how long does the app take to show another preset after a click in the sidebar, and another layer
after a click on the feature-maps page?

Starts `streamlit run app.py` on a free loopback port (tests/serving.py), opens the Debian
Chromium headless through Playwright with the same flags, loads `?preset=resnet18`, and switches the
"Preset" selectbox resnet18 -> resnet152 -> resnet18 through the UI, `--reps` times (5 by default).

One measurement runs from the press on the option in the open dropdown (a `pointerdown` listener in the
page, so Playwright's own overhead is not counted) to the first moment, polled in the page every 10 ms,
when all of these hold at once:
  - the "Parameters (trainable)" metric shows the new preset's count (from `resnet_core.analyze`);
  - the Layer table grid holds the new preset's number of rows (aria-rowcount; level "Blocks");
  - the app is idle: connected, script state `notRunning`, no status widget.
Each switch is also timed to the moment the grid is drawn with the new rows: the same conditions, but with the
grid's scrolled content as tall as the new rows instead of aria-rowcount (glide-data-grid sizes that content and
paints its canvas within a frame of it; its accessibility table, which carries aria-rowcount, follows about 230 ms
later, with the main thread idle). Opening the dropdown is not timed. The very first resnet18 -> resnet152
switch meets an empty server cache (`report_for` is an st.cache_resource) and is reported on its own row; the
timed repetitions come after it.

Then, on the same server and browser, the feature-maps page as bench/bench_activations.py (d) opens it
(`/feature_maps?preset=resnet50&input=3x224x224`, random weights, the first sample): after one untimed switch each
way, `--reps` timed switches of the "Layer" selectbox alternating layer3.2 (a block) / layer4 (a stage output), each
from the press on the option until the app is idle and the caption under the grid names the new layer (that
script's `switch_ms`).

Last, the compare page (`/compare?preset=resnet50&b_preset=resnet18`): after one untimed switch each way, `--reps`
timed switches each way of its "Model B" selectbox between resnet18 and resnet152, each from the press on the option
until the app is idle, the title names both models and the headline table shows B's parameters.

    .venv/bin/python bench/bench_ui.py            # from the repo root; about 45 s
    .venv/bin/python bench/bench_ui.py --reps 10
    .venv/bin/python bench/bench_ui.py --set runner.postScriptGC=false   # any Streamlit option, for A/B runs
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout, no install needed

from bench.bench_activations import _DONE_JS as _LAYER_SHOWN_JS  # noqa: E402
from bench.bench_activations import PRESET as FM_PRESET  # noqa: E402
from bench.bench_activations import SIDE as FM_SIDE  # noqa: E402
from bench.bench_activations import UI_LAYERS  # noqa: E402
from bench.bench_activations import switch_ms as layer_switch_ms  # noqa: E402
from bench.machine import describe, load_1min  # noqa: E402
from resnet_core import analyze  # noqa: E402
from resnet_core.units import fmt_count  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT  # noqa: E402
from tests.browser.helpers import metric_value, wait_for_app  # noqa: E402
from tests.serving import option_words, serve  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Page

PARAMS = "Parameters (trainable)"
SIDEBAR_TARGET_MS = 300.0  # median, sidebar preset switch to table + metrics updated
LAYER_TARGET_MS = 250.0  # median, feature-maps Layer switch to the new layer's caption
COMPARE_TARGET_MS = 1000.0  # median, compare page "Model B" switch to the headline table updated
COMPARE_A = "resnet50"  # the sidebar's model while B alternates between resnet18 and resnet152
TIMEOUT_MS = 60_000

# Records when the user presses an option of an open dropdown (capture phase: before React sees it).
_RECORD_PRESS_JS = """
() => {
  if (window.__benchInstalled) return;
  window.__benchInstalled = true;
  document.addEventListener('pointerdown', (e) => {
    if (e.target instanceof Element && e.target.closest('[role="option"]')) window.__benchPressAt = performance.now();
  }, true);
}
"""

# performance.now() once the metric and the table show the expected model and the app is idle, else false.
_DONE_JS = """
([label, value, rowcount, rowPx]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (app === null
      || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
      || app.getAttribute('data-test-script-state') !== 'notRunning'
      || document.querySelector('[data-testid="stStatusWidget"]') !== null) return false;
  const metric = [...document.querySelectorAll('[data-testid="stMetric"]')].find(
    (m) => m.querySelector('[data-testid="stMetricLabel"]')?.innerText.trim() === label);
  if (!metric || metric.querySelector('[data-testid="stMetricValue"]')?.innerText.trim() !== value) return false;
  const tab = [...document.querySelectorAll('[role="tab"]')].find((t) => t.innerText.trim() === 'Layer table');
  const panel = tab && document.querySelector(`[role="tabpanel"][aria-labelledby="${tab.id}"]`);
  const grid = panel && panel.querySelector('[data-testid="stDataFrame"] [role="grid"]');
  if (!grid) return false;
  if (rowPx === null) return grid.getAttribute('aria-rowcount') === String(rowcount) && performance.now();
  // Drawn: the grid's scrolled content is as tall as the new rows and header (glide sizes it and paints the canvas
  // together).
  const rows = panel.querySelector('[data-testid="stDataFrame"] .dvn-stack')?.children[1];
  return rows !== undefined && Math.abs(rows.getBoundingClientRect().height - rowcount * rowPx) < 1
    && performance.now();
}
"""

# The height of one row of the layer table's grid, in px: its scrolled content (header + data rows) / aria-rowcount.
_ROW_PX_JS = """
(rowcount) => {
  const rows = document.querySelector('[data-testid="stDataFrame"] .dvn-stack')?.children[1];
  const px = rows === undefined ? 0 : rows.getBoundingClientRect().height / rowcount;
  return px > 0 ? px : false;
}
"""


@dataclass(frozen=True)
class Expected:
    preset: str
    params: str  # as the metric shows it
    rowcount: int  # the grid's aria-rowcount at level "Blocks": data rows + the header row


def expected(preset: str) -> Expected:
    report = analyze(preset)
    return Expected(preset, f"{report.trainable_params:,}", len(report.to_dataframe("block")) + 1)


@dataclass(frozen=True)
class Switch:
    ms: float  # press -> metric updated, aria-rowcount of the grid updated, app idle
    drawn_ms: float  # press -> metric updated, the grid drawn with the new rows, app idle


def switch_ms(page: Page, to: Expected, row_px: float) -> Switch:
    """Pick `to.preset` in the Preset selectbox; ms from the press on the option until the new model is shown."""
    combobox = page.get_by_role("combobox", name="Preset", exact=True)
    combobox.click()
    option = page.get_by_role("listbox").get_by_role("option", name=to.preset, exact=True)
    option.wait_for(state="visible")
    page.evaluate("() => { window.__benchPressAt = undefined; }")
    option.click()
    drawn = page.wait_for_function(_DONE_JS, arg=[PARAMS, to.params, to.rowcount, row_px], polling=10,
                                   timeout=TIMEOUT_MS)
    drawn_at = float(drawn.json_value())
    done = page.wait_for_function(_DONE_JS, arg=[PARAMS, to.params, to.rowcount, None], polling=10,
                                  timeout=TIMEOUT_MS)
    end = float(done.json_value())
    start = page.evaluate("() => window.__benchPressAt")
    if start is None:
        raise RuntimeError("the press on the option was not seen by the page")
    # Not timed: settle, then check the page agrees (metric, URL).
    wait_for_app(page)
    shown = metric_value(page, PARAMS)
    if shown != to.params or f"preset={to.preset}" not in page.url:
        raise RuntimeError(f"after the switch the page shows {shown} at {page.url}; expected {to}")
    return Switch(end - float(start), drawn_at - float(start))


# performance.now() once the compare page's title names both models, the headline table's "Parameters" row shows B's
# count and the app is idle, else false.
_COMPARE_DONE_JS = """
([title, params]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (app === null
      || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
      || app.getAttribute('data-test-script-state') !== 'notRunning'
      || document.querySelector('[data-testid="stStatusWidget"]') !== null) return false;
  const h1 = document.querySelector('h1');
  if (!h1 || h1.innerText.trim() !== title) return false;
  const row = [...document.querySelectorAll('[data-testid="stTable"] tr')].find(
    (r) => r.querySelector('th')?.innerText.trim() === 'Parameters');
  const cells = row ? [...row.querySelectorAll('td')] : [];
  if (cells.length < 2 || cells[1].innerText.trim() !== params) return false;
  return performance.now();
}
"""


def compare_switch_ms(page: Page, b: str) -> float:
    """Pick `b` in the compare page's "Model B" selectbox; ms from the press on the option until the title and the
    headline table name it and the app is idle."""
    combobox = page.get_by_role("combobox", name="Model B", exact=True)
    combobox.click()
    option = page.get_by_role("listbox").get_by_role("option", name=b, exact=True)
    option.wait_for(state="visible")
    page.evaluate("() => { window.__benchPressAt = undefined; }")
    option.click()
    arg = [f"{COMPARE_A} vs {b}", fmt_count(analyze(b).total_params, "parameters")]
    end = float(page.wait_for_function(_COMPARE_DONE_JS, arg=arg, polling=10, timeout=TIMEOUT_MS).json_value())
    start = page.evaluate("() => window.__benchPressAt")
    if start is None:
        raise RuntimeError("the press on the option was not seen by the page")
    wait_for_app(page)  # not timed: settle, then check the link holds the new B
    if f"b_preset={b}" not in page.url:
        raise RuntimeError(f"after the switch the link is {page.url}; expected b_preset={b}")
    return end - float(start)


def row(case: str, times: list[float], target_ms: float) -> str:
    med = statistics.median(times)
    met = "yes" if med <= target_ms else "**no**"
    return f"| {case} | {med:.0f} | {min(times):.0f} | {max(times):.0f} | ≤ {target_ms:.0f} | {met} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed switches each way (default 5)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Streamlit config option for the server, e.g. --set runner.postScriptGC=false (repeatable)",
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        print(f"Chromium not found at {CHROMIUM}", file=sys.stderr)
        return 2
    # SIGTERM/SIGHUP -> SystemExit, so the `finally` below still stops the server.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))

    print(describe() + "\n", flush=True)
    small, big = expected("resnet18"), expected("resnet152")
    with tempfile.TemporaryDirectory(prefix="bench_ui_") as tmp:
        server = ExitStack()
        base_url = server.enter_context(serve(log_path=Path(tmp) / "server.log", options=option_words(args.set))).url
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                    page.set_default_timeout(TIMEOUT_MS)
                    page.goto(f"{base_url}/?preset=resnet18")
                    wait_for_app(page)
                    page.wait_for_function(_DONE_JS, arg=[PARAMS, small.params, small.rowcount, None],
                                           timeout=TIMEOUT_MS)
                    row_px = float(
                        page.wait_for_function(_ROW_PX_JS, arg=small.rowcount, timeout=TIMEOUT_MS).json_value()
                    )
                    page.evaluate(_RECORD_PRESS_JS)

                    cold = switch_ms(page, big, row_px)  # resnet152's report is not in the server's cache yet
                    switch_ms(page, small, row_px)
                    up, down = [], []
                    for _ in range(args.reps):
                        up.append(switch_ms(page, big, row_px))
                        down.append(switch_ms(page, small, row_px))

                    page.goto(f"{base_url}/feature_maps?preset={FM_PRESET}&input=3x{FM_SIDE}x{FM_SIDE}")
                    page.wait_for_function(_LAYER_SHOWN_JS, arg="stem · output · ", polling=10, timeout=TIMEOUT_MS)
                    wait_for_app(page, timeout_ms=TIMEOUT_MS)
                    page.evaluate(_RECORD_PRESS_JS)
                    for place, label in UI_LAYERS:  # untimed: one switch each way
                        layer_switch_ms(page, place, label)
                    layers = [layer_switch_ms(page, *UI_LAYERS[i % len(UI_LAYERS)]) for i in range(2 * args.reps)]

                    page.goto(f"{base_url}/compare?preset={COMPARE_A}&b_preset=resnet18")
                    page.wait_for_function(_COMPARE_DONE_JS, arg=[f"{COMPARE_A} vs resnet18", fmt_count(
                        analyze("resnet18").total_params, "parameters")], polling=10, timeout=TIMEOUT_MS)
                    wait_for_app(page, timeout_ms=TIMEOUT_MS)
                    page.evaluate(_RECORD_PRESS_JS)
                    compare_switch_ms(page, "resnet152")  # untimed: one switch each way fills the caches
                    compare_switch_ms(page, "resnet18")
                    b_switches = [compare_switch_ms(page, ("resnet152", "resnet18")[i % 2])
                                  for i in range(2 * args.reps)]
                    chromium_version = browser.version
                finally:
                    browser.close()
        finally:
            server.close()

    print("## UI latency: switching the preset in the sidebar\n")
    print(f"Run: Chromium {chromium_version} (headless) · load average (1 min) after {load_1min()} (server, browser "
          "and any other process share these CPUs)\n")
    print(f"From the press on the option to metric + table (or caption) updated and the app idle; {args.reps} "
          "repetitions each way.")
    if args.set:
        print(f"Server options: {', '.join(args.set)}")
    print()
    print("| case | median (ms) | min | max | target | met |")
    print("|---|---|---|---|---|---|")
    print(row("resnet18 → resnet152: table and metrics updated", [t.ms for t in up], SIDEBAR_TARGET_MS))
    print(row("resnet152 → resnet18: table and metrics updated", [t.ms for t in down], SIDEBAR_TARGET_MS))
    print(row("resnet18 → resnet152: grid drawn with the new rows, metrics updated", [t.drawn_ms for t in up],
              SIDEBAR_TARGET_MS))
    print(row("resnet152 → resnet18: grid drawn with the new rows, metrics updated", [t.drawn_ms for t in down],
              SIDEBAR_TARGET_MS))
    print(row(f"feature maps ({FM_PRESET}, {FM_SIDE}²): Layer {' ↔ '.join(p for p, _ in UI_LAYERS)}, caption "
              "updated", layers, LAYER_TARGET_MS))
    print(row(f"compare page (A {COMPARE_A}): Model B resnet18 ↔ resnet152, headline updated", b_switches,
              COMPARE_TARGET_MS))
    print(
        f"| resnet18 → resnet152, first time (server cache empty; 1 run, info) | {cold.ms:.0f} | "
        f"{cold.drawn_ms:.0f} drawn | - | (info) | - |"
    )
    print(
        "\nRaw (ms, table / drawn): 18→152 " + ", ".join(f"{t.ms:.0f}/{t.drawn_ms:.0f}" for t in up)
        + " · 152→18 " + ", ".join(f"{t.ms:.0f}/{t.drawn_ms:.0f}" for t in down)
        + " · layers " + ", ".join(f"{t:.0f}" for t in layers)
        + " · compare B " + ", ".join(f"{t:.0f}" for t in b_switches)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

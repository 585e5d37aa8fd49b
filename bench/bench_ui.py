"""UI latency: how long does the app take to show another preset after a click in the sidebar?

Starts `streamlit run app.py` on a free loopback port (as tests/browser/conftest.py does), opens the Debian
Chromium headless through Playwright with the same flags, loads `?preset=resnet18`, and switches the
"Preset" selectbox resnet18 -> resnet152 -> resnet18 through the UI, `--reps` times (5 by default).

One measurement runs from the press on the option in the open dropdown (a `pointerdown` listener in the
page, so Playwright's own overhead is not counted) to the first moment, polled in the page every 10 ms,
when all of these hold at once:
  - the "Parameters (trainable)" metric shows the new preset's count (from `resnet_core.analyze`);
  - the Layer table grid holds the new preset's number of rows (aria-rowcount; level "Blocks");
  - the app is idle: connected, script state `notRunning`, no status widget.
Opening the dropdown is not timed. The very first resnet18 -> resnet152 switch meets an empty server
cache (`report_for` is an st.cache_resource) and is reported on its own row; the timed repetitions
come after it.

    .venv/bin/python bench/bench_ui.py            # from the repo root; about 20 s
    .venv/bin/python bench/bench_ui.py --reps 10
    .venv/bin/python bench/bench_ui.py --set runner.postScriptGC=false   # any Streamlit option, for A/B runs
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout, no install needed

from resnet_core import analyze  # noqa: E402
from tests.browser.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    SERVER_START_TIMEOUT_S,
    VIEWPORT,
    _free_port,
    _healthy,
    _stop,
)
from tests.browser.helpers import metric_value, wait_for_app  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Page

PARAMS = "Parameters (trainable)"
TARGET_MS = 1000.0
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
([label, value, rowcount]) => {
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
  if (!grid || grid.getAttribute('aria-rowcount') !== String(rowcount)) return false;
  return performance.now();
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


def switch_ms(page: Page, to: Expected) -> float:
    """Pick `to.preset` in the Preset selectbox; ms from the press on the option until the new model is shown."""
    combobox = page.get_by_role("combobox", name="Preset", exact=True)
    combobox.click()
    option = page.get_by_role("listbox").get_by_role("option", name=to.preset, exact=True)
    option.wait_for(state="visible")
    page.evaluate("() => { window.__benchPressAt = undefined; }")
    option.click()
    done = page.wait_for_function(_DONE_JS, arg=[PARAMS, to.params, to.rowcount], polling=10, timeout=TIMEOUT_MS)
    end = float(done.json_value())
    start = page.evaluate("() => window.__benchPressAt")
    if start is None:
        raise RuntimeError("the press on the option was not seen by the page")
    # Not timed: settle, then check the page agrees (metric, URL).
    wait_for_app(page)
    shown = metric_value(page, PARAMS)
    if shown != to.params or f"preset={to.preset}" not in page.url:
        raise RuntimeError(f"after the switch the page shows {shown} at {page.url}; expected {to}")
    return end - float(start)


def start_server(log_path: Path, options: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    for opt in options:  # --set runner.postScriptGC=false -> --runner.postScriptGC false
        key, _, value = opt.partition("=")
        cmd += [f"--{key}", value]
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while not _healthy(f"{base_url}/_stcore/health"):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"streamlit did not start; its output:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.25)
    return proc, base_url


def _loadavg() -> str:
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def row(case: str, times: list[float]) -> str:
    med = statistics.median(times)
    met = "yes" if med < TARGET_MS else "**no**"
    return f"| {case} | {med:.0f} | {min(times):.0f} | {max(times):.0f} | < {TARGET_MS:.0f} | {met} |"


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

    small, big = expected("resnet18"), expected("resnet152")
    load_before = _loadavg()
    with tempfile.TemporaryDirectory(prefix="bench_ui_") as tmp:
        log_path = Path(tmp) / "server.log"
        proc, base_url = start_server(log_path, args.set)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                    page.set_default_timeout(TIMEOUT_MS)
                    page.goto(f"{base_url}/?preset=resnet18")
                    wait_for_app(page)
                    page.wait_for_function(_DONE_JS, arg=[PARAMS, small.params, small.rowcount], timeout=TIMEOUT_MS)
                    page.evaluate(_RECORD_PRESS_JS)

                    cold = switch_ms(page, big)  # resnet152's report is not in the server's cache yet
                    switch_ms(page, small)
                    up, down = [], []
                    for _ in range(args.reps):
                        up.append(switch_ms(page, big))
                        down.append(switch_ms(page, small))
                    chromium_version = browser.version
                finally:
                    browser.close()
        finally:
            _stop(proc)

    import streamlit

    print("## UI latency: switching the preset in the sidebar\n")
    print(
        f"Machine: {platform.platform()} · {platform.machine()} · os.cpu_count()={os.cpu_count()} · "
        f"Python {platform.python_version()} · Streamlit {streamlit.__version__} · Chromium {chromium_version} "
        f"(headless) · load average before/after {load_before} / {_loadavg()} (server, browser and any other "
        "process share these CPUs)\n"
    )
    print(f"From the press on the option to metric + table updated and the app idle; {args.reps} repetitions.")
    if args.set:
        print(f"Server options: {', '.join(args.set)}")
    print()
    print("| case | median (ms) | min | max | target | met |")
    print("|---|---|---|---|---|---|")
    print(row("resnet18 → resnet152: table and metrics updated", up))
    print(row("resnet152 → resnet18: table and metrics updated", down))
    print(
        f"| resnet18 → resnet152, first time (server cache empty; 1 run, info) | {cold:.0f} | {cold:.0f} | "
        f"{cold:.0f} | (info) | - |"
    )
    print(
        "\nRaw (ms): 18→152 " + ", ".join(f"{t:.0f}" for t in up) + " · 152→18 " + ", ".join(f"{t:.0f}" for t in down)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the load and soak tests share: the sizes, a `streamlit run` server, its memory, waits and timing, the report.

The browser side is Playwright's async API: one Chromium, one context (a private window: its own cookies, its
own Streamlit session) per simulated student, all driven from one asyncio loop. A page update is timed from
just before the action to the first moment the expected content is on the page *and* the app is idle
(connected, no script running, no status widget), polled every 50 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT
from tests.serving import serve as serve_app

if TYPE_CHECKING:
    from playwright.async_api import Browser, FilePayload, Locator, Page

SIZE_ENV = "LOAD_TEST_SIZE"
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    """How big a run is. `reduced` runs inside `make test`; `full` is `make test-load`."""

    name: str
    load_sessions: int  # browser sessions at once against one server, each training once
    soak_sessions: int  # sessions opened and closed in all, in waves
    soak_wave: int  # sessions open at the same time during the soak


SIZES = {
    "reduced": Sizes("reduced", load_sessions=5, soak_sessions=10, soak_wave=5),
    "full": Sizes("full", load_sessions=20, soak_sessions=50, soak_wave=5),
}


def sizes_from_env(env: Mapping[str, str] = os.environ) -> Sizes:
    """The sizes named by $LOAD_TEST_SIZE (default `reduced`); any other value is an error, not a silent default."""
    name = env.get(SIZE_ENV, "").strip().lower() or "reduced"
    if name not in SIZES:
        raise ValueError(f"{SIZE_ENV}={name!r} is not one of {', '.join(SIZES)}")
    return SIZES[name]


# --- the server ----------------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    pid: int
    log_path: Path
    collect_request: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def collect_garbage(self, timeout_s: float = 60.0, *, collect: bool = True) -> dict[str, int]:
        """Have the server run a full garbage collection now (tests/load/serve.py); return what is still alive:
        {"collected", "tracked_objects", "tensor_bytes"}. With `collect=False`, only count: what is alive then
        includes garbage that no collection has freed yet."""
        partial = self.collect_request.with_suffix(".partial")
        partial.write_text("collect" if collect else "census")
        partial.replace(self.collect_request)
        deadline = time.monotonic() + timeout_s
        while self.collect_request.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not collect garbage within {timeout_s:.0f} s")
            time.sleep(0.1)
        alive: dict[str, int] = json.loads(self.collect_request.with_suffix(".json").read_text())
        return alive


@contextlib.contextmanager
def serve(
    tmp: Path,
    *,
    options: dict[str, str],
    env: dict[str, str],
    job_record: Path | None = None,
) -> Iterator[Server]:
    """`streamlit run app.py` on a free loopback port, with extra `--option value`s and environment variables.

    Started through tests/load/serve.py: the same as `streamlit run`, plus the job record (to `job_record`,
    when given) and a full garbage collection on request (`Server.collect_garbage`).
    """
    options_words = [word for key, value in options.items() for word in (f"--{key}", value)]
    collect_request = tmp / "collect.request"
    launcher = [str(Path(__file__).with_name("serve.py")), "--collect-on", str(collect_request)]
    if job_record is not None:
        launcher += ["--jobs", str(job_record)]
    with serve_app(log_path=tmp / "server.log", options=options_words, env=env, launcher=[*launcher, "--"]) as app:
        yield Server(app.url, app.pid, app.log_path, collect_request)


# --- its memory ----------------------------------------------------------------------------------------

MB = 2**20


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS in /proc/<pid>/status), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, all) CPU seconds of the whole machine so far, summed over its cores (/proc/stat)."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0]  # "cpu  user nice system idle iowait irq ..."
    user, nice, system, idle, iowait, *rest = (int(v) for v in first.split()[1:])
    total = user + nice + system + idle + iowait + sum(rest[:3])  # + irq, softirq, steal
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle - iowait) / tick, total / tick


class RssSampler:
    """Samples a process's resident memory every `every_s` seconds on a thread; `mark()` notes a moment."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every_s = pid, every_s
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self.marks: dict[str, int] = {}
        self.cpu_marks: dict[str, float] = {}  # the server's CPU seconds at each mark
        self.machine_marks: dict[str, tuple[float, float]] = {}  # the machine's (busy, all) CPU seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, RuntimeError):  # the process may have just ended
                self.samples.append((time.monotonic() - self.t0, rss_bytes(self.pid)))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self.mark("start")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mark(self, name: str) -> int:
        """Read the memory now and remember it under `name`."""
        value = rss_bytes(self.pid)
        self.marks[name] = value
        self.cpu_marks[name] = cpu_seconds(self.pid)
        self.machine_marks[name] = machine_cpu_seconds()
        self.samples.append((time.monotonic() - self.t0, value))
        return value

    @property
    def peak(self) -> int:
        return max(v for _, v in self.samples)

    def cpu_between(self, a: str, b: str) -> tuple[float, float, float]:
        """(server CPU s, machine busy CPU s, machine CPU s available) between two marks."""
        (busy_a, all_a), (busy_b, all_b) = self.machine_marks[a], self.machine_marks[b]
        return self.cpu_marks[b] - self.cpu_marks[a], busy_b - busy_a, all_b - all_a


# --- the browser ---------------------------------------------------------------------------------------


def run_async(main: Coroutine[Any, Any, T], *, budget_s: float) -> T:
    """Run `main` on a fresh event loop in a thread of its own, cancelled after `budget_s` (TimeoutError).

    Its own thread: in one pytest process with the browser tests, Playwright's sync API keeps an event loop
    running on the main thread, and `asyncio.run` refuses to start a second one there.
    """
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(asyncio.wait_for(main, budget_s)))
        except BaseException as e:  # handed to the caller's thread
            failure.append(e)

    thread = threading.Thread(target=target, name="load-test-driver")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


STEP_TIMEOUT_MS = 180_000  # one page update on a saturated 2-core machine: generous, the timings say what it took

# True when the app is connected, no script (or fragment) is running and no status widget shows: one moment.
_IDLE_JS = """
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null
    && app.getAttribute('data-test-connection-state') === 'CONNECTED'
    && app.getAttribute('data-test-script-state') === 'notRunning'
    && document.querySelector('[data-testid="stAppViewContainer"]') !== null
    && document.querySelector('[data-testid="stStatusWidget"]') === null;
}
"""

# Text that only a failure shows: Streamlit's exception box, or a traceback printed anywhere on the page.
_PROBLEMS_JS = """
() => {
  const out = [];
  for (const el of document.querySelectorAll('[data-testid="stException"]')) out.push('exception: ' + el.innerText);
  const body = document.body ? document.body.innerText : '';
  if (body.includes('Traceback (most recent call last)')) out.push('traceback text on the page');
  return out;
}
"""


def expect(actual: Any, message: str | None = None) -> Any:
    """Playwright's async `expect`, imported on first use (a missing playwright skips, it does not break import)."""
    from playwright.async_api import expect as _expect

    _expect.set_options(timeout=STEP_TIMEOUT_MS)  # its own default is 5 s: far too short for a loaded server
    return _expect(actual, message)


async def launch(pw: Any) -> Browser:
    browser: Browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    return browser


async def new_page(browser: Browser) -> Page:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(STEP_TIMEOUT_MS)
    page = await context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    return page


async def wait_idle(page: Page, timeout_ms: float = STEP_TIMEOUT_MS) -> None:
    await page.wait_for_function(_IDLE_JS, polling=50, timeout=timeout_ms)


async def visit(browser: Browser, url: str) -> None:
    """Open the app at `url` in a session of its own, wait until it is idle, close the session."""
    page = await new_page(browser)
    try:
        await page.goto(url)
        await expect(page.get_by_test_id("stMetricValue").first).to_be_visible()
        await wait_idle(page)
    finally:
        await page.context.close()


async def problems(page: Page) -> list[str]:
    found: list[str] = await page.evaluate(_PROBLEMS_JS)
    return found


def nav_link(page: Page, title: str) -> Locator:
    """The sidebar's link to a page (st.navigation); its text also holds the icon's name, hence `label`."""
    return page.get_by_test_id("stSidebarNavLink").filter(has=page.locator(f'[label="{title}"]'))


@dataclass
class Session:
    """One simulated student: what they did, how long each page update took, what went wrong."""

    index: int
    shots: Path | None = None  # where a failed step leaves a screenshot
    times: list[tuple[str, float]] = field(default_factory=list)  # (step, seconds)
    errors: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # what the test checks at the end
    current: str = ""  # the step under way, for a report when time runs out

    async def step(
        self,
        page: Page,
        name: str,
        action: Callable[[], Awaitable[object]],
        shows: Callable[[], Awaitable[object]],
        *,
        timed: bool = True,
    ) -> None:
        """Run `action`, wait until `shows()` passes and the app is idle; time it; raise on a problem.

        A failure is recorded in `errors` (with a screenshot next to the report) and re-raised, so the
        session stops at its first failed step: the steps after it depend on it.
        """
        self.current = name
        try:
            t0 = time.perf_counter()
            await action()
            await shows()
            await wait_idle(page)
            elapsed = time.perf_counter() - t0
            found = await problems(page)
            if found:
                raise AssertionError("; ".join(found))
        except Exception as e:
            self.errors.append(f"session {self.index}, step {name!r}: {type(e).__name__}: {str(e)[:600]}")
            if self.shots is not None:
                with contextlib.suppress(Exception):
                    await page.screenshot(path=str(self.shots / f"session{self.index:02d}_{name}.png"), full_page=True)
            raise
        if timed:
            self.times.append((name, elapsed))


def noise_png(name: str, width: int, height: int, seed: int) -> FilePayload:
    """A PNG of random pixels, as a file to upload: bytes that compress poorly, different for every seed."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buf, format="PNG")
    return {"name": name, "mimeType": "image/png", "buffer": buf.getvalue()}


# --- the report ----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks (numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def step_rows(sessions: list[Session]) -> list[list[object]]:
    """Per step: how many, p50, p95, max (seconds)."""
    by_step: dict[str, list[float]] = {}
    for s in sessions:
        for name, t in s.times:
            by_step.setdefault(name, []).append(t)
    return [[name, len(ts), percentile(ts, 50), percentile(ts, 95), max(ts)] for name, ts in by_step.items()]


def write_report(tmp: Path, name: str, title: str, text: str, data: dict[str, Any]) -> Path:
    """Write `<name>.md` and `<name>.json` under `tmp`; return the markdown file."""
    md = tmp / f"{name}.md"
    md.write_text(f"# {title}\n\n{text}\n")
    (tmp / f"{name}.json").write_text(json.dumps(data, indent=1, default=str))
    return md

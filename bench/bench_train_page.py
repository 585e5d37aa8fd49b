"""Page overhead of live training: a job's images/s with the training page open, over the bare trainer's.

Two ways to train the same model on the same data with the same settings, alternated `--reps` times:
  - bare: `resnet_core.train.Trainer(...).run()` in a fresh Python process of its own, no callback;
  - page: `streamlit run app.py` on a free loopback port (tests/serving.py), the Debian
    Chromium headless through Playwright with the same flags, `/training?preset=...` opened in a fresh
    browser context, "Stop after (seconds)" set to `--seconds` through the UI, "Start training" clicked,
    and the page kept open, polling its live curves, until the run's result is on screen.
Both report `TrainResult.images_per_s`: the steady-state training throughput (evaluation and the first
report window excluded). The page's number is read from its "Images per second" metric.

The settings are the training page's defaults for the chosen model on the built-in dataset (see
app_pages/training.py): `default_recipe(preset, "builtin")` with its epochs, batch size, learning rate,
seed 0 and `max_seconds=--seconds`; device "auto", torch's default thread count in both processes (set
both with `--threads`). Before each page run the bench checks the page's widgets hold those settings.

Besides the ratio, the bench records where the CPU time goes in each run: the trainer process (bare), the
server process and the browser's processes (page), and the websocket traffic the page's polling causes.

    .venv/bin/python bench/bench_train_page.py                   # resnet20, 3 x 60 s each way; about 10 min
    .venv/bin/python bench/bench_train_page.py --reps 5 --seconds 60
    .venv/bin/python bench/bench_train_page.py --threads 1       # torch threads of the run and of the bare runs
    .venv/bin/python bench/bench_train_page.py --set runner.postScriptGC=false   # A/B: a second server with it
    .venv/bin/python bench/bench_train_page.py --pin   # trainer/server on CPU 0, the browser on the others

With `--pin`, the bare trainer and the server (one torch thread each) run on CPU 0 and this script, Playwright
and Chromium on the other CPUs: the browser stands in for a student's own computer, so the ratio is the cost of
serving the live page, not of sharing two cores with a browser.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout, no install needed

from bench.machine import describe, load_1min  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT  # noqa: E402
from tests.browser.helpers import metric_value, wait_for_app  # noqa: E402
from tests.serving import option_words, serve  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from resnet_core.config import ResNetConfig
    from resnet_core.data import Dataset
    from resnet_core.train import TrainConfig

TARGET = 0.95  # page img/s over bare img/s
SECONDS_LABEL = "Stop after (seconds)"
IPS_LABEL = "Images per second"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the settings the page uses ---------------------------------------------------------------------------


def page_settings(preset: str, seconds: int, data: Dataset) -> tuple[ResNetConfig, TrainConfig, str]:
    """(model config, train config, URL query) of the training page's defaults for `preset` on the built-in
    data, stopped after `seconds`: what app_pages/training.py builds when only the seconds are changed."""
    from resnet_core.train import default_recipe
    from server.selection import from_query, to_query
    from server.settings import LIMITS

    sel, warnings = from_query({"preset": preset, "input": "3x32x32"})
    if warnings:
        raise SystemExit(f"preset {preset!r}: {warnings}")
    model_cfg = sel.config.with_(in_channels=data.input_size[0], num_classes=len(data.classes))
    recipe = default_recipe(model_cfg, "builtin")
    train_cfg = recipe.with_(epochs=min(recipe.epochs, LIMITS.train_max_epochs), batch_size=recipe.batch_size,
                             lr=float(recipe.lr), seed=0, max_seconds=float(seconds))
    query = "&".join(f"{k}={v}" for k, v in to_query(sel).items())
    return model_cfg, train_cfg, query


# --- CPU time of process trees, from /proc ----------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds user + system) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK  # ppid; utime + stime


def tree_cpu_s(root: int, *, exe_contains: str = "") -> float:
    """CPU seconds of `root`'s live descendants (and itself) whose executable path contains `exe_contains`."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (s := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = s
    total = 0.0
    for pid, (_, cpu) in stats.items():
        p, seen = pid, 0
        while p not in (0, 1, root) and p in stats and seen < 64:
            p, seen = stats[p][0], seen + 1
        if p != root:
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""
        if exe_contains in exe:
            total += cpu
    return total


# --- one bare run: a child process ------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    kind: str  # "bare" or "page"
    images_per_s: float
    wall_s: float  # from the start (click or call) to the result
    trainer_cpu_s: float  # bare: the trainer process; page: the server process (trainer + Streamlit)
    browser_cpu_s: float = 0.0  # page only: every Chromium process
    ws_messages: int = 0  # page only: websocket messages the page received
    ws_bytes: int = 0
    idle_server_cpu: float = 0.0  # page only: server CPU seconds per second with the page open after the run
    idle_browser_cpu: float = 0.0  # page only: the same for the browser


def bare_child(preset: str, seconds: int) -> None:
    """Runs in the child: train once, print one JSON line."""
    import torch

    from resnet_core.data import load_dataset
    from resnet_core.train import Trainer

    data = load_dataset("builtin", download=False)
    model_cfg, train_cfg, _ = page_settings(preset, seconds, data)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = Trainer(model_cfg, data, train_cfg).run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({"ips": result.images_per_s, "wall": wall, "cpu": cpu, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "device": result.device}))


TRAINER_CPUS: set[int] | None = None  # --pin: where the bare trainer and the server run


def _pinned() -> None:
    """In a child, before it runs: keep it on TRAINER_CPUS (with --pin)."""
    if TRAINER_CPUS is not None:
        os.sched_setaffinity(0, TRAINER_CPUS)


def bare_run(preset: str, seconds: int, env: dict[str, str]) -> tuple[Run, dict[str, object]]:
    out = subprocess.run(
        [sys.executable, __file__, "--bare-child", "--preset", preset, "--seconds", str(seconds)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True, timeout=seconds + 600,
        preexec_fn=_pinned,
    )
    info = json.loads(out.stdout.strip().splitlines()[-1])
    return Run("bare", float(info["ips"]), float(info["wall"]), float(info["cpu"])), info


# --- one page run -------------------------------------------------------------------------------------------


def set_seconds(page: Page, seconds: int) -> None:
    """Move the "Stop after" slider to `seconds` with the keyboard (Home, then one step per arrow)."""
    slider = page.get_by_test_id("stSlider").filter(has_text=SECONDS_LABEL).get_by_role("slider")
    slider.focus()
    slider.press("Home")
    for _ in range(seconds - int(slider.get_attribute("min") or 10)):
        slider.press("ArrowRight")
    wait_for_app(page)
    if slider.input_value() != str(seconds):
        raise RuntimeError(f"the slider shows {slider.input_value()}, not {seconds}")


def check_widgets(page: Page, train_cfg: TrainConfig) -> None:
    """The page's settings are the ones the bare runs use."""
    def number(label: str) -> float:
        return float(page.get_by_label(label, exact=True).input_value())

    shown = {
        "epochs": number("Epochs"),
        "lr": number("Learning rate"),
        "seed": number("Seed"),
        "seconds": float(page.get_by_test_id("stSlider").filter(has_text=SECONDS_LABEL).get_by_role("slider")
                         .input_value()),
        "batch": float(page.get_by_test_id("stSlider").filter(has_text="Batch size").get_by_role("slider")
                       .get_attribute("aria-valuetext") or "nan"),
    }
    expected = {"epochs": train_cfg.epochs, "lr": train_cfg.lr, "seed": train_cfg.seed,
                "seconds": train_cfg.max_seconds, "batch": train_cfg.batch_size}
    for k, v in expected.items():
        if abs(shown[k] - float(v or 0)) > 1e-9:
            raise RuntimeError(f"the page's {k} is {shown[k]}, the bare runs use {v}")


def page_run(browser: Browser, base_url: str, query: str, train_cfg: TrainConfig, server_pid: int,
             idle_s: float) -> Run:
    seconds = int(train_cfg.max_seconds or 0)
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]  # a new session each time
    try:
        page = context.new_page()
        page.set_default_timeout(120_000)
        ws = {"messages": 0, "bytes": 0, "on": False}

        def on_frame(payload: str | bytes) -> None:
            if ws["on"]:
                ws["messages"] += 1
                ws["bytes"] += len(payload)

        page.on("websocket", lambda w: w.on("framereceived", on_frame))
        page.goto(f"{base_url}/training?{query}")
        wait_for_app(page)
        set_seconds(page, seconds)
        check_widgets(page, train_cfg)

        server0, browser0 = tree_cpu_s(server_pid), tree_cpu_s(os.getpid(), exe_contains="chrom")
        ws["on"] = True
        t0 = time.perf_counter()
        page.get_by_role("button", name="Start training").click()
        # The page polls its live curves (a fragment rerun every second) until the result shows.
        page.get_by_test_id("stMetricLabel").filter(has_text=IPS_LABEL).wait_for(timeout=(seconds + 600) * 1000)
        wall = time.perf_counter() - t0
        ws["on"] = False
        server_cpu = tree_cpu_s(server_pid) - server0
        browser_cpu = tree_cpu_s(os.getpid(), exe_contains="chrom") - browser0
        wait_for_app(page)
        ips = float(metric_value(page, IPS_LABEL).replace(",", ""))
        # What the open page costs without any training: it keeps polling (and redrawing the finished curves).
        server0, browser0 = tree_cpu_s(server_pid), tree_cpu_s(os.getpid(), exe_contains="chrom")
        time.sleep(idle_s)
        idle_server = (tree_cpu_s(server_pid) - server0) / idle_s
        idle_browser = (tree_cpu_s(os.getpid(), exe_contains="chrom") - browser0) / idle_s
        return Run("page", ips, wall, server_cpu, browser_cpu, int(ws["messages"]), int(ws["bytes"]), idle_server,
                   idle_browser)
    finally:
        context.close()


# --- the report -------------------------------------------------------------------------------------------


def table(bare: list[Run], pages: dict[str, list[Run]], train_cfg: TrainConfig) -> list[str]:
    """The markdown tables: img/s, the ratio to the bare trainer per page variant, where the CPU time goes."""
    b = statistics.median(r.images_per_s for r in bare)

    def stats(runs: list[Run]) -> str:
        ips = [r.images_per_s for r in runs]
        return f"{statistics.median(ips):,.0f} | {min(ips):,.0f} | {max(ips):,.0f} | {len(runs)}"

    lines = ["| run | img/s median | min | max | n |", "|---|---:|---:|---:|---:|",
             f"| bare trainer (own process) | {stats(bare)} |"]
    lines += [f"| training page open in Chromium{variant} | {stats(runs)} |" for variant, runs in pages.items()]
    lines += ["", "| page overhead | page / bare img/s (medians) | target | met | each alternated pair |",
              "|---|---:|---:|---|---|"]
    for variant, runs in pages.items():
        ratio = statistics.median(r.images_per_s for r in runs) / b
        pairs = ", ".join(f"{pr.images_per_s / br.images_per_s:.3f}" for br, pr in zip(bare, runs))
        lines.append(f"| page{variant} / bare | {ratio:.3f} | ≥ {TARGET} | {'yes' if ratio >= TARGET else '**no**'} | "
                     f"{pairs} |")
    lines += [
        "",
        "Where the CPU time goes (medians; wall s runs from the call or the click to the result; idle: CPU seconds per",
        "second with the page still open after its run, polling, no training):",
        "",
        "| run | wall s | trainer/server CPU s | browser CPU s | CPU s per wall s | websocket msgs/s | kB/s "
        "| idle server | idle browser |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in (("bare", bare), *((f"page{v}", r) for v, r in pages.items())):
        def med(f: str, runs: list[Run] = runs) -> float:
            return statistics.median(getattr(r, f) for r in runs)

        wall = med("wall_s")
        idle = f"{med('idle_server_cpu'):.2f} | {med('idle_browser_cpu'):.2f}" if name != "bare" else "- | -"
        lines.append(
            f"| {name} | {wall:.1f} | {med('trainer_cpu_s'):.1f} | {med('browser_cpu_s'):.1f} | "
            f"{(med('trainer_cpu_s') + med('browser_cpu_s')) / wall:.2f} | {med('ws_messages') / wall:.1f} | "
            f"{med('ws_bytes') / wall / 1e3:.1f} | {idle} |"
        )
    lines += ["", f"Settings (all runs): {json.dumps({k: v for k, v in asdict(train_cfg).items() if k != 'device'})}"]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="resnet20", help="the model (a preset; default resnet20)")
    parser.add_argument("--seconds", type=int, default=60, help="'Stop after' of every run (default 60)")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds the page stays open after each run, to measure its polling alone (default 10)")
    parser.add_argument("--reps", type=int, default=3, help="runs of each kind, alternated (default 3)")
    parser.add_argument("--threads", type=int, help="torch threads in the server and the bare runs (default: torch's)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a Streamlit option for a second server, whose page runs join the alternation (A/B), e.g. "
             "--set runner.postScriptGC=false (repeatable)",
    )
    parser.add_argument("--pin", action="store_true",
                        help="trainer and server on CPU 0 with one torch thread; browser on the other CPUs")
    parser.add_argument("--bare-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        bare_child(args.preset, args.seconds)
        return 0

    from playwright.sync_api import sync_playwright

    if not CHROMIUM.is_file():
        print(f"Chromium not found at {CHROMIUM}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):  # -> SystemExit, so the `finally` below stops the servers
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    print(describe() + "\n", flush=True)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    global TRAINER_CPUS
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            print("--pin needs two CPUs", file=sys.stderr)
            return 2
        TRAINER_CPUS = {cpus[0]}
        os.sched_setaffinity(0, cpus[1:])  # this script, Playwright's driver and Chromium inherit it
        args.threads = args.threads or 1
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
        # The run trains in a Ray worker of the server's embedded instance: one slot of this many CPUs, whose
        # torch threads are as many (with --pin the instance inherits the server's CPU).
        env["RESNET_RAY_CPUS"] = str(args.threads)
    from resnet_core.data import load_dataset

    _, train_cfg, query = page_settings(args.preset, args.seconds, load_dataset("builtin", download=False))
    variants = {"": []} | ({f" ({', '.join(args.set)})": args.set} if args.set else {})
    bare: list[Run] = []
    pages: dict[str, list[Run]] = {v: [] for v in variants}
    info: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_page_") as tmp, ExitStack() as stack:
        servers = {}
        for i, (variant, settings) in enumerate(variants.items()):
            servers[variant] = stack.enter_context(serve(
                log_path=Path(tmp) / f"server{i}.log", options=option_words(settings), preexec_fn=_pinned,
                env={**env, "RESNET_RUNS_DIR": str(Path(tmp) / f"runs{i}")}))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                for i in range(args.reps):  # alternate, bare first: slow drifts of the machine hit every kind
                    run, info = bare_run(args.preset, args.seconds, env)
                    bare.append(run)
                    print(f"  bare {i + 1}: {run.images_per_s:,.0f} img/s (load {load_1min()})", file=sys.stderr)
                    for variant, server in servers.items():
                        run = page_run(browser, server.url, query, train_cfg, server.pid, args.idle)
                        pages[variant].append(run)
                        print(f"  page{variant} {i + 1}: {run.images_per_s:,.0f} img/s (load {load_1min()})",
                              file=sys.stderr)
                chromium_version = browser.version
            finally:
                browser.close()

    print("## Page overhead of live training\n")
    print(
        f"Run: {info.get('threads')} torch threads in the bare runs"
        f"{'' if args.threads else ', the default; the server uses the same default'} · device {info.get('device')} "
        f"· Chromium {chromium_version} (headless) · load average (1 min) after {load_1min()} "
        + (f"(the trainer and the server on CPU {min(TRAINER_CPUS)}, the browser and this script on the others)\n"
           if TRAINER_CPUS else "(trainer, server, browser and any other process share these CPUs)\n")
    )
    print(f"{args.preset} on the built-in shapes, the page's default settings, every run stopped after "
          f"{args.seconds} s; {args.reps} runs of each kind, alternated. img/s is the job's steady-state training "
          "throughput (TrainResult.images_per_s; on the page, its 'Images per second').\n")
    print("\n".join(table(bare, pages, train_cfg)))
    print("\nRaw img/s: bare " + ", ".join(f"{r.images_per_s:.0f}" for r in bare) + "".join(
        f" · page{v} " + ", ".join(f"{r.images_per_s:.0f}" for r in runs) for v, runs in pages.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Residual lab: how long does "the signal at initialisation" take for plain-110 vs ResNet-110 at batch 32?

In-process, on the CPU, exactly what the "Why residuals work" page computes when depth 110 is picked (before its
st.cache_data remembers it): `compare_at_init(110, x, y, batchnorm=..., seed=0)` from resnet_core.lab, on the
page's own batch (`ui.lab._batch(110)`: the first 32 built-in test images, normalised). One call builds both
networks (seed 0) and runs one forward and one backward pass of each in training mode.

Cases, each repetition running every case once in a rotating order (so load from other processes on this shared
machine hits every case alike); `--warmup` untimed repetitions first, then the median of `--reps`:

  (a) `compare_at_init`, batch normalisation on (the page's default);
  (b) `compare_at_init`, batch normalisation off (the page's toggle);
  (c) the same measurement through `loss.backward()` with `retain_grad()` on every conv output: autograd
      then also computes every weight's gradient, which nothing reads;
  (d) the floor: both networks built and run forward only, in training mode, under `torch.no_grad()`;
  (e) (a) on one torch thread: torch's OpenMP threads meet at a barrier in every op, so when other processes
      hold the cores each op waits for the slowest thread's next time slice; one thread never waits.

Before timing, (a) is checked against (c): the profiles must be equal, bit for bit, or the bench stops.

    .venv/bin/python bench/bench_lab.py            # from the repo root; about a minute
    .venv/bin/python bench/bench_lab.py --reps 9 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run from a checkout, no install needed

import streamlit.logger  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from resnet_core.lab import SignalProfile, compare_at_init, main_path_convs, scaled, twins  # noqa: E402
from resnet_core.model import ResNet, build_model  # noqa: E402

# `ui.lab` caches through Streamlit, which warns that no server is running when its caches are made; not news here.
streamlit.logger.set_log_level("error")
from ui.lab import SIGNAL_BATCH, _batch  # noqa: E402

DEPTH = 110
TARGET_S = 2.0
BUSY_SPREAD = 1.5  # max/min of (d) above this: the machine was busy, the run is flagged
CASES = {
    "a": "(a) `compare_at_init(110)`, BN on (the page's default)",
    "b": "(b) `compare_at_init(110)`, BN off",
    "c": "(c) the same with `loss.backward()` + `retain_grad()` (weight gradients too)",
    "d": "(d) floor: build both + forward only (`no_grad`, train mode)",
    "e": "(e) (a) on one torch thread",
}
TARGETED = ("a", "b")  # what the page runs (on torch's default threads); (c) to (e) explain it


def _models(x: Tensor, y: Tensor) -> list[ResNet]:
    """Both twins exactly as `compare_at_init` builds them (width 1, seed 0, the batch's channels and classes)."""
    return [
        build_model(scaled(cfg, 1.0).with_(in_channels=x.shape[1], num_classes=int(y.max()) + 1), seed=0)
        for cfg in twins(DEPTH)
    ]


def _with_weight_grads(model: ResNet, x: Tensor, y: Tensor) -> SignalProfile:
    """The measurement through `loss.backward()`: every conv output retains its gradient, and autograd fills
    every parameter's `.grad` on the way."""
    outputs: dict[str, Tensor] = {}

    def keeper(name: str) -> Callable[..., None]:
        def keep(m: object, a: object, out: Tensor) -> None:
            out.retain_grad()
            outputs[name] = out

        return keep

    handles = [conv.register_forward_hook(keeper(name)) for name, conv in main_path_convs(model)]
    model.train()
    try:
        F.cross_entropy(model(x), y).backward()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    names = tuple(outputs)
    return SignalProfile(
        layers=names,
        forward_rms=tuple(float(outputs[n].detach().pow(2).mean().sqrt()) for n in names),
        grad_rms=tuple(float(outputs[n].grad.pow(2).mean().sqrt()) for n in names),  # type: ignore[union-attr]
    )


def _reference(x: Tensor, y: Tensor) -> dict[str, SignalProfile]:
    return {name: _with_weight_grads(m, x, y) for name, m in zip(("plain", "residual"), _models(x, y), strict=True)}


def _forward_only(x: Tensor, y: Tensor) -> None:
    with torch.no_grad():
        for model in _models(x, y):
            model.train()(x)


def _one_thread(fn: Callable[[], object]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()
    finally:
        torch.set_num_threads(threads)


def measure(reps: int, warmup: int) -> dict[str, list[float]]:
    x, y = _batch(DEPTH)
    calls: dict[str, Callable[[], object]] = {
        "a": lambda: compare_at_init(DEPTH, x, y, batchnorm=True, seed=0),
        "b": lambda: compare_at_init(DEPTH, x, y, batchnorm=False, seed=0),
        "c": lambda: _reference(x, y),
        "d": lambda: _forward_only(x, y),
        "e": lambda: _one_thread(lambda: compare_at_init(DEPTH, x, y, batchnorm=True, seed=0)),
    }
    if compare_at_init(DEPTH, x, y, batchnorm=True, seed=0) != _reference(x, y):
        raise SystemExit("compare_at_init and the loss.backward() reference differ: the timings would compare "
                         "two different measurements")
    keys = list(calls)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for rep in range(warmup + reps):
        order = keys[rep % len(keys):] + keys[: rep % len(keys)]
        for k in order:
            t = time.perf_counter()
            calls[k]()
            if rep >= warmup:
                times[k].append(time.perf_counter() - t)
        print(f"  repetition {rep + 1}/{warmup + reps} done", file=sys.stderr, flush=True)
    return times


def _loadavg() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    wall = time.perf_counter()
    load_before = _loadavg()
    times = measure(args.reps, args.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"## Residual lab: signal at initialisation, plain-{DEPTH} vs ResNet-{DEPTH}\n")
    print(
        f"Machine: {_cpu_name()}, os.cpu_count()={os.cpu_count()}, torch threads {torch.get_num_threads()}, "
        f"no GPU used · {platform.platform()} · Python {platform.python_version()} · torch {torch.__version__} · "
        f"load average before/after {load_before} / {_loadavg()} · whole run {time.perf_counter() - wall:.0f} s\n"
    )
    print(
        f"Batch {SIGNAL_BATCH['cifar']} of 3x32x32 built-in test images (the page's), seed 0, CPU; "
        f"median of {args.reps} after {args.warmup} warm-up, cases interleaved. (a) and (c) give equal profiles, "
        "bit for bit (checked).\n"
    )
    print("| case | median (s) | min | max | target | met |")
    print("|---|---:|---:|---:|---|---|")
    for key, name in CASES.items():
        v = times[key]
        target, met = (f"< {TARGET_S:g} s", "yes" if med[key] < TARGET_S else "**no**") if key in TARGETED else (
            "–", "–")
        print(f"| {name} | {med[key]:.2f} | {min(v):.2f} | {max(v):.2f} | {target} | {met} |")
    print(f"\n(c) / (a), medians: {med['c'] / med['a']:.2f}x; (a) / (d): {med['a'] / med['d']:.2f}x.")
    spread = max(times["d"]) / min(times["d"])
    if spread > BUSY_SPREAD:
        print(
            f"\nWarning: the forward-only floor (d) varied {spread:.1f}x between repetitions (max/min): other "
            "processes were using the CPUs, so these medians partly measure the contention (compare (e)). Rerun on "
            "an idle machine."
        )
    return 0 if all(med[k] < TARGET_S for k in TARGETED) else 1


if __name__ == "__main__":
    sys.exit(main())

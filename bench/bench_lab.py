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

With `--analyses`, the lab's third part instead: plain-20 and ResNet-20 (full width) race on the built-in shapes
with the page's recipe for `--train-seconds`, then each analysis runs on the pair exactly as its job does
(`resnet_core.residuals.run_analysis`, 500 test images, an 11 × 11 loss surface), timed against its target
(≤ 120 s each on a CPU, ≤ 5 min together); the sentences the page would show follow, with the numbers measured.

    .venv/bin/python bench/bench_lab.py --analyses --train-seconds 240     # about 8 minutes
"""

from __future__ import annotations

import argparse
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

from bench.machine import describe, load_1min  # noqa: E402
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


ANALYSIS_TARGET_S = 120.0
ANALYSES_TOTAL_TARGET_S = 300.0


def analyses(train_seconds: float) -> int:
    """Train the ResNet-20 / plain-20 pair, then time each analysis on it (see the module docstring)."""
    from resnet_core.lab import race, race_verdict
    from resnet_core.residuals import (
        ANALYSES,
        run_analysis,
        say_erf,
        say_landscape,
        say_lesion,
        say_responses,
        say_shattered,
    )
    from resnet_core.train import RACE_RECIPES
    from server.work import worker_dataset

    print(describe() + "\n", flush=True)
    data = worker_dataset("builtin")
    recipe = RACE_RECIPES["builtin"].with_(epochs=30, max_seconds=train_seconds)
    plain, residual = twins(20)
    racers = {"plain-20": plain, "ResNet-20": residual}
    t = time.perf_counter()
    results = race(racers, data, recipe)
    trained_s = time.perf_counter() - t
    models = {name: r.model for name, r in results.items()}
    names = ("plain-20", "ResNet-20")
    print("## Residual lab, part 3: the analyses on a trained plain-20 / ResNet-20 pair\n")
    print(f"Trained {trained_s:.0f} s on the built-in shapes ({recipe.optimizer}, seed {recipe.seed}); test accuracy "
          + ", ".join(f"{n} {results[n].test_accuracy:.1%} (epoch {results[n].last.epoch})" for n in names)
          + f"; torch threads {torch.get_num_threads()}.\n")
    times, measured = {}, {}
    for analysis in ANALYSES:
        t = time.perf_counter()
        measured[analysis] = run_analysis(analysis, models, data, seed=recipe.seed)
        times[analysis] = time.perf_counter() - t
        print(f"  {analysis}: {times[analysis]:.1f} s", file=sys.stderr, flush=True)
    print("| analysis (both twins) | s | target | met |")
    print("|---|---:|---|---|")
    for analysis in ANALYSES:
        ok = times[analysis] <= ANALYSIS_TARGET_S
        print(f"| {analysis} | {times[analysis]:.1f} | ≤ {ANALYSIS_TARGET_S:.0f} s | {'yes' if ok else '**no**'} |")
    total = sum(times.values())
    print(f"| all {len(ANALYSES)} | {total:.1f} | ≤ {ANALYSES_TOTAL_TARGET_S:.0f} s | "
          f"{'yes' if total <= ANALYSES_TOTAL_TARGET_S else '**no**'} |\n")
    from ui.charts import smooth  # the page's smoothing: its verdict reads the same numbers

    final = {n: smooth([float(p.loss) for p in results[n].history if p.kind == "step" and p.loss is not None])[-1]
             for n in names}
    m = measured
    print("What the page says, from these numbers:\n")
    print(f"- Race: {race_verdict(final, len(data.classes))}")
    print(f"- Responses: {say_responses(m['responses'][names[0]], m['responses'][names[1]], names)}")
    print(f"- Lesion: {say_lesion(m['lesion'][names[0]], m['lesion'][names[1]], names, len(data.classes))}")
    print(f"- Landscape: {say_landscape(m['landscape'][names[0]], m['landscape'][names[1]], names)}")
    print(f"- ERF: {' '.join(say_erf(m['erf'][n], n) for n in names)}")
    print(f"- Shattered gradients: {say_shattered(m['shattered'][names[0]], m['shattered'][names[1]], names)}")
    return 0 if all(v <= ANALYSIS_TARGET_S for v in times.values()) and total <= ANALYSES_TOTAL_TARGET_S else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions (default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    parser.add_argument("--analyses", action="store_true", help="the lab's analyses on a trained pair instead")
    parser.add_argument("--train-seconds", type=float, default=240, help="--analyses: the pair's training time")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.analyses:
        return analyses(args.train_seconds)

    print(describe() + "\n", flush=True)
    wall = time.perf_counter()
    times = measure(args.reps, args.warmup)
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"## Residual lab: signal at initialisation, plain-{DEPTH} vs ResNet-{DEPTH}\n")
    print(
        f"Run: torch threads {torch.get_num_threads()}, no GPU used · load average (1 min) after {load_1min()} · "
        f"whole run {time.perf_counter() - wall:.0f} s\n"
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

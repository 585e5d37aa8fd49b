"""Layer analysis vs torchinfo: how long does it take to get a ResNet's per-layer numbers?

Ours: `resnet_core.analyze(name, input_size=(3, H, W), batch_size=B)`, which works the shapes,
parameters and MACs out analytically (no convolution runs). Peer: `torchinfo.summary(model,
input_size=(B, 3, H, W), verbose=0)` with its defaults, i.e. a real forward pass on the CPU, on
`torchvision.models.<name>()` built once outside the timing (only the summary call is timed).

Each case first checks that both tools report the same total parameter count, so the table is
known to compare the same model; that call is also the first warm-up. Each tool is then timed
with time.perf_counter (ours 50 reps after 3 warm-ups in all, torchinfo 5, or 3 for the slow
resnet50 case, after 1); the table shows the medians. Threads are left at torch's default.

    python bench/bench_analysis.py           # full run (1.5 to 2.5 min on 2 CPU cores, nearly all torchinfo)
    python bench/bench_analysis.py --quick   # smoke run: ours 10 reps, torchinfo 1 rep
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed

import torch
import torchinfo
import torchvision

import resnet_core
import resnet_core.analysis
from bench.machine import describe


@dataclass(frozen=True)
class Case:
    name: str
    side: int
    batch: int
    torchinfo_reps: int  # full run; --quick uses 1

    @property
    def label(self) -> str:
        return f"{self.name} @ {self.side}x{self.side}, batch {self.batch}"


CASES = (
    Case("resnet18", 224, 1, torchinfo_reps=5),
    Case("resnet152", 224, 1, torchinfo_reps=5),
    Case("resnet50", 1024, 8, torchinfo_reps=3),
)
OURS_WARMUP, OURS_REPS, OURS_REPS_QUICK = 3, 50, 10
TORCHINFO_WARMUP = 1


@dataclass(frozen=True)
class Result:
    case: Case
    ours_ms: float
    torchinfo_ms: float
    params_agree: bool

    @property
    def speedup(self) -> float:
        return self.torchinfo_ms / self.ours_ms


def median_ms(fn: Callable[[], object], warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_case(case: Case, quick: bool) -> Result:
    input_size = (3, case.side, case.side)

    def ours() -> resnet_core.Report:
        # analyze() memoises the plan of a config (functools.lru_cache on analysis._plan); clear it
        # so that every call, warm-ups included, does the whole analysis from the config up.
        resnet_core.analysis._plan.cache_clear()
        return resnet_core.analyze(case.name, input_size=input_size, batch_size=case.batch)

    model = getattr(torchvision.models, case.name)()

    def theirs() -> torchinfo.ModelStatistics:
        return torchinfo.summary(model, input_size=(case.batch, *input_size), verbose=0)

    # The check is also the warm-up of each tool (torchinfo on resnet50 @ 1024, batch 8 takes ~30 s a call).
    params_agree = ours().total_params == theirs().total_params
    ours_ms = median_ms(ours, OURS_WARMUP - 1, OURS_REPS_QUICK if quick else OURS_REPS)
    torchinfo_ms = median_ms(theirs, TORCHINFO_WARMUP - 1, 1 if quick else case.torchinfo_reps)
    return Result(case, ours_ms, torchinfo_ms, params_agree)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer reps (ours 10, torchinfo 1): a smoke run")
    quick = parser.parse_args(argv).quick

    print(describe())
    print(f"run: torch threads {torch.get_num_threads()}, torchinfo {torchinfo.__version__}, "
          f"torchvision {torchvision.__version__}")
    print(
        f"reps: ours {OURS_REPS_QUICK if quick else OURS_REPS} after {OURS_WARMUP} warm-ups, torchinfo "
        f"{'1' if quick else '/'.join(str(c.torchinfo_reps) for c in CASES)} after {TORCHINFO_WARMUP} warm-up"
        f"{' (--quick)' if quick else ''}\n"
    )

    results = []
    for case in CASES:
        print(f"timing {case.label} ...", file=sys.stderr, flush=True)
        results.append(run_case(case, quick))

    print("| case | ours median (ms) | torchinfo median (ms) | speed-up (x) | params agree |")
    print("|---|---:|---:|---:|:---:|")
    for r in results:
        print(
            f"| {r.case.label} | {r.ours_ms:.2f} | {r.torchinfo_ms:,.1f} | {r.speedup:,.0f} | "
            f"{'✓' if r.params_agree else '✗'} |"
        )

    by_name = {(r.case.name, r.case.side, r.case.batch): r for r in results}
    r152, r50 = by_name["resnet152", 224, 1], by_name["resnet50", 1024, 8]
    slowest = max(results, key=lambda r: r.ours_ms)
    targets = [
        (f"speed-up >= 20x on {r152.case.label}", r152.speedup >= 20, f"{r152.speedup:,.0f}x"),
        (f"speed-up >= 100x on {r50.case.label}", r50.speedup >= 100, f"{r50.speedup:,.0f}x"),
        ("ours < 100 ms on every case", slowest.ours_ms < 100, f"slowest {slowest.ours_ms:.2f} ms"),
        ("params agree on every case", all(r.params_agree for r in results), ""),
    ]
    print("\ntargets:")
    for text, met, got in targets:
        print(f"  {'met    ' if met else 'NOT MET'}  {text}" + (f" ({got})" if got else ""))
    return 0 if all(met for _, met, _ in targets) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Every model in the picker on its default training path: the teaching recipe against the recipe it replaced.

Each model trains on the built-in shapes (10,000 training images at their own 32x32, 2,000 test images) as the
Training page starts it by default: `default_recipe(model, "builtin")` (AdamW, zero-initialised residual
branches, warm-up) for 2 epochs under the page's default 120 s limit. Beside it, in the same run, the recipe
the page used before (SGD, lr 0.05, momentum 0.9, weight decay 5e-4, 0.2-epoch warm-up, no zero-init). Per model
and recipe: optimiser steps done, the first and last reported training loss (each the mean of 10 steps), the
highest report over the first, test accuracy, images/s and seconds. One table, one row per model, the ratio of
test accuracies last.

    python bench/bench_recipes.py                       # the representative set, 120 s each
    python bench/bench_recipes.py --seconds 30 --models resnet20,resnet50 --no-peer
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed

import torch

from bench.machine import describe
from resnet_core import PRESETS, ResNetConfig
from resnet_core.data import Dataset, builtin
from resnet_core.train import TrainConfig, Trainer, default_recipe

MODELS: dict[str, ResNetConfig] = {
    **{name: PRESETS[name] for name in ("resnet20", "resnet56", "plain56", "resnet18", "resnet50", "resnet50_v1",
                                        "resnext50_32x4d", "wide_resnet50_2")},
    "custom-6-stages": ResNetConfig(blocks=(1,) * 6, widths=(16, 32, 64, 128, 256, 512), stem="cifar", stem_width=16),
    "custom-1-channel": ResNetConfig(blocks=(2, 2), widths=(16, 32), stem="cifar", stem_width=16, in_channels=1,
                                     num_classes=7),
}
# The built-in shapes' recipe before the teaching recipe: what the page trained every model with.
PEER = TrainConfig(epochs=2, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                   warmup_epochs=0.2, augment=False, channels_last=True)


@dataclass(frozen=True)
class Row:
    steps: int
    first_loss: float
    last_loss: float
    peak_over_first: float
    test_accuracy: float
    images_per_s: float
    seconds: float
    end: str


def grey(data: Dataset) -> Dataset:
    """The same shapes in one channel (for a 1-channel model): the mean of R, G and B."""
    def g(x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(1, keepdim=True).round().to(torch.uint8)
    return Dataset(data.name, data.classes, g(data.x_train), data.y_train, g(data.x_test), data.y_test, (0.5,),
                   (0.25,))


def train(cfg: ResNetConfig, data: Dataset, recipe: TrainConfig, seconds: float) -> Row:
    run = recipe.with_(device="cpu", max_seconds=seconds, log_every=10)
    start = time.perf_counter()
    result = Trainer(cfg, data, run).run()
    wall = time.perf_counter() - start
    losses = [p.loss for p in result.history if p.kind == "step" and p.loss is not None]
    finite = [x for x in losses if x == x and x != float("inf")]
    first = losses[0] if losses else float("nan")
    return Row(steps=result.last.step, first_loss=first, last_loss=losses[-1] if losses else float("nan"),
               peak_over_first=max(finite) / first if finite else float("nan"), test_accuracy=result.test_accuracy,
               images_per_s=result.images_per_s, seconds=wall, end=result.end)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="the time limit of each run (page default 120)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated names of: " + ", ".join(MODELS))
    parser.add_argument("--no-peer", action="store_true", help="only the teaching recipe")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(MODELS)}")

    print(describe())
    print(f"run: torch threads {torch.get_num_threads()}, device cpu")
    print(f"data: built-in shapes, 10,000 train / 2,000 test images at 32x32; each run: 2 epochs (624 steps of "
          f"batch 32) or {args.seconds:g} s, whichever comes first", flush=True)
    data = builtin()
    rows: list[str] = [
        "| model | recipe | steps | first → last loss | peak / first | test acc | img/s | s | ended |",
        "|---|---|---:|---|---:|---:|---:|---:|---|",
    ]
    ratios: list[str] = []
    for name in names:
        cfg = MODELS[name]
        model_data = grey(data) if cfg.in_channels == 1 else data
        recipes = {"teaching": default_recipe(cfg, "builtin")}
        if not args.no_peer:
            recipes["previous (SGD)"] = PEER
        accs: dict[str, float] = {}
        for label, recipe in recipes.items():
            r = train(cfg, model_data, recipe, args.seconds)
            accs[label] = r.test_accuracy
            rows.append(f"| {name} | {label} | {r.steps} | {r.first_loss:.2f} → {r.last_loss:.2f} | "
                        f"{r.peak_over_first:.2f} | {r.test_accuracy:.1%} | {r.images_per_s:,.0f} | {r.seconds:.0f} | "
                        f"{r.end} |")
            print(rows[-1], flush=True)
        if len(accs) == 2:
            ratios.append(f"| {name} | {accs['teaching']:.1%} | {accs['previous (SGD)']:.1%} | "
                          f"{accs['teaching'] / max(accs['previous (SGD)'], 1e-9):.2f}× |")
    print()
    print("\n".join(rows))
    if ratios:
        print()
        print("| model | teaching | previous (SGD) | ratio |")
        print("|---|---:|---:|---:|")
        print("\n".join(ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Recipes: how each kind of run trains, and what accuracy to expect from it.

Three families, each a `TrainConfig`:
- The teaching recipe (`default_recipe`): what the Training page and the CLI start from, for *any* model
  the picker allows on any dataset offered. AdamW gives every weight its own step size, so a 7x7 stem conv
  whose gradient is 30x ResNet-20's (a scale-invariant weight under BN with small entries) and a plain-56
  whose gradient norm starts near 2,000 train with the same learning rate as ResNet-20; SGD at one rate
  either diverges on the first or crawls on the second (docs/benchmarks.md, "Recipes"). Each residual
  branch's last BN starts at zero (Goyal et al. 2017, §5.1), so a deep net starts as a shallow one; a
  plain net has no branch to zero, so a plain twin and its residual twin differ only by the shortcuts.
  A linear warm-up keeps the first steps, with untrained BN statistics, from overshooting, and the
  learning rate follows the batch size (`scaled_lr`).
- The common CIFAR-10 recipe for ResNet-18 (`RECIPES["resnet18_cifar"]`), SGD as published.
- The residual lab's race recipes (`RACE_RECIPES`): the paper's (He et al. 2016, §4.2) on CIFAR-10.
"""

from __future__ import annotations

import math

from ..config import ResNetConfig, resolve
from .config import TrainConfig, is_int

# The batch the teaching recipe's learning rate is tuned for; other batches scale it (`scaled_lr`).
TEACHING_BATCH = 32

TEACHING = TrainConfig(
    epochs=2, batch_size=TEACHING_BATCH, optimizer="adamw", lr=4e-3, momentum=0.9, weight_decay=0.05,
    schedule="cosine", warmup_epochs=0.1, zero_init_residual=True, augment=False, channels_last=True,
)

def scaled_lr(recipe: TrainConfig, batch_size: int) -> float:
    """The recipe's learning rate for another batch size: SGD's grows linearly with the batch (Goyal et al.
    2017, §2.1), AdamW's with its square root (its step is already normalised by the gradient's scale)."""
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: an integer >= 1")
    ratio = batch_size / recipe.batch_size
    return recipe.lr * (ratio if recipe.optimizer == "sgd" else math.sqrt(ratio))


RECIPES: dict[str, TrainConfig] = {
    # The common CIFAR-10 recipe for ResNet-18 (e.g. github.com/kuangliu/pytorch-cifar, reported 93.0%
    # after 200 epochs): the CIFAR stem (preset resnet18_cifar), random 32x32 crop of the image padded
    # by 4, horizontal flip, per-channel normalisation, SGD momentum 0.9, lr 0.1 with a cosine
    # schedule, batch 128, weight decay 5e-4.
    "resnet18_cifar": TrainConfig(
        epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine",
        augment=True, crop_padding=4, flip=True,
    ),
    # The built-in shapes on a CPU: two epochs of 312 steps. The images are already random in position,
    # scale and colour, so no cropping. channels_last: faster on CPUs too (oneDNN's preferred layout).
    "builtin": TEACHING,
    # Real photos (CIFAR-10) or digits: the same recipe over more epochs, with 4-pixel padded crops and flips.
    "real": TEACHING.with_(epochs=10, batch_size=128, lr=scaled_lr(TEACHING, 128), augment=True),
}



# How each dataset's race trains (the same for every racer). The built-in shapes: the teaching recipe, so that
# a CPU shows the gap within minutes (a plain net has no branch to zero: the twins differ only by the
# shortcuts). CIFAR-10: the paper's recipe (§4.2: batch 128, lr 0.1, momentum 0.9, weight decay 1e-4, 4-pixel
# padded crops and flips), with a cosine decay in place of its steps at 32k and 48k iterations, which a race of
# a few epochs would never reach.
RACE_RECIPES: dict[str, TrainConfig] = {
    "builtin": TEACHING.with_(batch_size=64, lr=scaled_lr(TEACHING, 64), seed=0, log_every=8),
    "cifar10": TrainConfig(batch_size=128, lr=0.1, momentum=0.9, weight_decay=1e-4, augment=True, seed=0,
                           log_every=8),
}


def default_recipe(model: str | ResNetConfig | None, data: str) -> TrainConfig:
    """The recipe the Training page and the CLI start from for a model (preset name or config) and a dataset."""
    cfg = resolve(model) if model is not None else None
    if cfg is not None and cfg == resolve("resnet18_cifar") and data == "cifar10":
        base = RECIPES["resnet18_cifar"]
    elif data == "builtin":
        base = RECIPES["builtin"]
    else:
        base = RECIPES["real"]
    if data in ("mnist", "fashion_mnist"):
        base = base.with_(flip=False, crop_padding=2)  # a mirrored 2 is no 2
    return base


# What a run of RECIPES["resnet18_cifar"] shortened to E epochs (the cosine schedule compressed to E
# epochs) reaches on CIFAR-10's test set: rough ranges from commonly reported runs of this recipe
# and its short-schedule variants (kuangliu/pytorch-cifar's 93.0% at 200 epochs; "train CIFAR-10
# fast" reports around 90-94% in 10-30 epochs). Not measured here; seeds and details move a run by
# a point or two.
EXPECTED_CIFAR10_ACCURACY: tuple[tuple[int, str], ...] = (
    (1, "45-65%"),
    (5, "80-88%"),
    (10, "87-91%"),
    (20, "90-93%"),
    (30, "91-94%"),
    (50, "92-94.5%"),
    (100, "93-95%"),
    (200, "93-95.5%"),
)


def expected_accuracy(epochs: int) -> str:
    """What test accuracy to expect on CIFAR-10 from RECIPES["resnet18_cifar"] shortened to `epochs`."""
    if not is_int(epochs) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} is not allowed: an integer >= 1")
    reached = [(e, acc) for e, acc in EXPECTED_CIFAR10_ACCURACY if e <= epochs]
    e, acc = reached[-1]
    more = " (more epochs add little beyond 200)" if epochs > 200 else ""
    return f"about {acc} after {epochs} epochs (commonly reported for {e} epochs{more}; a rough guide, not a promise)"


# Test accuracy of the teaching recipe on the built-in shapes after E epochs (fractional), as the range over the
# residual and custom models of bench/bench_recipes.py on a 2-core CPU (docs/benchmarks.md, "Recipes"): e.g.
# wide_resnet50_2 19% at 0.37 epochs; ResNeXt-50 52% at 1.0, ResNet-50 75% at 1.3; at 2 epochs the 6-stage
# custom net 46%, ResNet-18 72%, ResNet-20 and ResNet-56 98%. Every net sits near chance for its first ~100
# steps (a third of an epoch) while it finds the shapes; a deep plain net may stay there (plain-56: 13% after 2
# epochs, the degradation problem).
EXPECTED_BUILTIN_ACCURACY: tuple[tuple[float, str], ...] = (
    (0.0, "10% (chance)"),
    (0.3, "10-25%"),
    (1.0, "50-75%"),
    (2.0, "45-98%"),
)


# ResNet-20 alone, the model the Training page offers when another will not learn in time: test accuracy after
# its first and second epoch of the teaching recipe on the built-in shapes (bench/bench_recipes.py: 98.4% and
# 98.5% for ResNet-20 and ResNet-56 after 2 epochs; 87% after the first).
EXPECTED_BUILTIN_ACCURACY_RESNET20: tuple[tuple[float, str], ...] = (
    (0.0, "10% (chance)"),
    (0.3, "10-25%"),
    (1.0, "about 87%"),
    (2.0, "about 98%"),
)


def expected_accuracy_at(data_name: str, epochs: float, *, preset: str | None = None) -> str | None:
    """The test accuracy to expect after `epochs` (fractional) of the teaching recipe, where it was measured: for
    ResNet-20 its own figures, for other models the range over the benchmark's models."""
    if data_name != "builtin":
        return None
    table = EXPECTED_BUILTIN_ACCURACY_RESNET20 if preset == "resnet20" else EXPECTED_BUILTIN_ACCURACY
    return [acc for e, acc in table if e <= epochs][-1]

"""What a run will do, said before it starts, and why it ended, said after.

`probe_images_per_s` times a few real training steps of the model on the device (the trainer's own
steps, so the number is the one the run will see); `plan_run` turns a rate into seconds per epoch,
how far a time cap reaches and the accuracy to expect there. `describe_end` and `explain_accuracy` are
the sentences the Training page and the CLI print under a result, generated from the numbers.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import torch

from ..config import ResNetConfig
from ..data import Dataset
from .config import TrainConfig
from .trainer import Progress, Trainer, TrainResult, training_flops

# Test accuracy of the teaching recipe on the built-in shapes after E epochs (fractional), as the range
# over the models of bench/bench_recipes.py on a 2-core CPU (docs/benchmarks.md, "Recipes"): every net sits
# near chance for its first ~100 steps (a third of an epoch of batch 32) while it finds the shapes.
EXPECTED_BUILTIN_ACCURACY: tuple[tuple[float, str], ...] = (
    (0.0, "10% (chance)"),
    (0.5, "20-60%"),
    (1.0, "60-90%"),
    (2.0, "85-97%"),
)


@dataclass(frozen=True)
class RunPlan:
    """What a run of `cfg` on a dataset will do on a device, before it starts."""

    input_size: tuple[int, int, int]  # (C, H, W) the run trains at: the dataset's own
    images_per_s: float  # training images per second on the device
    measured: bool  # True: timed training steps of this model (a probe); False: from FLOPs at the device's rate
    batch_size: int
    steps_per_epoch: int
    epochs: int
    max_seconds: float | None
    train_flops_per_image: int  # forward + backward, from the analysis

    @property
    def seconds_per_epoch(self) -> float:
        return self.steps_per_epoch * self.batch_size / self.images_per_s

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def seconds(self) -> float:
        """Seconds of training the whole schedule takes (evaluation aside)."""
        return self.seconds_per_epoch * self.epochs

    @property
    def reach_epochs(self) -> float:
        """Epochs done when the run ends: all of them, or as many as the time cap allows."""
        if self.max_seconds is None:
            return float(self.epochs)
        return min(float(self.epochs), self.max_seconds / self.seconds_per_epoch)

    @property
    def reach_steps(self) -> int:
        return min(self.total_steps, math.floor(self.reach_epochs * self.steps_per_epoch))

    @property
    def capped(self) -> bool:
        """True when the time cap ends the run before its last epoch."""
        return self.reach_steps < self.total_steps


def plan_run(*, train_flops_per_image: int, n_train: int, input_size: tuple[int, int, int], cfg: TrainConfig,
             images_per_s: float, measured: bool) -> RunPlan:
    """The plan of a run of `cfg` on `n_train` images at `images_per_s`."""
    if not images_per_s > 0:
        raise ValueError(f"images_per_s={images_per_s!r} is not allowed: a rate > 0")
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"TrainConfig.batch_size={cfg.batch_size} is not allowed: at most the training set's size "
                         f"({n_train} images)")
    return RunPlan(input_size=input_size, images_per_s=images_per_s, measured=measured, batch_size=cfg.batch_size,
                   steps_per_epoch=steps_per_epoch, epochs=cfg.epochs, max_seconds=cfg.max_seconds,
                   train_flops_per_image=train_flops_per_image)


def probe_images_per_s(model_cfg: ResNetConfig, data: Dataset, cfg: TrainConfig, *, min_steps: int = 3,
                       seconds: float = 2.0, forward_flops_per_image: int | None = None) -> float:
    """Training images per second of `model_cfg` with `cfg` on its device, from the trainer's own steps on the
    first images of `data` (nothing is evaluated): the quickest of at least `min_steps` timed steps after an
    untimed one (allocation, autotuning), stepping on for up to `seconds`.

    The quickest step, over a couple of seconds: a probe often runs while a browser draws the page that asked
    for it, and on a CPU torch's OpenMP threads wait for each other at every op, so while another process holds
    a core they slow several-fold (measured here: ResNet-50 at 11 images/s in the quickest of 3 steps beside a
    loading Chromium, 100 alone). A page's load is over within a second or two; the run's steady rate is what
    the quickest step shows."""
    steps = max(min_steps, 1)
    n = min(len(data.y_train), cfg.batch_size * 64)
    probe = Dataset(data.name, data.classes, data.x_train[:n], data.y_train[:n], data.x_test[:1], data.y_test[:1],
                    data.mean, data.std)
    trainer = Trainer(model_cfg, probe, cfg.with_(epochs=1_000, max_steps=None, max_seconds=None, log_every=1,
                                                  warmup_epochs=0.0), forward_flops_per_image=forward_flops_per_image)
    reports = (p for p in trainer.steps() if p.kind == "step")  # one a step (an epoch's end adds no step)
    try:
        start = time.perf_counter()
        times = [next(reports).train_s]  # training seconds after the untimed step
        while len(times) <= steps or time.perf_counter() - start < seconds:
            times.append(next(reports).train_s)
    finally:
        reports.close()
    quickest = min(b - a for a, b in itertools.pairwise(times))
    return cfg.batch_size / max(quickest, 1e-9)


def device_flops_per_s(device: str = "cpu", *, seconds: float = 1.0) -> float:
    """FLOP/s the device reaches training a small ResNet (ResNet-20 on random 32x32 images, batch 32): the rate
    for models too large to probe quickly. Convolutions of larger nets usually run faster than this, so a plan
    from it errs on the slow side."""
    from ..analysis import analyze
    from ..config import PRESETS

    cfg = PRESETS["resnet20"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32 * 4, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (32 * 4,), generator=gen)
    data = Dataset("probe", tuple(str(i) for i in range(10)), x, y, x[:1], y[:1], (0.5,) * 3, (0.25,) * 3)
    flops = analyze(cfg, input_size=(3, 32, 32)).total_flops
    ips = probe_images_per_s(cfg, data, TrainConfig(batch_size=32, device=device, channels_last=True),
                             seconds=seconds, forward_flops_per_image=flops)
    return ips * training_flops(flops)


def expected_accuracy_at(data_name: str, epochs: float) -> str | None:
    """The test accuracy to expect after `epochs` (fractional) of the teaching recipe, where it was measured."""
    if data_name != "builtin":
        return None
    reached = [acc for e, acc in EXPECTED_BUILTIN_ACCURACY if e <= epochs]
    return reached[-1]


# ----------------------------------------------------------------------------------------------
# After a run.


def describe_end(p: Progress, *, max_seconds: float | None = None) -> str:
    """Why and where a run ended, from its "done" report: "stopped at the 120 s limit at step 290 of 624
    (epoch 1 of 2)", "finished 2 epochs", "stopped by you at step 80 of 624 (epoch 1 of 2)"."""
    where = f"at step {p.step:,} of {p.total_steps:,} (epoch {max(p.epoch, 1)} of {p.epochs})"
    if p.end == "finished" or p.end is None:
        return f"finished {p.epochs} epoch{'s' if p.epochs != 1 else ''} ({p.step:,} steps)"
    if p.end == "time":
        limit = f"the {max_seconds:g} s limit" if max_seconds is not None else "its time limit"
        return f"stopped at {limit} {where}"
    if p.end == "steps":
        return f"stopped at its step limit {where}"
    return f"stopped by you {where}"


def explain_accuracy(result: TrainResult, num_classes: int) -> str | None:
    """A sentence when the final test accuracy is at chance level (within 1.5x of 1/K), saying why as far as the
    run's own numbers tell; None when the model learned something."""
    chance = 1 / num_classes
    if result.test_accuracy > 1.5 * chance:
        return None
    last = result.last
    done = last.epochs_done
    reason: str
    if done < 0.5:
        reason = (f"it trained for {done:.2f} of an epoch ({last.step:,} steps): too few for this model, which spends "
                  "its first steps finding the signal. Give it more time, or pick a smaller model (ResNet-20 learns "
                  "the built-in shapes in about a minute on a CPU)")
    else:
        losses = [p.loss for p in result.history if p.kind == "step" and p.loss is not None]
        falling = len(losses) >= 4 and sum(losses[-2:]) < sum(losses[:2]) * 0.9
        if falling:
            reason = ("its training loss was still falling when the run ended: it had not yet got past the first "
                      "plateau; more epochs would help")
        else:
            reason = ("its training loss did not fall: the optimiser did not find a way down. A plain (no-shortcut) "
                      "deep net often stalls like this, the degradation problem that residual connections solve "
                      "(He et al. 2016, §4.1); a lower learning rate or the residual twin would learn")
    return (f"Test accuracy {result.test_accuracy:.1%} is chance level for {num_classes} classes "
            f"({chance:.1%}): {reason}.")

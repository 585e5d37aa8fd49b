"""What a run will do, said before it starts.

`probe_images_per_s` times a few real training steps of the model on the device (the trainer's own steps, so
the number is the one the run will see); `plan_run` turns a rate into seconds per epoch and how far a time cap
reaches; `recipes.expected_accuracy_at` says what accuracy to expect there.
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
from .trainer import Trainer, training_flops


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


def plan_run(*, n_train: int, input_size: tuple[int, int, int], cfg: TrainConfig,
             images_per_s: float, measured: bool) -> RunPlan:
    """The plan of a run of `cfg` on `n_train` images at `images_per_s`."""
    if not images_per_s > 0:
        raise ValueError(f"images_per_s={images_per_s!r} is not allowed: a rate > 0")
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"TrainConfig.batch_size={cfg.batch_size} is not allowed: at most the training set's size "
                         f"({n_train} images)")
    return RunPlan(input_size=input_size, images_per_s=images_per_s, measured=measured, batch_size=cfg.batch_size,
                   steps_per_epoch=steps_per_epoch, epochs=cfg.epochs, max_seconds=cfg.max_seconds)


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

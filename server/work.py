"""What a worker runs: a training run and a residual race, named by plain values so they pickle small (a
dataset travels as its name and is read once per worker process, never sent with each job)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from resnet_core.config import ResNetConfig
from resnet_core.data import Dataset, load_dataset
from resnet_core.train.config import TrainConfig


@functools.lru_cache(maxsize=3)
def worker_dataset(name: str) -> Dataset:
    """A dataset as a worker holds it: read (or made) once per process, shared by the jobs it runs."""
    return load_dataset(name, download=False)


@dataclass(frozen=True)
class TrainJob:
    """Train one model; the result is its TrainResult. Only the owner's Stop stops the trainer early: its own
    max_seconds is the time limit (the queue's cap is a backstop), so the result says which of the two ended it."""

    model_cfg: ResNetConfig
    data_name: str
    train_cfg: TrainConfig
    forward_flops: int | None = None

    def __call__(self, ctx: Any) -> Any:
        from resnet_core.train import Trainer

        return Trainer(self.model_cfg, worker_dataset(self.data_name), self.train_cfg, on_progress=ctx.report,
                       should_stop=lambda: ctx.stop_requested, forward_flops_per_image=self.forward_flops).run()


@dataclass(frozen=True)
class RaceJob:
    """Train every racer with one recipe, in turns; the result is each racer's TrainResult."""

    racers: tuple[tuple[str, ResNetConfig], ...]
    data_name: str
    train_cfg: TrainConfig

    def __call__(self, ctx: Any) -> Any:
        from resnet_core.lab import race

        return race(dict(self.racers), worker_dataset(self.data_name), self.train_cfg, on_progress=ctx.report,
                    should_stop=ctx.should_stop)

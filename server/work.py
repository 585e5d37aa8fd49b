"""What a worker runs: a training run and a residual race, named by plain values so they pickle small (a
dataset travels as its name and is read once per worker process, never sent with each job)."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from resnet_core import data as data_module
from resnet_core.config import ResNetConfig
from resnet_core.data import Dataset, default_data_dir, load_dataset
from resnet_core.export import write_atomically
from resnet_core.train.config import TrainConfig


@functools.lru_cache(maxsize=3)
def worker_dataset(name: str) -> Dataset:
    """A dataset as a worker holds it: read once per process, shared by the jobs it runs. The built-in shapes
    are drawn once per machine and read back from a file after that: drawing them takes a few seconds of CPU,
    which every new worker would otherwise take from the run training beside it."""
    return _builtin_from_file() if name == "builtin" else load_dataset(name, download=False)


def _builtin_from_file() -> Dataset:
    source = hashlib.sha256(Path(data_module.__file__).read_bytes()).hexdigest()[:16]  # redrawn if the code changes
    path = default_data_dir() / f"builtin-{source}.safetensors"
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads(f.metadata()["dataset"])
            tensors = {k: f.get_tensor(k) for k in ("x_train", "y_train", "x_test", "y_test")}
        return Dataset("builtin", tuple(meta["classes"]), **tensors, mean=tuple(meta["mean"]), std=tuple(meta["std"]))
    except (OSError, KeyError, ValueError, SafetensorError):  # not there yet (or unreadable): draw it
        pass
    data = load_dataset("builtin")
    tensors = {"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test, "y_test": data.y_test}
    meta = json.dumps({"classes": data.classes, "mean": data.mean, "std": data.std})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, save(tensors, metadata={"dataset": meta}))
    except OSError:  # a read-only data folder: every worker draws its own
        pass
    return data


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


@dataclass(frozen=True)
class AnalysisJob:
    """One of the lab's analyses (resnet_core.residuals.ANALYSES) on a trained pair; the weights travel as
    safetensors bytes, the data as its name. The result is {racer: what the analysis measured}."""

    analysis: str
    pair: tuple[tuple[str, ResNetConfig, bytes], ...]  # (racer, its config as trained, its trained weights)
    data_name: str
    seed: int  # the race's: the weights at initialisation are build_model(config, seed=seed)
    images: int = 500
    steps: int = 11  # the loss surface's points per side

    def __call__(self, ctx: Any) -> Any:
        from safetensors.torch import load

        from resnet_core.model import build_model
        from resnet_core.residuals import run_analysis

        trained = {}
        for name, cfg, weights in self.pair:
            model = build_model(cfg)
            model.load_state_dict(load(weights))
            trained[name] = model.eval()
        return run_analysis(self.analysis, trained, worker_dataset(self.data_name), seed=self.seed,
                            images=self.images, steps=self.steps, on_progress=ctx.report)

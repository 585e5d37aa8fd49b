"""Training a ResNet on a `Dataset`: a plain trainer class that reports progress through a callback.

    data = builtin()
    trainer = Trainer(PRESETS["resnet20"], data, RECIPES["builtin"], on_progress=print)
    result = trainer.run()             # or: for progress in trainer.steps(): ...
    result.test_accuracy, result.confusion, result.model

The trainer knows nothing about any UI: a page or a job runner turns `Progress` into charts.

Why it is fast. The whole dataset is one uint8 tensor on the device. Each step indexes a shuffled
batch there, augments it in batch (random crop = zero padding + one gather with per-sample offsets;
horizontal flip = the same gather reading the columns right to left for a random mask), converts to
float, normalises, and runs forward/backward/SGD. No Python work happens per sample, so no
DataLoader worker is needed (bench/bench_train.py compares this with a DataLoader of per-sample
torchvision transforms). On CUDA the forward runs under bf16 autocast with channels_last tensors
and cudnn autotuning; the loss stays on the device and is read (a sync) only every `log_every` steps.

Reproducibility. One `torch.Generator` seeded from `TrainConfig.seed` draws every shuffle, crop and
flip, and the weights are initialised with `build_model(..., seed=seed)`: on the CPU the same seed
gives the same loss curve, bit for bit (tests/test_training.py).

Distributed. Under `torchrun` (a process group initialised by the caller, see `process_group`),
each rank trains on its slice of every global batch (all ranks draw the same permutation from the
shared seed) and DistributedDataParallel averages the gradients. BatchNorm statistics are
broadcast from rank 0 before each evaluation, so every rank holds identical weights and buffers
and computes the same test accuracy.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .analysis import analyze
from .config import ResNetConfig
from .data import Dataset
from .model import ResNet, build_model

ProgressKind = Literal["step", "epoch", "done"]
Schedule = Literal["cosine", "constant"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")

MAX_STEP_HISTORY = 2000  # step entries kept in TrainResult.history; epochs are all kept
N_SHOWN_PREDICTIONS = 32  # test images whose predictions TrainResult keeps


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, augmentation, budget and device. Every field is validated."""

    epochs: int = 30  # passes over the training set; the cosine schedule spans all of them
    batch_size: int = 128  # images per optimiser step, over all ranks together under torchrun
    lr: float = 0.1  # peak learning rate of SGD
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 on every parameter (BN included, as the common CIFAR recipe does)
    nesterov: bool = False  # Nesterov momentum (needs momentum > 0)
    schedule: Schedule = "cosine"  # "cosine": per step from lr down to 0 over all epochs; "constant"
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr, per step, over this many epochs
    augment: bool = True  # random crop from a zero-padded image (and flip, below), in batch on the device
    crop_padding: int = 4  # zero padding in pixels on each side before the random crop back to H x W
    flip: bool = True  # random horizontal flip with augment; off for digits, where a mirrored 2 is no 2
    label_smoothing: float = 0.0  # cross-entropy target smoothing (0: plain one-hot targets)
    seed: int = 0  # drives the weight init, shuffling, crops and flips
    device: str = "auto"  # "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda", "cuda:1", "mps"
    max_seconds: float | None = None  # stop after this wall time (training + evaluation), then evaluate
    max_steps: int | None = None  # stop after this many optimiser steps (the schedule still spans `epochs`)
    eval_batch_size: int = 512  # images per forward pass when evaluating (no gradients: can be large)
    bf16: bool | None = None  # bf16 autocast for forward/loss; None: on CUDA only
    channels_last: bool | None = None  # NHWC memory layout (faster convs on tensor cores); None: on CUDA only
    log_every: int = 10  # steps between step reports; each one reads the loss (a device sync on CUDA)

    def __post_init__(self) -> None:
        validate_train_config(self)

    def with_(self, **changes: object) -> TrainConfig:
        """A copy with some fields changed (validated like any new config)."""
        from dataclasses import replace

        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _fail(field: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"TrainConfig.{field}={value!r} is not allowed: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_train_config(cfg: TrainConfig) -> None:
    """Raise ValueError naming the field, the value and what is allowed."""
    ints = {"epochs": (1, 100_000), "batch_size": (1, 1 << 20), "crop_padding": (0, 64),
            "seed": (0, 2**63 - 1), "eval_batch_size": (1, 1 << 20), "log_every": (1, 1_000_000)}
    for name, (low, high) in ints.items():
        value = getattr(cfg, name)
        if not _is_int(value) or not low <= value <= high:
            raise _fail(name, value, f"an integer from {low} to {high}")
    if not _is_number(cfg.lr) or cfg.lr <= 0:
        raise _fail("lr", cfg.lr, "a number > 0")
    if not _is_number(cfg.momentum) or not 0 <= cfg.momentum < 1:
        raise _fail("momentum", cfg.momentum, "a number in [0, 1)")
    if not _is_number(cfg.weight_decay) or cfg.weight_decay < 0:
        raise _fail("weight_decay", cfg.weight_decay, "a number >= 0")
    if not _is_number(cfg.label_smoothing) or not 0 <= cfg.label_smoothing < 1:
        raise _fail("label_smoothing", cfg.label_smoothing, "a number in [0, 1)")
    if not _is_number(cfg.warmup_epochs) or not 0 <= cfg.warmup_epochs <= cfg.epochs:
        raise _fail("warmup_epochs", cfg.warmup_epochs, f"a number from 0 to epochs ({cfg.epochs})")
    for name in ("nesterov", "augment", "flip"):
        if not isinstance(getattr(cfg, name), bool):
            raise _fail(name, getattr(cfg, name), "True or False")
    for name in ("bf16", "channels_last"):
        if getattr(cfg, name) is not None and not isinstance(getattr(cfg, name), bool):
            raise _fail(name, getattr(cfg, name), "True, False or None (automatic: on CUDA only)")
    if cfg.nesterov and cfg.momentum == 0:
        raise _fail("nesterov", True, "only with momentum > 0")
    if cfg.schedule not in SCHEDULES:
        raise _fail("schedule", cfg.schedule, f"one of {SCHEDULES}")
    if not isinstance(cfg.device, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise _fail("device", cfg.device, f"one of {DEVICES} or 'cuda:N'")
    if cfg.max_seconds is not None and (not _is_number(cfg.max_seconds) or cfg.max_seconds <= 0):
        raise _fail("max_seconds", cfg.max_seconds, "None or a number of seconds > 0")
    if cfg.max_steps is not None and (not _is_int(cfg.max_steps) or cfg.max_steps < 1):
        raise _fail("max_steps", cfg.max_steps, "None or an integer >= 1")


# ----------------------------------------------------------------------------------------------
# Recipes.

RECIPES: dict[str, TrainConfig] = {
    # The common CIFAR-10 recipe for ResNet-18 (e.g. github.com/kuangliu/pytorch-cifar, reported 93.0%
    # after 200 epochs): the CIFAR stem (preset resnet18_cifar), random 32x32 crop of the image padded
    # by 4, horizontal flip, per-channel normalisation, SGD momentum 0.9, lr 0.1 with a cosine
    # schedule, batch 128, weight decay 5e-4.
    "resnet18_cifar": TrainConfig(
        epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine",
        augment=True, crop_padding=4, flip=True,
    ),
    # The built-in shapes on a CPU: ResNet-20 passes 90% test accuracy within a minute on 2 cores
    # (bench/bench_train.py: about 98% after the 2 epochs). Small batches make many steps out of few
    # images; the images are already random in position, scale and colour, so no cropping; the
    # warm-up keeps the first steps, with untrained BN statistics, from blowing up (without it one
    # seed in three ended at 94% instead of 98%). channels_last: faster on CPUs too (oneDNN's
    # preferred layout; see the bench).
    "builtin": TrainConfig(
        epochs=2, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
        warmup_epochs=0.2, augment=False, channels_last=True,
    ),
}

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
    if not _is_int(epochs) or epochs < 1:
        raise ValueError(f"epochs={epochs!r} is not allowed: an integer >= 1")
    reached = [(e, acc) for e, acc in EXPECTED_CIFAR10_ACCURACY if e <= epochs]
    e, acc = reached[-1]
    more = " (more epochs add little beyond 200)" if epochs > 200 else ""
    return f"about {acc} after {epochs} epochs (commonly reported for {e} epochs{more}; a rough guide, not a promise)"


def default_recipe(preset: str | None, data: str) -> TrainConfig:
    """The recipe the CLI uses for a preset and a dataset name."""
    if preset == "resnet18_cifar" and data != "builtin":
        base = RECIPES["resnet18_cifar"]
    elif data == "builtin":
        base = RECIPES["builtin"]
    else:
        # Other presets on real data: the CIFAR recipe over a budget a CPU or one GPU gets through.
        base = RECIPES["resnet18_cifar"].with_(epochs=30)
    if data in ("mnist", "fashion_mnist"):
        base = base.with_(flip=False, crop_padding=2)
    return base


# ----------------------------------------------------------------------------------------------
# Pure pieces of a step: learning rate, augmentation, normalisation.


def lr_at(step: int, *, total_steps: int, base_lr: float, schedule: Schedule, warmup_steps: int) -> float:
    """The learning rate of optimiser step `step` (0-based): linear warm-up, then cosine to 0 or constant."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)  # 0 .. 1
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def augment_batch(x: Tensor, *, padding: int, offsets: Tensor, flip: Tensor) -> Tensor:
    """Random crop and horizontal flip of a whole batch in one gather, on x's device.

    x: uint8 (B, C, H, W). offsets: int64 (B, 2), the (row, column) of each crop in the padded image,
    in 0 .. 2 * padding. flip: bool (B,). Returns uint8 (B, C, H, W): each image padded with zeros,
    cropped back to H x W at its offset, and mirrored left-right where flip is True.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p), zeros around
    arange_h = torch.arange(h, device=x.device)
    arange_w = torch.arange(w, device=x.device)
    rows = offsets[:, 0, None] + arange_h  # (B, H): padded rows each output row reads
    cols = offsets[:, 1, None] + arange_w  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flipped image reads its columns right to left
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]  # (B, C, H, W)


def normalizer(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> tuple[Tensor, Tensor]:
    """(scale, shift), each (1, C, 1, 1), such that uint8 x -> x * scale + shift = (x / 255 - mean) / std."""
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * s), -m / s


# ----------------------------------------------------------------------------------------------
# Devices, precision, model FLOP utilisation.


def resolve_device(name: str, *, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA (this rank's GPU), else Apple MPS, else CPU; a named device must be there."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise _fail("device", name, "'auto' or 'cpu' here: this machine has no CUDA device")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise _fail("device", name, "'auto' or 'cpu' here: Apple MPS is not available")
    return device


# Peak dense throughput in FLOP/s, from the vendors' datasheets (no sparsity): (bf16, tf32, fp32).
# The first pattern that matches the GPU's name wins, so the PCIe/NVL variants come before "H100".
GPU_PEAK_FLOPS: tuple[tuple[str, float, float, float], ...] = (
    (r"H100.*PCIe", 756e12, 378e12, 51.2e12),
    (r"H100 NVL", 835e12, 418e12, 60e12),
    (r"H100|GH200", 989e12, 495e12, 67e12),  # SXM
    (r"H200", 989e12, 495e12, 67e12),
    (r"A100", 312e12, 156e12, 19.5e12),
    (r"\bL4\b", 121e12, 60e12, 30.3e12),
    (r"RTX 4090", 165e12, 82.6e12, 82.6e12),
)


def peak_flops(gpu_name: str, *, bf16: bool, tf32: bool) -> float | None:
    """The GPU's peak dense FLOP/s for the precision the convolutions run in; None for an unknown GPU."""
    for pattern, bf16_peak, tf32_peak, fp32_peak in GPU_PEAK_FLOPS:
        if re.search(pattern, gpu_name):
            return bf16_peak if bf16 else tf32_peak if tf32 else fp32_peak
    return None


# ----------------------------------------------------------------------------------------------
# Progress and results.


@dataclass(frozen=True)
class Progress:
    """One report of a run. Accuracies are fractions in [0, 1]."""

    kind: ProgressKind  # "step": every log_every steps; "epoch": after each epoch's evaluation; "done": once
    step: int  # optimiser steps done so far
    epoch: int  # 1-based epoch in progress (for "epoch": the one just finished)
    total_steps: int  # steps the schedule spans (epochs x steps per epoch)
    loss: float | None  # mean training loss since the last step report ("epoch": over the epoch)
    train_acc: float | None  # "epoch" and "done": accuracy on the augmented training batches of the epoch
    test_acc: float | None  # "epoch" and "done": accuracy on the whole test set
    lr: float  # learning rate of the latest step
    images_per_s: float | None  # training images per second over a recent window (evaluation excluded)
    mfu: float | None  # model FLOP utilisation, 0..1: CUDA on a GPU of GPU_PEAK_FLOPS only
    elapsed_s: float  # wall time since the run started, evaluation included
    train_s: float  # training time so far: elapsed_s less evaluation and the time callers spent on reports
    device: str  # "cpu", "cuda:0", "mps"


@dataclass(frozen=True)
class TestPredictions:
    """What the final model says about the first few test images."""

    indices: Tensor  # int64 (n,): positions in Dataset.x_test
    predicted: Tensor  # int64 (n,)
    true: Tensor  # int64 (n,)


@dataclass(frozen=True)
class TrainResult:
    model: ResNet  # on the CPU, in eval mode
    history: list[Progress]  # every "epoch" report and the "done" one; at most MAX_STEP_HISTORY "step" reports
    test_accuracy: float  # fraction of the test set classified correctly by the final model
    confusion: Tensor  # int64 (K, K): row = true class, column = predicted class
    test_predictions: TestPredictions
    images_per_s: float  # mean training throughput (evaluation and the first report window excluded)
    device: str
    stopped: bool  # True when should_stop, max_seconds or max_steps ended the run before its last epoch


class _History:
    """Progress reports, bounded: all epochs, and step reports thinned to every 2nd, 4th, ... when too many."""

    def __init__(self, max_steps: int = MAX_STEP_HISTORY) -> None:
        self.max_steps = max_steps
        self.stride = 1
        self.n_steps_seen = 0
        self.entries: list[tuple[int, Progress]] = []  # (ordinal among step reports, or -1, report)

    def add(self, p: Progress) -> None:
        if p.kind != "step":
            self.entries.append((-1, p))
            return
        ordinal = self.n_steps_seen
        self.n_steps_seen += 1
        if ordinal % self.stride:
            return
        self.entries.append((ordinal, p))
        if sum(o >= 0 for o, _ in self.entries) > self.max_steps:
            self.stride *= 2
            self.entries = [(o, q) for o, q in self.entries if o < 0 or o % self.stride == 0]

    def to_list(self) -> list[Progress]:
        return [p for _, p in self.entries]


def state_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and bytes, in order): equal iff bit-identical."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# Distributed helpers (the trainer itself only asks torch.distributed whether a group is running).


@dataclass(frozen=True)
class DistInfo:
    rank: int  # global rank, 0 .. world_size - 1
    world_size: int  # processes in all
    local_rank: int  # rank on this machine: the GPU index on CUDA


def dist_from_env(env: Mapping[str, str] = os.environ) -> DistInfo | None:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK), or None outside torchrun or with one process."""
    world = int(env.get("WORLD_SIZE", "1") or "1")
    if world <= 1:
        return None
    return DistInfo(rank=int(env.get("RANK", "0")), world_size=world, local_rank=int(env.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(info: DistInfo, device: str = "auto") -> Iterator[None]:
    """Initialise torch.distributed for this torchrun process (NCCL on CUDA, gloo on CPU), destroy it after."""
    import torch.distributed as dist

    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=info.rank, world_size=info.world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _dist_rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ----------------------------------------------------------------------------------------------
# The trainer.


class _Held:
    """Everything a run holds on its device, in one place, so that `finally` can drop it all at once."""

    def __init__(self) -> None:
        self.model: nn.Module | None = None  # the ResNet (on the device)
        self.train_model: nn.Module | None = None  # the same, or its DistributedDataParallel wrapper
        self.optimizer: torch.optim.Optimizer | None = None
        self.tensors: dict[str, Tensor] = {}  # data, statistics and normalisation on the device


class Trainer:
    """Trains a ResNet on a Dataset with SGD, reporting `Progress` to `on_progress` (minGPT style).

    `model_cfg`'s in_channels and num_classes are set from the data. `should_stop()` is asked before
    every step (under torchrun: agreed by all ranks at the next report), so a stop takes effect
    within one step; the run then evaluates and returns with `stopped=True`. Exceptions (a
    callback's, CUDA out-of-memory) propagate, after the trainer has dropped what it held.
    """

    def __init__(
        self,
        model_cfg: ResNetConfig,
        data: Dataset,
        cfg: TrainConfig,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        c, _, _ = data.input_size
        self.model_cfg = model_cfg.with_(in_channels=c, num_classes=data.num_classes)
        # Fails early, with the field named, for images the model cannot take (e.g. too small).
        self.flops_per_image = analyze(self.model_cfg, input_size=data.input_size, batch_size=1).total_flops
        self.data = data
        self.cfg = cfg
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.rank, self.world_size = _dist_rank_world()
        local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world_size > 1 else 0
        self.device = resolve_device(cfg.device, local_rank=local_rank)  # fails here if it is not there
        if cfg.batch_size % self.world_size:
            raise _fail("batch_size", cfg.batch_size, f"a multiple of the number of processes ({self.world_size})")
        if cfg.batch_size > len(data.y_train):
            raise _fail("batch_size", cfg.batch_size, f"at most the training set's size ({len(data.y_train)} images)")
        self.steps_per_epoch = len(data.y_train) // cfg.batch_size  # the incomplete last batch is dropped
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.result: TrainResult | None = None
        self._held: _Held | None = None

    def run(self) -> TrainResult:
        """Train to the end (or a stop), calling on_progress with each report; return the result."""
        gen = self.steps()
        try:
            while True:
                try:
                    progress = next(gen)
                except StopIteration as done:
                    result: TrainResult = done.value
                    return result
                if self.on_progress is not None:
                    self.on_progress(progress)
        finally:
            gen.close()  # a callback that raised: the generator's `finally` frees the device memory

    def steps(self) -> Generator[Progress, None, TrainResult]:
        """The run as a generator of Progress reports; its return value (StopIteration.value) is the result."""
        cfg, device = self.cfg, self.device
        cuda = device.type == "cuda"
        bf16 = cuda if cfg.bf16 is None else cfg.bf16
        channels_last = cuda if cfg.channels_last is None else cfg.channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        peak = (
            peak_flops(torch.cuda.get_device_name(device), bf16=bf16, tf32=torch.backends.cudnn.allow_tf32)
            if cuda
            else None
        )
        cudnn_benchmark = torch.backends.cudnn.benchmark
        held = self._held = _Held()
        try:
            if cuda:
                torch.backends.cudnn.benchmark = True  # autotune conv algorithms for the fixed batch shape
            # No local names for what lives on the device: a traceback keeps this frame's locals alive.
            held.model = held.train_model = (
                build_model(self.model_cfg, seed=cfg.seed).to(device).to(memory_format=memory_format)
            )
            if self.world_size > 1:
                from torch.nn.parallel import DistributedDataParallel

                held.train_model = DistributedDataParallel(held.model, device_ids=[device.index] if cuda else None)
            held.optimizer = torch.optim.SGD(
                held.model.parameters(),
                lr=cfg.lr,
                momentum=cfg.momentum,
                weight_decay=cfg.weight_decay,
                nesterov=cfg.nesterov,
                fused=True if cuda else None,  # one kernel for all parameters on CUDA
            )
            t = held.tensors
            t["x_train"] = self.data.x_train.to(device)  # uint8 (N, C, H, W): 150 MB for CIFAR-10
            t["y_train"] = self.data.y_train.to(device)
            t["x_test"] = self.data.x_test.to(device)
            t["y_test"] = self.data.y_test.to(device)
            t["scale"], t["shift"] = normalizer(self.data.mean, self.data.std, device)
            result = yield from self._loop(held, device, bf16=bf16, memory_format=memory_format, peak=peak)
            self.result = result
            return result
        except torch.OutOfMemoryError as e:
            # The traceback keeps the frames it passed through, and their activations, alive until the
            # caller drops the exception; clearing the finished frames lets empty_cache() return them.
            traceback.clear_frames(e.__traceback__)
            raise
        finally:
            self._held = None
            held.model = held.train_model = held.optimizer = None
            held.tensors.clear()
            del held
            if cuda:
                torch.backends.cudnn.benchmark = cudnn_benchmark
                torch.cuda.empty_cache()

    # -- the loop -------------------------------------------------------------------------------

    def _loop(
        self,
        held: _Held,
        device: torch.device,
        *,
        bf16: bool,
        memory_format: torch.memory_format,
        peak: float | None,
    ) -> Generator[Progress, None, TrainResult]:
        cfg = self.cfg
        assert held.model is not None and held.train_model is not None and held.optimizer is not None
        n = len(self.data.y_train)
        rank, world = self.rank, self.world_size
        global_batch = cfg.batch_size
        local_batch = global_batch // world
        warmup_steps = round(cfg.warmup_epochs * self.steps_per_epoch)
        # Random numbers are drawn on the training device (a CPU draw copied to a GPU would sync each
        # step); every rank draws the same numbers for the whole global batch and keeps its slice.
        gen_device = device if device.type in ("cpu", "cuda") else torch.device("cpu")
        gen = torch.Generator(device=gen_device)
        gen.manual_seed(cfg.seed)
        history = _History()
        clock = _Clock()
        window: deque[tuple[float, int]] = deque(maxlen=6)  # (training seconds, images) at recent reports
        first_report: tuple[float, int] | None = None

        step = 0
        images = 0  # training images over all ranks
        lr = lr_at(0, total_steps=self.total_steps, base_lr=cfg.lr, schedule=cfg.schedule, warmup_steps=warmup_steps)
        stopped = False
        last_eval: tuple[float, Tensor] | None = None  # (test accuracy, confusion) of the latest evaluation
        last_eval_step = -1  # the step it was made at
        train_acc: float | None = None
        epoch_loss: float | None = None
        epoch = 0

        def throughput() -> tuple[float | None, float | None]:
            """(images/s, MFU) over the last few reports; over the whole run until there are two."""
            if len(window) >= 2:
                (t0, i0), (t1, i1) = window[0], window[-1]
                ips = (i1 - i0) / max(t1 - t0, 1e-9)
            elif images:
                ips = images / max(clock.train_seconds(), 1e-9)
            else:
                return None, None
            # Training FLOPs per image: forward + backward ~ 3 x forward (backward computes the gradients
            # of both the inputs and the weights, each about one forward's work).
            return ips, (3 * self.flops_per_image * ips / (peak * world) if peak else None)

        def stop_requested() -> bool:
            if self.should_stop is not None and self.should_stop():
                return True
            return cfg.max_seconds is not None and clock.wall() >= cfg.max_seconds

        def report(kind: ProgressKind, loss: float | None, test_acc: float | None = None) -> Progress:
            ips, mfu = throughput()
            wall_s, train_s = clock.read()
            return Progress(kind=kind, step=step, epoch=epoch, total_steps=self.total_steps, loss=loss,
                            train_acc=None if kind == "step" else train_acc, test_acc=test_acc, lr=lr,
                            images_per_s=ips, mfu=mfu, elapsed_s=wall_s, train_s=train_s, device=str(device))

        for _ in range(cfg.epochs):
            epoch += 1
            perm = torch.randperm(n, generator=gen, device=gen_device).to(device)  # (N,), the same on every rank
            loss_sum = torch.zeros((), device=device)  # sums stay on the device: no sync per step
            epoch_loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            window_steps = 0
            steps_this_epoch = 0
            local_stop = False
            held.train_model.train()
            for i in range(self.steps_per_epoch):
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    stopped = True  # the same step on every rank: no need to agree
                    break
                local_stop = local_stop or stop_requested()
                if local_stop and world == 1:
                    stopped = True
                    break
                lr = lr_at(
                    step, total_steps=self.total_steps, base_lr=cfg.lr, schedule=cfg.schedule,
                    warmup_steps=warmup_steps,
                )
                idx = perm[i * global_batch : (i + 1) * global_batch]  # (B,) this step's global batch
                offsets = flip = None
                if cfg.augment:
                    offsets = torch.randint(
                        0, 2 * cfg.crop_padding + 1, (global_batch, 2), generator=gen, device=gen_device
                    )  # (B, 2): crop corner (row, column) in the padded image
                    flip = torch.rand(global_batch, generator=gen, device=gen_device) < 0.5  # (B,)
                    if not cfg.flip:
                        flip = torch.zeros_like(flip)
                mine = slice(rank * local_batch, (rank + 1) * local_batch)  # this rank's shard of the batch
                step_loss, step_correct = self._train_step(
                    held,
                    idx[mine],
                    None if offsets is None else offsets[mine].to(device),
                    None if flip is None else flip[mine].to(device),
                    lr=lr,
                    bf16=bf16,
                    memory_format=memory_format,
                    device=device,
                )
                loss_sum += step_loss
                epoch_loss_sum += step_loss
                correct += step_correct
                step += 1
                steps_this_epoch += 1
                images += global_batch
                window_steps += 1
                if window_steps == cfg.log_every:
                    mean_loss, any_stop = self._reduce(loss_sum / window_steps, local_stop, device)
                    loss_sum.zero_()
                    window_steps = 0
                    now = clock.train_seconds()
                    window.append((now, images))
                    first_report = first_report or (now, images)
                    progress = report("step", mean_loss)
                    history.add(progress)
                    clock.pause()  # the caller's time with a report is not training time
                    yield progress
                    clock.resume()
                    if any_stop:
                        stopped = True
                        break
            if steps_this_epoch:
                # Under torchrun this is also where the ranks agree on a stop asked for since the last report.
                epoch_loss, any_stop = self._reduce(epoch_loss_sum / steps_this_epoch, local_stop, device)
                train_acc = self._reduce_count(correct) / (steps_this_epoch * global_batch)
                stopped = stopped or any_stop
            if stopped:
                break
            clock.pause()
            last_eval, last_eval_step = self._evaluate(held, device, bf16=bf16, memory_format=memory_format), step
            progress = report("epoch", epoch_loss, last_eval[0])
            history.add(progress)
            yield progress
            clock.resume()

        clock.pause()
        if last_eval is None or last_eval_step != step:  # stopped mid-epoch: evaluate the model as it is
            last_eval = self._evaluate(held, device, bf16=bf16, memory_format=memory_format)
        test_acc, confusion = last_eval
        wall_s, train_seconds = clock.read()
        if first_report is not None and images > first_report[1] and train_seconds > first_report[0]:
            mean_ips = (images - first_report[1]) / (train_seconds - first_report[0])  # steady state
        else:
            mean_ips = images / max(train_seconds, 1e-9)
        model = held.model
        predictions = self._predictions(held, device, bf16=bf16, memory_format=memory_format)
        cpu_model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
        assert isinstance(cpu_model, ResNet)
        done = Progress(
            kind="done", step=step, epoch=epoch, total_steps=self.total_steps, loss=epoch_loss, train_acc=train_acc,
            test_acc=test_acc, lr=lr, images_per_s=mean_ips,
            mfu=3 * self.flops_per_image * mean_ips / (peak * world) if peak else None,
            elapsed_s=wall_s, train_s=train_seconds, device=str(device),
        )
        history.add(done)
        result = TrainResult(
            model=cpu_model,
            history=history.to_list(),
            test_accuracy=test_acc,
            confusion=confusion,
            test_predictions=predictions,
            images_per_s=mean_ips,
            device=str(device),
            stopped=stopped,
        )
        yield done
        return result

    def _train_step(
        self,
        held: _Held,
        idx: Tensor,
        offsets: Tensor | None,
        flip: Tensor | None,
        *,
        lr: float,
        bf16: bool,
        memory_format: torch.memory_format,
        device: torch.device,
    ) -> tuple[Tensor, Tensor]:
        """One SGD step on the images `idx`; returns (loss, correct) as device tensors (no sync)."""
        t = held.tensors
        assert held.train_model is not None and held.optimizer is not None
        x = t["x_train"][idx]  # uint8 (b, C, H, W), gathered on the device
        y = t["y_train"][idx]  # (b,)
        if offsets is not None and flip is not None:
            x = augment_batch(x, padding=self.cfg.crop_padding, offsets=offsets, flip=flip)
        x = x.contiguous(memory_format=memory_format)  # layout first, on 1-byte values
        x = x.float() * t["scale"] + t["shift"]  # (b, C, H, W) float32, normalised, layout kept
        for group in held.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = held.train_model(x)  # (b, K)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.cfg.label_smoothing)
        held.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        held.optimizer.step()
        return loss.detach(), (logits.detach().argmax(1) == y).sum()

    def _reduce(self, loss: Tensor, stop: bool, device: torch.device) -> tuple[float, bool]:
        """Mean loss over the ranks and whether any rank wants to stop: one collective, one sync."""
        if self.world_size == 1:
            return float(loss.item()), stop
        import torch.distributed as dist

        both = torch.stack([loss.float(), torch.tensor(float(stop), device=device)])
        dist.all_reduce(both)
        return float(both[0].item()) / self.world_size, bool(both[1].item() > 0)

    def _reduce_count(self, count: Tensor) -> int:
        """A count summed over the ranks."""
        if self.world_size == 1:
            return int(count.item())
        import torch.distributed as dist

        total = count.clone()
        dist.all_reduce(total)
        return int(total.item())

    @staticmethod
    def _logits(
        model: nn.Module, x: Tensor, t: dict[str, Tensor], *, bf16: bool, memory_format: torch.memory_format
    ) -> Tensor:
        """Eval-time logits (b, K) of uint8 images x (b, C, H, W): normalised like training, no augmentation."""
        x = x.contiguous(memory_format=memory_format).float() * t["scale"] + t["shift"]
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            return model(x).float()

    @torch.no_grad()
    def _evaluate(
        self, held: _Held, device: torch.device, *, bf16: bool, memory_format: torch.memory_format
    ) -> tuple[float, Tensor]:
        """(test accuracy, confusion (K, K) on the CPU) of the current model, in eval mode.

        Under torchrun every rank evaluates the whole test set with the same weights and, after the
        broadcast below, the same BN statistics, so all ranks get the same numbers with no reduction.
        """
        model, t = held.model, held.tensors
        assert model is not None
        if self.world_size > 1:
            import torch.distributed as dist

            for buffer in model.buffers():  # BN statistics of each rank's last batches differ: take rank 0's
                dist.broadcast(buffer, src=0)
        k = self.data.num_classes
        model.eval()
        confusion = torch.zeros(k * k, dtype=torch.int64, device=device)
        x_test, y_test = t["x_test"], t["y_test"]
        for start in range(0, len(y_test), self.cfg.eval_batch_size):
            x = x_test[start : start + self.cfg.eval_batch_size]  # uint8 (b, C, H, W)
            y = y_test[start : start + self.cfg.eval_batch_size]
            pred = self._logits(model, x, t, bf16=bf16, memory_format=memory_format).argmax(1)  # (b,)
            confusion += torch.bincount(y * k + pred, minlength=k * k)  # index true * K + predicted
        model.train()
        confusion_cpu = confusion.view(k, k).cpu()  # row = true class, column = predicted
        return float(confusion_cpu.diagonal().sum()) / max(1, len(y_test)), confusion_cpu

    @torch.no_grad()
    def _predictions(
        self, held: _Held, device: torch.device, *, bf16: bool, memory_format: torch.memory_format
    ) -> TestPredictions:
        assert held.model is not None
        held.model.eval()
        n = min(N_SHOWN_PREDICTIONS, len(self.data.y_test))
        logits = self._logits(held.model, held.tensors["x_test"][:n], held.tensors, bf16=bf16,
                              memory_format=memory_format)
        return TestPredictions(indices=torch.arange(n), predicted=logits.argmax(1).cpu(),
                               true=self.data.y_test[:n].clone())


class _Clock:
    """Wall time since the start, and training time: wall time minus evaluation and the caller's turns."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.paused_s = 0.0
        self.paused_at: float | None = None

    def wall(self) -> float:
        return time.perf_counter() - self.start

    def pause(self) -> None:
        if self.paused_at is None:
            self.paused_at = time.perf_counter()

    def resume(self) -> None:
        if self.paused_at is not None:
            self.paused_s += time.perf_counter() - self.paused_at
            self.paused_at = None

    def train_seconds(self) -> float:
        return self.read()[1]

    def read(self) -> tuple[float, float]:
        """(wall seconds, training seconds), from one reading of the clock."""
        now = time.perf_counter()
        running_until = self.paused_at if self.paused_at is not None else now
        return now - self.start, running_until - self.start - self.paused_s

"""How to train, as data: one frozen `TrainConfig`, every field validated when it is made."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from typing import Literal, get_args

Schedule = Literal["cosine", "constant"]
Optimizer = Literal["sgd", "adamw"]
SCHEDULES: tuple[str, ...] = get_args(Schedule)
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, augmentation, budget and device. Every field is validated."""

    epochs: int = 30  # passes over the training set; the cosine schedule spans all of them
    batch_size: int = 128  # images per optimiser step, over all ranks together under torchrun
    optimizer: Optimizer = "sgd"  # "sgd" (with momentum) or "adamw" (per-weight step sizes: any depth and width)
    lr: float = 0.1  # peak learning rate
    momentum: float = 0.9  # SGD momentum; AdamW's beta1
    weight_decay: float = 5e-4  # SGD: L2 on every parameter (BN included, as the CIFAR recipe does); AdamW: decoupled
    nesterov: bool = False  # Nesterov momentum (SGD only, needs momentum > 0)
    schedule: Schedule = "cosine"  # "cosine": per step from lr down to 0 over all epochs; "constant"
    warmup_epochs: float = 0.0  # linear warm-up from 0 to lr, per step, over this many epochs
    clip_grad_norm: float | None = None  # clip the global gradient norm to this before each step (None: never)
    zero_init_residual: bool = False  # start every residual branch's last BN at 0 (Goyal et al. 2017); plain nets
    #                                   have no branch to zero, so twins differ only by their shortcuts
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
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _fail(field: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"TrainConfig.{field}={value!r} is not allowed: {allowed}")


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_train_config(cfg: TrainConfig) -> None:
    """Raise ValueError naming the field, the value and what is allowed."""
    ints = {"epochs": (1, 100_000), "batch_size": (1, 1 << 20), "crop_padding": (0, 64),
            "seed": (0, 2**63 - 1), "eval_batch_size": (1, 1 << 20), "log_every": (1, 1_000_000)}
    for name, (low, high) in ints.items():
        value = getattr(cfg, name)
        if not is_int(value) or not low <= value <= high:
            raise _fail(name, value, f"an integer from {low} to {high}")
    if cfg.optimizer not in OPTIMIZERS:
        raise _fail("optimizer", cfg.optimizer, f"one of {OPTIMIZERS}")
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
    if cfg.clip_grad_norm is not None and (not _is_number(cfg.clip_grad_norm) or cfg.clip_grad_norm <= 0):
        raise _fail("clip_grad_norm", cfg.clip_grad_norm, "None or a number > 0")
    for name in ("nesterov", "augment", "flip", "zero_init_residual"):
        if not isinstance(getattr(cfg, name), bool):
            raise _fail(name, getattr(cfg, name), "True or False")
    for name in ("bf16", "channels_last"):
        if getattr(cfg, name) is not None and not isinstance(getattr(cfg, name), bool):
            raise _fail(name, getattr(cfg, name), "True, False or None (automatic: on CUDA only)")
    if cfg.nesterov and (cfg.momentum == 0 or cfg.optimizer != "sgd"):
        raise _fail("nesterov", True, "only with optimizer='sgd' and momentum > 0")
    if cfg.schedule not in SCHEDULES:
        raise _fail("schedule", cfg.schedule, f"one of {SCHEDULES}")
    if not isinstance(cfg.device, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise _fail("device", cfg.device, f"one of {DEVICES} or 'cuda:N'")
    if cfg.max_seconds is not None and (not _is_number(cfg.max_seconds) or cfg.max_seconds <= 0):
        raise _fail("max_seconds", cfg.max_seconds, "None or a number of seconds > 0")
    if cfg.max_steps is not None and (not is_int(cfg.max_steps) or cfg.max_steps < 1):
        raise _fail("max_steps", cfg.max_steps, "None or an integer >= 1")

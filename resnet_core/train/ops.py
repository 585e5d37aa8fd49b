"""Pure pieces of a training step: the learning rate at a step, batch augmentation, normalisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import Schedule


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

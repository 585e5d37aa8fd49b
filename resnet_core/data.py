"""Image classification data as whole tensors: a built-in procedural dataset and torchvision's files.

A `Dataset` holds every image as one uint8 tensor (N, C, H, W), so the trainer can put the whole set
on its device once and index batches there, with no per-sample Python work.

- `builtin()` draws 10 classes of shapes procedurally: no download, deterministic for a seed, a few
  seconds for 12k images. It is the default and works offline.
- `load_dataset("cifar10" | "mnist" | "fashion_mnist")` reads torchvision's files from `DATA_DIR`
  (`<repo>/data`, or `$RESNET_DATA_DIR`) and downloads them when absent: atomically, md5-checked,
  then extracted; anything partial or corrupt is deleted, never used.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

ProgressFn = Callable[[int, int | None], None]  # (bytes done, bytes in all or None)

DATASETS: tuple[str, ...] = ("builtin", "cifar10", "mnist", "fashion_mnist")
DATA_DIR = Path(os.environ.get("RESNET_DATA_DIR") or Path(__file__).resolve().parents[1] / "data")

BUILTIN_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "star",
    "diamond",
    "h-bars",
    "v-bars",
    "checker",
)


class DatasetUnavailable(RuntimeError):
    """The dataset's files are not there and could not be downloaded (offline, corrupt, truncated)."""


@dataclass(frozen=True)
class Dataset:
    """A labelled image set, train and test, held whole in memory."""

    name: str  # "builtin", "cifar10", ...
    classes: tuple[str, ...]  # class names; label i is classes[i]
    x_train: Tensor  # uint8 (N, C, H, W), 0..255
    y_train: Tensor  # int64 (N,), 0..K-1
    x_test: Tensor  # uint8 (M, C, H, W)
    y_test: Tensor  # int64 (M,)
    mean: tuple[float, ...]  # per channel, of the training images scaled to [0, 1]; for normalisation
    std: tuple[float, ...]  # per channel, same scale

    def __post_init__(self) -> None:
        k = len(self.classes)
        if k < 2:
            raise ValueError(f"Dataset.classes={self.classes!r} is not allowed: at least 2 classes")
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(f"Dataset.x_{split} is {x.dtype} {tuple(x.shape)}: a uint8 (N, C, H, W) tensor")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(
                    f"Dataset.y_{split} is {y.dtype} {tuple(y.shape)}: an int64 ({x.shape[0]},) tensor, one per image"
                )
            if len(y) and not 0 <= int(y.min()) <= int(y.max()) < k:
                raise ValueError(f"Dataset.y_{split} has labels outside 0..{k - 1} ({k} classes)")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"Dataset.x_test images are {tuple(self.x_test.shape[1:])}, the training images "
                f"{tuple(self.x_train.shape[1:])}: they must match"
            )
        c = self.x_train.shape[1]
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) != c:
                raise ValueError(f"Dataset.{name}={value!r} is not allowed: one value per channel ({c})")
        if min(self.std) <= 0:
            raise ValueError(f"Dataset.std={self.std!r} is not allowed: every value must be > 0")

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.x_train.shape
        return (int(c), int(h), int(w))

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), scaled to [0, 1]."""
    # float64 sums: 50k CIFAR images are 1.5e8 values per channel, too many for a float32 accumulator.
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64) / 255.0  # (C, N*H*W)
    return tuple(flat.mean(1).tolist()), tuple(flat.std(1).tolist())


def _make(
    name: str, classes: tuple[str, ...], x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor
) -> Dataset:
    mean, std = channel_stats(x_train)
    return Dataset(name, classes, x_train, y_train, x_test, y_test, mean, std)


# ----------------------------------------------------------------------------------------------
# The built-in dataset: shapes drawn with signed distance functions, all images of a class at once.


def _shape_sdf(cls: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of shape `cls` in its own frame, where the shape's outer radius is ~1.

    u, v: (n, H, W) coordinates of every pixel in each image's shape frame (already rotated and scaled).
    """
    r = np.hypot(u, v)
    if cls == 0:  # circle (filled disc)
        return r - 0.9
    if cls == 1:  # square (filled)
        return np.maximum(np.abs(u), np.abs(v)) - 0.75
    if cls == 2:  # triangle: equilateral, inradius 0.5, circumradius 1; the max of three half-plane distances
        angles = np.pi / 2 + np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
        return np.max([u * np.cos(a) + v * np.sin(a) for a in angles], axis=0) - 0.5
    if cls == 3:  # cross ("+"): union of two bars, i.e. the min of their distances
        return np.minimum(
            np.maximum(np.abs(u) - 0.28, np.abs(v) - 1.0), np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.28)
        )
    if cls == 4:  # ring: an annulus of width 0.4
        return np.abs(r - 0.72) - 0.2
    if cls == 5:  # five-pointed star: the radius swings between 0.42 and 1 with the angle (approximate distance)
        phi = np.arctan2(u, v)  # 0 at the top point
        t = np.abs(((phi * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a point, 0 between two points
        return (r - (0.42 + 0.58 * t)) * 0.8
    if cls == 6:  # diamond: a tall rhombus (a square turned 45 degrees would be a square under rotation)
        return (np.abs(u) / 0.6 + np.abs(v) - 1.0) * 0.5
    box = np.maximum(np.abs(u), np.abs(v)) - 0.85
    if cls == 7:  # three horizontal bars inside a box
        return np.maximum(box, -np.cos(np.pi * 2.5 * v) * 0.2)
    if cls == 8:  # three vertical bars inside a box
        return np.maximum(box, -np.cos(np.pi * 2.5 * u) * 0.2)
    if cls == 9:  # 4x4 checker inside a box
        return np.maximum(box, -np.sin(np.pi * 2.35 * u) * np.sin(np.pi * 2.35 * v) * 0.4)
    raise ValueError(f"class={cls!r} is not allowed: 0..{len(BUILTIN_CLASSES) - 1}")


def _render(rng: np.random.Generator, labels: np.ndarray, size: int) -> np.ndarray:
    """Images (n, 3, size, size) uint8 of the shapes `labels`, on cluttered, noisy backgrounds."""
    n = len(labels)
    s = size
    coords = (np.arange(s, dtype=np.float32) + 0.5) / s * 2 - 1  # pixel centres in [-1, 1]
    ys, xs = np.meshgrid(coords, coords, indexing="ij")  # (s, s)

    # Background: a random colour, a random linear gradient, a few soft blobs of other colours.
    bg = rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32)
    grad_dir = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    grad = (np.cos(grad_dir) * xs + np.sin(grad_dir) * ys)[:, None]  # (n, 1, s, s), in [-1.4, 1.4]
    img = bg + grad * rng.uniform(-0.25, 0.25, (n, 3, 1, 1)).astype(np.float32)
    for _ in range(3):
        c = rng.uniform(-1, 1, (n, 2, 1, 1)).astype(np.float32)
        rad = rng.uniform(0.1, 0.35, (n, 1, 1)).astype(np.float32)
        blob = np.exp(-((xs - c[:, 0]) ** 2 + (ys - c[:, 1]) ** 2) / (2 * rad**2))[:, None]  # (n, 1, s, s)
        img += blob * rng.uniform(-0.35, 0.35, (n, 3, 1, 1)).astype(np.float32)

    # The shape: position, scale, rotation, colour far enough from the background to be seen.
    scale = rng.uniform(0.4, 0.75, n).astype(np.float32)  # outer radius, in half-widths of the image
    centre = rng.uniform(-1, 1, (n, 2)).astype(np.float32) * (1 - scale[:, None]) * 0.9
    theta = rng.uniform(-np.pi / 9, np.pi / 9, n).astype(np.float32)  # +-20 degrees keeps h-bars != v-bars
    fg = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    weak = np.abs(fg - bg[:, :, 0, 0]).max(1) < 0.35
    fg[weak] = 1 - bg[weak, :, 0, 0]  # too close to the background: take the complementary colour

    dx = xs[None] - centre[:, 0, None, None]  # (n, s, s)
    dy = ys[None] - centre[:, 1, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u = (cos * dx + sin * dy) / scale[:, None, None]
    v = (-sin * dx + cos * dy) / scale[:, None, None]
    sdf = np.empty((n, s, s), dtype=np.float32)
    for cls in range(len(BUILTIN_CLASSES)):
        idx = np.flatnonzero(labels == cls)
        sdf[idx] = _shape_sdf(cls, u[idx], v[idx])
    # Anti-aliased coverage: the distance in pixels through a one-pixel ramp.
    pixels_per_unit = scale[:, None, None] * s / 2
    alpha = np.clip(0.5 - sdf * pixels_per_unit, 0, 1)[:, None]  # (n, 1, s, s)
    img = img * (1 - alpha) + fg[:, :, None, None] * alpha

    img += rng.normal(0, 0.06, img.shape).astype(np.float32)  # sensor noise
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _builtin_split(seed: int, split: int, n: int, size: int) -> tuple[Tensor, Tensor]:
    # One independent stream per (seed, split): the test set does not depend on n_train.
    rng = np.random.default_rng([seed, split])
    k = len(BUILTIN_CLASSES)
    labels = rng.permutation(np.arange(n) % k)  # balanced: every class n // k or n // k + 1 times
    return torch.from_numpy(_render(rng, labels, size)), torch.from_numpy(labels.astype(np.int64))


def builtin(*, n_train: int = 10_000, n_test: int = 2_000, seed: int = 0, size: int = 32) -> Dataset:
    """Ten classes of shapes on cluttered colour backgrounds, (3, size, size), drawn for `seed`.

    The same arguments give identical tensors on every call; nothing is cached on disk.
    """
    for field, value, low, high in (("n_train", n_train, 1, 1_000_000), ("n_test", n_test, 1, 1_000_000),
                                    ("size", size, 8, 256), ("seed", seed, 0, 2**63 - 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"builtin({field}={value!r}) is not allowed: an integer from {low} to {high}")
    x_train, y_train = _builtin_split(seed, 0, n_train, size)
    x_test, y_test = _builtin_split(seed, 1, n_test, size)
    return _make("builtin", BUILTIN_CLASSES, x_train, y_train, x_test, y_test)

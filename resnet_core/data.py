"""Image classification data as whole tensors: a built-in procedural dataset and torchvision's files.

A `Dataset` holds every image as one uint8 tensor (N, C, H, W), so the trainer can put the whole set
on its device once and index batches there, with no per-sample Python work.

- `builtin()` draws 10 classes of shapes procedurally: no download, deterministic for a seed, a few
  seconds for 12k images. It is the default and works offline.
- `load_dataset("cifar10" | "mnist" | "fashion_mnist")` reads torchvision's files from `default_data_dir()`
  (`<repo>/data`, or `$RESNET_DATA_DIR`) and downloads them when absent: atomically, md5-checked,
  then extracted; anything partial or corrupt is deleted, never used.
- `dataset_present(name)` says, from file names alone (no network), whether `load_dataset` would find the
  files; `fetch_dataset(name)` downloads and checks them without reading them into memory (what
  `python -m resnet_core fetch --data ...` runs to prepare a machine once).
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

ProgressFn = Callable[[int, int | None], None]  # (bytes done, bytes in all or None)

DATASETS: tuple[str, ...] = ("builtin", "cifar10", "mnist", "fashion_mnist")


REPO_DATA_DIR = Path(__file__).resolve().parents[1] / "data"


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    """$RESNET_DATA_DIR if set, else the `data/` folder of the repository (ignored by git)."""
    return Path(env.get("RESNET_DATA_DIR") or REPO_DATA_DIR)



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
    """The dataset's files are not there and could not be downloaded (offline, corrupt, truncated).

    `str(e)` is the whole story (what went wrong, which files go where); `e.reason` is its first part alone,
    short enough for a one-line report.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


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
    """Per-channel mean and (sample) std of uint8 images (N, C, H, W), scaled to [0, 1]."""
    # A histogram of the 256 values per channel gives exact sums with no float copy of the images.
    hist = torch.stack([torch.bincount(x[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])])  # (C, 256)
    hist = hist.to(torch.float64)
    v = torch.arange(256, dtype=torch.float64) / 255.0
    n = hist.sum(1)
    mean = hist @ v / n
    var = (hist * (v[None] - mean[:, None]) ** 2).sum(1) / (n - 1)  # two-pass: no cancellation
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


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
            np.maximum(np.abs(u) - 0.3, np.abs(v) - 1.0), np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.3)
        )
    if cls == 4:  # ring: an annulus of width 0.4
        return np.abs(r - 0.72) - 0.2
    if cls == 5:  # five-pointed star: the radius swings between 0.38 and 1 with the angle (approximate distance)
        phi = np.arctan2(u, v)  # 0 at the top point
        t = np.abs(((phi * 5 / (2 * np.pi)) % 1.0) - 0.5) * 2  # 1 at a point, 0 between two points
        return (r - (0.38 + 0.62 * t)) * 0.8
    if cls == 6:  # diamond: a tall rhombus, so that no rotation makes it a square
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
        img += blob * rng.uniform(-0.3, 0.3, (n, 3, 1, 1)).astype(np.float32)

    # The shape: position, scale, rotation, colour far enough from the background to be seen.
    scale = rng.uniform(0.45, 0.8, n).astype(np.float32)  # outer radius, in half-widths of the image
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

    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(0.05)  # sensor noise
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _builtin_split(seed: int, split: int, n: int, size: int) -> tuple[Tensor, Tensor]:
    # One independent stream per (seed, split): the test set does not depend on n_train.
    rng = np.random.default_rng([seed, split])
    k = len(BUILTIN_CLASSES)
    labels = rng.permutation(np.arange(n) % k)  # balanced: every class n // k or n // k + 1 times
    return torch.from_numpy(_render(rng, labels, size)), torch.from_numpy(labels.astype(np.int64))


def builtin(*, n_train: int = 10_000, n_test: int = 2_000, seed: int = 0, size: int = 32) -> Dataset:
    """Ten classes of shapes on cluttered colour backgrounds, uint8 (3, size, size), drawn for `seed`.

    Classes (BUILTIN_CLASSES): circle, square, triangle, cross, ring, star, diamond, horizontal bars,
    vertical bars, checker. Each image draws the shape at a random position, scale (45-80% of the
    half-width) and rotation (+-20 degrees, so horizontal bars stay horizontal), in a random colour
    kept apart from the background's, anti-aliased; the background is a random colour with a random
    gradient and three soft blobs of other colours; Gaussian noise (std 0.05 of the range) on top.
    Labels are balanced (each class n // 10 or n // 10 + 1 times) and shuffled.

    What it takes: logistic regression on the pixels stays below 35% on the test set, a tiny ResNet
    passes 70% in seconds (tests/), ResNet-20 with RECIPES["builtin"] passes 90% within a minute on a
    2-core CPU (bench/bench_train.py). The same arguments give identical tensors on every call; the
    test set depends only on `seed`, `n_test` and `size`. Nothing is cached on disk.
    """
    for field, value, low, high in (("n_train", n_train, 1, 1_000_000), ("n_test", n_test, 1, 1_000_000),
                                    ("size", size, 8, 256), ("seed", seed, 0, 2**63 - 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"builtin({field}={value!r}) is not allowed: an integer from {low} to {high}")
    x_train, y_train = _builtin_split(seed, 0, n_train, size)
    x_test, y_test = _builtin_split(seed, 1, n_test, size)
    return _make("builtin", BUILTIN_CLASSES, x_train, y_train, x_test, y_test)


# ----------------------------------------------------------------------------------------------
# torchvision's datasets: read the files that are there, download (atomically, md5-checked) what is not.
#
# Rule: an archive (.tar.gz, .gz), downloaded or put there by hand, is used only if its md5 is the
# published one (torchvision's class attributes); otherwise it is deleted and the error says so.
# Extracted files are read as they are, their format checked by the reader.


def load_dataset(
    name: str, *, root: Path | None = None, download: bool = True, on_progress: ProgressFn | None = None
) -> Dataset:
    """The dataset `name` (one of DATASETS) as whole uint8 tensors.

    Files are looked for under `root` (default: `default_data_dir()`, read when called) where torchvision
    keeps them (`cifar-10-batches-py/`, `MNIST/raw/`, `FashionMNIST/raw/`); missing ones are downloaded when
    `download` is True, with `on_progress(bytes done, bytes in all or None)`. Raises DatasetUnavailable, saying
    which files to put where, when they are neither there nor downloadable.
    """
    if name == "builtin":
        return builtin()
    root = _root(name, root)
    _ensure_files(name, root, download=download, on_progress=on_progress, mirror=None)
    return _read_cifar10(root) if name == "cifar10" else _read_mnist(name, root)


def dataset_present(name: str, *, root: Path | None = None) -> bool:
    """Whether the files of dataset `name` are on this machine, extracted or as their archives, so that
    `load_dataset(name, root=root, download=False)` needs no network. File names only: nothing is read,
    downloaded or checked (an archive's md5 is checked when it is loaded). The built-in dataset is always here.
    """
    if name == "builtin":
        return True
    root = _root(name, root)
    if name == "cifar10":
        from torchvision.datasets import CIFAR10

        folder = root / CIFAR10.base_folder
        return (root / CIFAR10.filename).is_file() or all((folder / n).is_file() for n in _cifar_names())
    cls = _mnist_class(name)
    raw = root / cls.__name__ / "raw"
    return all((raw / gz).is_file() or (raw / gz.removesuffix(".gz")).is_file() for gz, _ in cls.resources)


def fetch_dataset(
    name: str, *, root: Path | None = None, mirror: str | None = None, on_progress: ProgressFn | None = None
) -> Path:
    """Download what is missing of dataset `name` into `root` (default `default_data_dir()`), check each
    archive against its published md5 and extract it, without reading the images; returns `root`.

    `mirror`: a folder URL to download from instead of the publishers' sites, holding each file under its path
    relative to the data folder (`cifar-10-python.tar.gz`, `MNIST/raw/train-images-idx3-ubyte.gz`, ...):
    another machine's data folder served over HTTP, say. Raises DatasetUnavailable; nothing partial is left.
    """
    if name == "builtin":
        raise ValueError("dataset name='builtin' is not allowed: it is drawn in memory, there is nothing to fetch")
    root = _root(name, root)
    root.mkdir(parents=True, exist_ok=True)
    _ensure_files(name, root, download=True, on_progress=on_progress, mirror=mirror)
    return root


def _root(name: str, root: Path | None) -> Path:
    if name not in DATASETS:
        raise ValueError(f"dataset name={name!r} is not allowed: one of {DATASETS}")
    return Path(root) if root is not None else default_data_dir()  # read when called, never at import


def _ensure_files(
    name: str, root: Path, *, download: bool, on_progress: ProgressFn | None, mirror: str | None
) -> None:
    """Make the extracted files of `name` be there: from an archive that is there, or downloaded one."""
    if mirror is not None:
        mirror = mirror.rstrip("/") + "/"
    if name == "cifar10":
        _ensure_cifar10(root, download=download, on_progress=on_progress, mirror=mirror)
    else:
        _ensure_mnist(name, root, download=download, on_progress=on_progress, mirror=mirror)


_OFFLINE_HINT = "Set RESNET_DATA_DIR to read them from another folder; the built-in dataset (builtin) works offline."


class _FetchFailed(Exception):
    """A download or check went wrong; the caller turns it into DatasetUnavailable with the whole story."""


def _fetch(url: str, dest: Path, md5: str, on_progress: ProgressFn | None) -> None:
    """Download `url` to `dest` atomically, its md5 checked before it takes the final name
    (resnet_core.weights.download)."""
    from .weights import PretrainedUnavailable, download

    try:
        download(url, dest, on_progress=on_progress, md5=md5)
    except PretrainedUnavailable as e:  # it came, but truncated or corrupt: its own words say so
        raise _FetchFailed(str(e)) from e
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise _FetchFailed(f"could not download {url} ({getattr(e, 'reason', e)}): is this computer online?") from e


def _check_archive(path: Path, md5: str) -> None:
    """An archive that is there (downloaded earlier or put there by hand) must have the published md5."""
    from torchvision.datasets.utils import check_integrity

    if not check_integrity(str(path), md5):
        path.unlink(missing_ok=True)
        raise _FetchFailed(f"{path} is incomplete or corrupt (md5 is not {md5}); deleted it")


# -- CIFAR-10 -------------------------------------------------------------------------------------


def _cifar_names() -> list[str]:
    from torchvision.datasets import CIFAR10

    return [f for f, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]


def _ensure_cifar10(root: Path, *, download: bool, on_progress: ProgressFn | None, mirror: str | None) -> None:
    from torchvision.datasets import CIFAR10

    folder = root / CIFAR10.base_folder
    names = _cifar_names()
    archive = root / CIFAR10.filename
    url = f"{mirror}{CIFAR10.filename}" if mirror else CIFAR10.url
    if not all((folder / n).is_file() for n in names):
        try:
            if not archive.is_file():
                if not download:
                    raise _FetchFailed("the files are missing and download=False")
                _fetch(url, archive, CIFAR10.tgz_md5, on_progress)
            else:
                _check_archive(archive, CIFAR10.tgz_md5)
            _extract_tar(archive, root, member_folder=CIFAR10.base_folder, names=names)
        except _FetchFailed as e:
            raise DatasetUnavailable(
                f"CIFAR-10 is not in {root}: {e}. Put the files there by hand: either the archive {archive} "
                f"(from {url}, md5 {CIFAR10.tgz_md5}), or its extracted folder {folder}/ with "
                f"{', '.join(names)}. {_OFFLINE_HINT}",
                reason=str(e),
            ) from e


def _read_cifar10(root: Path) -> Dataset:
    from torchvision.datasets import CIFAR10

    try:
        train, test = CIFAR10(str(root), train=True), CIFAR10(str(root), train=False)
    except RuntimeError:
        # torchvision's CIFAR10 refuses any batch file whose md5 is not that of the published archive's
        # (a subset, a re-pickled copy, the small files of our tests). The format is simple, so read
        # the same pickled dicts ourselves, with an unpickler that builds only numpy arrays.
        return _read_cifar_batches(root / CIFAR10.base_folder)
    # torchvision keeps HWC uint8 (N, 32, 32, 3); the trainer wants (N, 3, 32, 32).
    x_train = torch.from_numpy(train.data).permute(0, 3, 1, 2).contiguous()
    x_test = torch.from_numpy(test.data).permute(0, 3, 1, 2).contiguous()
    y_train = torch.tensor(train.targets, dtype=torch.int64)
    y_test = torch.tensor(test.targets, dtype=torch.int64)
    return _make("cifar10", tuple(train.classes), x_train, y_train, x_test, y_test)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings and numpy arrays, and refuses every other global (no code runs)."""

    ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
        | {(m, "_frombuffer") for m in ("numpy.core.numeric", "numpy._core.numeric")}
        | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR batch file")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        entry = _ArrayUnpickler(f, encoding="latin1").load()  # latin1: the batches were pickled by Python 2
    if not isinstance(entry, dict):
        raise DatasetUnavailable(f"{path} is not a CIFAR batch file (a pickled dict)")
    return entry


def _read_cifar_batches(folder: Path) -> Dataset:
    """CIFAR-10's python format: each batch a pickled dict with "data" uint8 (n, 3072) and "labels" (n,)."""
    from torchvision.datasets import CIFAR10

    def read(names: list[str]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for name in names:
            path = folder / name
            try:
                entry = _unpickle(path)
                data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # rows are R, G, B planes
                labels = np.asarray(entry["labels"], dtype=np.int64).reshape(-1)
            except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as e:
                raise DatasetUnavailable(f"{path} is not a readable CIFAR-10 batch file ({e}); delete it") from e
            if len(labels) != len(data):
                raise DatasetUnavailable(f"{path} has {len(data)} images but {len(labels)} labels; delete it")
            xs.append(torch.from_numpy(data.copy()))
            ys.append(torch.from_numpy(labels.copy()))
        return torch.cat(xs), torch.cat(ys)

    x_train, y_train = read([f for f, _ in CIFAR10.train_list])
    x_test, y_test = read([f for f, _ in CIFAR10.test_list])
    classes = tuple(str(c) for c in _unpickle(folder / CIFAR10.meta["filename"])[CIFAR10.meta["key"]])
    return _make("cifar10", classes, x_train, y_train, x_test, y_test)


def _extract_tar(archive: Path, root: Path, *, member_folder: str, names: list[str]) -> None:
    """Extract `archive` into a temporary folder, then move `member_folder`/`names` into `root`.

    Nothing half-extracted is left under the final names: a corrupt archive is deleted with the
    temporary folder.
    """
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            # The "data" filter refuses members that would land outside `tmp` (absolute paths, "..", links).
            tar.extractall(tmp, filter="data")
        missing = [n for n in names if not (tmp / member_folder / n).is_file()]
        if missing:
            raise _FetchFailed(f"{archive} lacks {', '.join(missing)}")
        (root / member_folder).mkdir(exist_ok=True)
        for n in names:
            os.replace(tmp / member_folder / n, root / member_folder / n)
    except (tarfile.TarError, EOFError, zlib.error, OSError, _FetchFailed) as e:
        archive.unlink(missing_ok=True)
        raise _FetchFailed(f"{archive} could not be extracted ({e}); deleted it") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- MNIST and Fashion-MNIST ---------------------------------------------------------------------


def _mnist_class(name: str) -> Any:
    from torchvision.datasets import MNIST, FashionMNIST

    return MNIST if name == "mnist" else FashionMNIST


def _ensure_mnist(
    name: str, root: Path, *, download: bool, on_progress: ProgressFn | None, mirror: str | None
) -> None:
    cls = _mnist_class(name)
    raw = root / cls.__name__ / "raw"  # where torchvision's class reads the idx files
    gz_names = [filename for filename, _ in cls.resources]
    mirrors = [f"{mirror}{cls.__name__}/raw/"] if mirror else list(cls.mirrors)
    try:
        for filename, md5 in cls.resources:
            plain = raw / filename.removesuffix(".gz")
            if plain.is_file():
                continue  # extracted files are read as they are
            gz = raw / filename
            if not gz.is_file():
                if not download:
                    raise _FetchFailed("the files are missing and download=False")
                errors = []
                for base in mirrors:
                    try:
                        _fetch(f"{base}{filename}", gz, md5, on_progress)
                        break
                    except _FetchFailed as e:
                        errors.append(str(e))
                else:
                    raise _FetchFailed("; ".join(errors))
            else:
                _check_archive(gz, md5)
            _gunzip(gz, plain)
    except _FetchFailed as e:
        raise DatasetUnavailable(
            f"{cls.__name__} is not in {raw}: {e}. Put the files there by hand: {', '.join(gz_names)} "
            f"(from {mirrors[0]}), or the same files unzipped (without .gz). {_OFFLINE_HINT}",
            reason=str(e),
        ) from e


def _read_mnist(name: str, root: Path) -> Dataset:
    cls = _mnist_class(name)
    raw = root / cls.__name__ / "raw"
    try:
        train, test = cls(str(root), train=True), cls(str(root), train=False)
    except (RuntimeError, ValueError, TypeError, AssertionError) as e:
        raise DatasetUnavailable(f"the {cls.__name__} files in {raw} are not readable idx files ({e})") from e
    return _make(
        name,
        tuple(str(c) for c in cls.classes),
        train.data.unsqueeze(1).contiguous(),  # (N, 28, 28) -> (N, 1, 28, 28)
        train.targets.to(torch.int64),
        test.data.unsqueeze(1).contiguous(),
        test.targets.to(torch.int64),
    )


def _gunzip(gz: Path, dest: Path) -> None:
    """Decompress `gz` to `dest` atomically; a corrupt file is deleted."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(gz, "rb") as src:
            shutil.copyfileobj(src, out)
        os.replace(tmp_name, dest)
    except (OSError, EOFError, zlib.error) as e:
        Path(tmp_name).unlink(missing_ok=True)
        gz.unlink(missing_ok=True)
        raise _FetchFailed(f"{gz} could not be decompressed ({e}); deleted it") from e
    finally:
        Path(tmp_name).unlink(missing_ok=True)

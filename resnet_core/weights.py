"""ImageNet-pretrained weights for the torchvision presets, through torchvision's weights metadata.

The checkpoint is downloaded once into torch hub's cache (`weights_dir()`, `$TORCH_HOME/hub/checkpoints`),
with a progress callback, written atomically and checked against the hash in its file name; later calls
read the cached file. `checkpoint_present(preset)` says, with no network, whether it is there already.
Loading never unpickles code (`torch.load(..., weights_only=True)`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import TORCHVISION_PRESETS
from .model import ResNet, build_model

ProgressFn = Callable[[int, int | None], None]  # (bytes done, bytes in all or None)


class PretrainedUnavailable(RuntimeError):
    """The weights could not be had: no network, or a preset torchvision has no weights for.

    `str(e)` says what to do; `e.reason` is the cause alone, short enough for a one-line report.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class Pretrained:
    model: ResNet
    categories: tuple[str, ...]
    transforms: nn.Module  # the weights' own preprocessing (resize, crop, normalise)
    weights_name: str  # e.g. "ResNet50_Weights.IMAGENET1K_V2"
    meta: dict[str, Any]


def _weights_enum(preset: str, which: str) -> Any:
    from torchvision.models import get_model_weights

    if preset not in TORCHVISION_PRESETS:
        raise PretrainedUnavailable(
            f"no ImageNet weights for {preset!r}: torchvision publishes them for {', '.join(TORCHVISION_PRESETS)}"
        )
    enum = get_model_weights(preset)
    return enum.DEFAULT if which == "DEFAULT" else enum[which]


def pretrained_url(preset: str, weights: str = "DEFAULT") -> str:
    """Where torchvision publishes the checkpoint of a preset (PretrainedUnavailable if it has none)."""
    return str(_weights_enum(preset, weights).url)


def weights_dir() -> Path:
    """Where checkpoints are kept and looked for: torch hub's cache, `$TORCH_HOME/hub/checkpoints` (read when
    called, never at import)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def checkpoint_path(url: str, root: Path | None = None) -> Path:
    """The file of the checkpoint published at `url`, in `root` (default `weights_dir()`)."""
    return (Path(root) if root is not None else weights_dir()) / os.path.basename(url)


def checkpoint_present(preset: str, *, weights: str = "DEFAULT", root: Path | None = None) -> bool:
    """Whether the ImageNet checkpoint of `preset` is on this machine (in `root`, default `weights_dir()`), so that
    `load_pretrained` needs no network. The file name only: nothing is read or downloaded (its hash is checked
    when it is downloaded). PretrainedUnavailable for a preset torchvision publishes no weights for."""
    return checkpoint_path(_weights_enum(preset, weights).url, root).is_file()


def checkpoint_megabytes(preset: str, *, weights: str = "DEFAULT") -> float | None:
    """The download size of a preset's checkpoint in MB (10^6 bytes) as torchvision records it, if it does."""
    size = _weights_enum(preset, weights).meta.get("_file_size")
    return float(size) if size is not None else None


def download(
    url: str,
    dest: Path,
    *,
    on_progress: ProgressFn | None = None,
    chunk_bytes: int = 1 << 20,
    md5: str | None = None,
) -> Path:
    """Download `url` to `dest` atomically: a partial or corrupt file is never left under the final name.

    The bytes are checked before the file is moved into place: against `md5` when given (a published
    checksum), and against the hash prefix in the file name when it has one (`name-<sha256 prefix>.pth`,
    torch hub's convention).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".partial")
    sha = hashlib.sha256()
    whole_md5 = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            total = response.headers.get("Content-Length")
            total_bytes = int(total) if total else None
            done = 0
            while chunk := response.read(chunk_bytes):
                out.write(chunk)
                sha.update(chunk)
                if md5 is not None:
                    whole_md5.update(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, total_bytes)
        if total_bytes is not None and done != total_bytes:
            raise PretrainedUnavailable(f"download of {url} stopped after {done} of {total_bytes} bytes; try again")
        match = re.search(r"-([a-f0-9]{8,})\.", dest.name)
        if match and not sha.hexdigest().startswith(match.group(1)):
            raise PretrainedUnavailable(f"download of {url} is corrupt (hash mismatch); deleted it, try again")
        if md5 is not None and whole_md5.hexdigest() != md5:
            raise PretrainedUnavailable(f"download of {url} is corrupt (its md5 is not {md5}); deleted it, try again")
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def fetch_checkpoint(
    preset: str,
    *,
    weights: str = "DEFAULT",
    on_progress: ProgressFn | None = None,
    root: Path | None = None,
    mirror: str | None = None,
) -> Path:
    """The checkpoint file of a preset in `root` (default `weights_dir()`), downloaded first if it is not there yet.

    `mirror`: a folder URL to download from instead of torchvision's site, holding the checkpoint under its
    published file name (`resnet50-11ad3fa6.pth`); the hash in that name is checked all the same.
    """
    enum = _weights_enum(preset, weights)
    path = checkpoint_path(enum.url, root)
    url = f"{mirror.rstrip('/')}/{path.name}" if mirror else enum.url
    if not path.exists():
        try:
            download(url, path, on_progress=on_progress)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise PretrainedUnavailable(
                f"could not download the {enum} weights ({reason}). Check the network connection, or download "
                f"{url} by hand and save it as {path}; random weights work meanwhile.",
                reason=f"could not download {url} ({reason}): is this computer online?",
            ) from e
    return path


def load_pretrained(preset: str, *, weights: str = "DEFAULT", on_progress: ProgressFn | None = None) -> Pretrained:
    """Our model for a torchvision preset, with torchvision's ImageNet weights loaded.

    Raises PretrainedUnavailable with what to do when the weights cannot be downloaded.
    """
    enum = _weights_enum(preset, weights)
    path = fetch_checkpoint(preset, weights=weights, on_progress=on_progress)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(preset)
    model.load_state_dict(state)
    model.eval()
    return Pretrained(
        model=model,
        categories=tuple(enum.meta["categories"]),
        transforms=enum.transforms(),
        weights_name=str(enum),
        meta=dict(enum.meta),
    )

"""ImageNet-pretrained weights for the torchvision presets, through torchvision's weights metadata.

The checkpoint is downloaded once into torch hub's cache (`$TORCH_HOME/hub/checkpoints`), with a
progress callback, written atomically and checked against the hash in its file name; later calls
read the cached file. Loading never unpickles code (`torch.load(..., weights_only=True)`).
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
    """The weights could not be had: no network, or a preset torchvision has no weights for."""


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


def checkpoint_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def download(url: str, dest: Path, *, on_progress: ProgressFn | None = None, chunk_bytes: int = 1 << 20) -> Path:
    """Download `url` to `dest` atomically: a partial file is never left under the final name.

    If the file name carries a hash prefix (`name-<sha256 prefix>.pth`, torch hub's convention),
    the bytes are checked against it before the file is moved into place.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".partial")
    sha = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            total = response.headers.get("Content-Length")
            total_bytes = int(total) if total else None
            done = 0
            while chunk := response.read(chunk_bytes):
                out.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, total_bytes)
        if total_bytes is not None and done != total_bytes:
            raise PretrainedUnavailable(f"download of {url} stopped after {done} of {total_bytes} bytes; try again")
        match = re.search(r"-([a-f0-9]{8,})\.", dest.name)
        if match and not sha.hexdigest().startswith(match.group(1)):
            raise PretrainedUnavailable(f"download of {url} is corrupt (hash mismatch); try again")
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def fetch_checkpoint(preset: str, *, weights: str = "DEFAULT", on_progress: ProgressFn | None = None) -> Path:
    """The checkpoint file of a preset in torch hub's cache, downloaded first if it is not there yet."""
    enum = _weights_enum(preset, weights)
    path = checkpoint_path(enum.url)
    if not path.exists():
        try:
            download(enum.url, path, on_progress=on_progress)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise PretrainedUnavailable(
                f"could not download the {enum} weights ({reason}). Check the network connection, or download "
                f"{enum.url} by hand and save it as {path}; random weights work meanwhile."
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

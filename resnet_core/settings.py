"""Every limit of the app in one place, read from environment variables with documented defaults.

A host sets them (see the README's table) to fit its machine; everything else reads `LIMITS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be a whole number") from None
    if value < 1:
        raise ValueError(f"environment variable {name}={raw!r} must be at least 1")
    return value


@dataclass(frozen=True)
class Limits:
    upload_max_bytes: int = 20 * 1024 * 1024  # RESNET_UPLOAD_MAX_BYTES
    upload_max_pixels: int = 40_000_000  # RESNET_UPLOAD_MAX_PIXELS: width x height, checked from the header
    activation_max_side: int = 512  # RESNET_ACTIVATION_MAX_SIDE: largest input side for feature maps
    model_cache_entries: int = 4  # RESNET_MODEL_CACHE_ENTRIES: pretrained weight sets kept in memory
    train_max_epochs: int = 50  # RESNET_TRAIN_MAX_EPOCHS: per training job
    train_max_seconds: int = 900  # RESNET_TRAIN_MAX_SECONDS: wall time per training job
    train_queue: int = 8  # RESNET_TRAIN_QUEUE: jobs waiting at most; more are told "busy, try again later"
    train_workers: int = 1  # RESNET_TRAIN_WORKERS: jobs running at once (per GPU on a GPU server)

    @classmethod
    def from_env(cls) -> Limits:
        return cls(**{f.name: _env_int(f"RESNET_{f.name.upper()}", f.default) for f in fields(cls)})  # type: ignore[arg-type]


LIMITS = Limits.from_env()

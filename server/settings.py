"""Every limit of the app in one place, read from environment variables with documented defaults.

A host sets them (see the README's table) to fit its machine; everything else reads `LIMITS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from resnet_core import images


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
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
    upload_max_bytes: int = images.MAX_BYTES  # RESNET_UPLOAD_MAX_BYTES
    upload_max_pixels: int = images.MAX_PIXELS  # RESNET_UPLOAD_MAX_PIXELS: width x height, checked from the header
    input_max_side: int = 2048  # RESNET_INPUT_MAX_SIDE: largest input height or width in the model picker
    batch_max: int = 1024  # RESNET_BATCH_MAX: largest batch size in the model picker (memory estimates)
    activation_max_side: int = 512  # RESNET_ACTIVATION_MAX_SIDE: largest input side for feature maps
    activation_max_bytes: int = 2 * 1024**3  # RESNET_ACTIVATION_MAX_BYTES: feature maps of one image, all layers
    analysis_cache_entries: int = 128  # RESNET_ANALYSIS_CACHE_ENTRIES: layer analyses kept (a few kB each)
    model_cache_entries: int = 4  # RESNET_MODEL_CACHE_ENTRIES: pretrained weight sets kept in memory
    train_max_epochs: int = 50  # RESNET_TRAIN_MAX_EPOCHS: per training job
    train_max_seconds: int = 900  # RESNET_TRAIN_MAX_SECONDS: wall time per training job
    train_queue: int = 8  # RESNET_TRAIN_QUEUE: jobs waiting at most; more are told "busy, try again later"
    train_workers: int = 1  # RESNET_TRAIN_WORKERS: jobs running at once (per GPU on a GPU server)
    abandon_seconds: int = 60  # RESNET_ABANDON_SECONDS: a job whose browser session is gone this long is stopped
    job_ttl_seconds: int = 3600  # RESNET_JOB_TTL_SECONDS: a finished job's curves stay in memory this long
    runs_keep: int = 200  # RESNET_RUNS_KEEP: run records (and trained weights) kept on disk, newest first
    collect_seconds: int = 30  # RESNET_COLLECT_SECONDS: least seconds between collections after sessions end

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Limits:
        """The limits `env` sets (RESNET_<FIELD NAME>), the defaults for the rest."""
        return cls(**{f.name: _env_int(env, f"RESNET_{f.name.upper()}", f.default) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Engine:
    """Where training runs: an embedded local Ray instance, or a cluster."""

    address: str | None = None  # RESNET_RAY_ADDRESS: join this Ray cluster (host:port); unset: start one here
    cpus: int | None = None  # RESNET_RAY_CPUS: CPUs of the embedded instance (default: every core)
    gpus: int | None = None  # RESNET_RAY_GPUS: GPUs of the embedded instance (default: the ones Ray finds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Engine:
        cpus, gpus = env.get("RESNET_RAY_CPUS", "").strip(), env.get("RESNET_RAY_GPUS", "").strip()
        return cls(address=env.get("RESNET_RAY_ADDRESS", "").strip() or None,
                   cpus=_env_int(env, "RESNET_RAY_CPUS", 1) if cpus else None,
                   gpus=_env_count(env, "RESNET_RAY_GPUS") if gpus else None)


def _env_count(env: Mapping[str, str], name: str) -> int:
    raw = env[name]
    if not raw.strip().isdigit():
        raise ValueError(f"environment variable {name}={raw!r} must be a whole number, 0 or more")
    return int(raw)


def _read() -> tuple[Limits, Engine, str | None]:
    """The settings of this server; on a bad value, the defaults and the sentence that says what is wrong."""
    try:
        return Limits.from_env(), Engine.from_env(), None
    except ValueError as e:
        return Limits(), Engine(), f"This server's settings are wrong: {e}. Fix it and restart the server."


LIMITS, ENGINE, SETTINGS_ERROR = _read()


if __name__ == "__main__":  # `python -m server.settings`: check the settings before serving (deploy/serve)
    import sys

    if SETTINGS_ERROR:
        sys.exit(SETTINGS_ERROR)
    print(LIMITS, ENGINE, sep="\n")

# Where run records and trained weights are written ($RESNET_RUNS_DIR, default `runs/` of the repository,
# ignored by git). Datasets have their own folder, $RESNET_DATA_DIR (see resnet_core.data).
RUNS_DIR = Path(os.environ.get("RESNET_RUNS_DIR") or Path(__file__).resolve().parents[1] / "runs")

"""Training runs on disk: a small record per run that outlives the server process.

A job lives in the memory of one server. When that server restarts mid-run, the job is gone, and a
student who reloads the page must be told so plainly rather than shown nothing. So every run keeps a
record under `RunStore.root` (one folder per run):

    runs/<run id>/status.json        what the page needs: kind, label, state, progress, accuracy, error
    runs/<run id>/model.safetensors  the trained weights, written once when the run ends
    runs/<run id>/...                what else a kind of run keeps (a race: server/races.py)

Both files are written atomically (a temporary file in the same folder, then `os.replace`): a
reader sees the old file or the new one, never half of one, whatever moment the process dies at.
A record whose state is still "queued" or "running" but that was written by another server
process (`RunRecord.instance`) describes a run that was interrupted.

Run ids are 128-bit random hex strings: only someone holding the link can read a run, and an id is
checked against `RUN_ID` (a file's name against `FILE_NAME`) before it becomes part of a path, so no user
text ever names a file.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from resnet_core.export import write_atomically

RunState = Literal["queued", "running", "done", "stopped", "failed"]
RunKind = Literal["train", "race"]  # a training run (the Training page), a residual race (the lab)
UNFINISHED: tuple[str, ...] = ("queued", "running")
RUN_ID = re.compile(r"[0-9a-f]{32}")
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a file in a run's folder: no path, no hidden file
STATUS, WEIGHTS = "status.json", "model.safetensors"

# One id per server process: a record of an unfinished run with another id was left by a process
# that is gone.
INSTANCE = secrets.token_hex(8)


def new_run_id() -> str:
    return secrets.token_hex(16)


def is_run_id(text: object) -> bool:
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class RunRecord:
    """What is known about a run; the page shows it when the job itself is gone."""

    id: str
    label: str
    state: RunState = "queued"
    kind: RunKind = "train"
    instance: str = INSTANCE  # the server process that wrote this record
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    epoch: int = 0  # epochs finished
    epochs: int = 0  # epochs planned
    step: int = 0
    total_steps: int = 0
    test_accuracy: float | None = None  # after the latest finished epoch, or the final one
    error: str | None = None
    has_weights: bool = False

    @property
    def interrupted(self) -> bool:
        """Unfinished, and written by a server process other than this one: that process died mid-run."""
        return self.state in UNFINISHED and self.instance != INSTANCE

    def with_(self, **changes: Any) -> RunRecord:
        return replace(self, updated_at=time.time(), **changes)


class RunStore:
    """Run records in folders under `root`; at most `keep` runs are kept (the oldest go first)."""

    def __init__(self, root: Path, *, keep: int = 200) -> None:
        if keep < 1:
            raise ValueError(f"keep={keep} must be at least 1")
        self.root = Path(root)
        self.keep = keep

    def _dir(self, run_id: str) -> Path:
        if not is_run_id(run_id):
            raise ValueError(f"{run_id!r} is not a run id (32 hexadecimal digits)")
        return self.root / run_id

    def save(self, record: RunRecord) -> None:
        folder = self._dir(record.id)
        fresh = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / STATUS, json.dumps(asdict(record), indent=1).encode())
        if fresh:
            self.prune()

    def save_file(self, run_id: str, name: str, data: bytes) -> None:
        """Write one of the run's files (atomically); its record is saved first."""
        if FILE_NAME.fullmatch(name) is None:
            raise ValueError(f"{name!r} is not a file name of a run")
        write_atomically(self._dir(run_id) / name, data)

    def file(self, run_id: str, name: str) -> bytes | None:
        """One of the run's files, or None when it has none of that name (or either name is not one)."""
        if not is_run_id(run_id) or FILE_NAME.fullmatch(name) is None:
            return None
        try:
            return (self.root / run_id / name).read_bytes()
        except OSError:
            return None

    def has(self, run_id: str, name: str) -> bool:
        """Whether the run has a file of that name (without reading it)."""
        return is_run_id(run_id) and FILE_NAME.fullmatch(name) is not None and (self.root / run_id / name).is_file()

    def save_weights(self, run_id: str, data: bytes) -> None:
        self.save_file(run_id, WEIGHTS, data)

    def load(self, run_id: str) -> RunRecord | None:
        """The record of `run_id`, or None when there is none (or it is not a run id, or unreadable)."""
        if not is_run_id(run_id):
            return None
        try:
            raw = json.loads((self.root / run_id / STATUS).read_bytes())
            return RunRecord(**raw)
        except (OSError, ValueError, TypeError):
            return None

    def weights(self, run_id: str) -> bytes | None:
        return self.file(run_id, WEIGHTS)

    def delete(self, run_id: str) -> None:
        shutil.rmtree(self._dir(run_id), ignore_errors=True)

    def ids(self) -> list[str]:
        """Run ids, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and is_run_id(p.name)]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]

    def prune(self) -> None:
        """Delete the oldest runs beyond `keep`."""
        ids = self.ids()
        for run_id in ids[: max(0, len(ids) - self.keep)]:
            shutil.rmtree(self.root / run_id, ignore_errors=True)

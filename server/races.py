"""A residual race's record on disk, beside its run record (server/runs.py): what it raced, its curves, its
trained twins and the analyses measured on them, so that its link (?run=...) shows it and measures it again
after the job has left the queue or the server has restarted.

    runs/<run id>/status.json                 the RunRecord (kind "race")
    runs/<run id>/race.json                   RaceMeta: the racers' names and configs, the data, the seed
    runs/<run id>/curves.json                 the progress reports the race chart is drawn from, at its end
    runs/<run id>/model-<racer>.safetensors   each racer's trained weights, at its end
    runs/<run id>/analysis-<depth>-<name>.json  what an analysis measured on the twins of that depth

Everything is JSON or safetensors: nothing read back from the disk is unpickled.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any

import torch

from resnet_core.config import ResNetConfig
from resnet_core.lab import RaceReport
from resnet_core.residuals import result_type
from resnet_core.train.trainer import Progress
from server.runs import RunStore

META, CURVES = "race.json", "curves.json"


@dataclass(frozen=True)
class RaceMeta:
    """What a race is, as its job carries it and its record keeps it."""

    run_id: str
    names: tuple[str, ...]  # racers, in the order they race (and are drawn)
    configs: tuple[ResNetConfig, ...]  # each racer's model, as trained
    data: str
    seed: int  # the recipe's: the twins' weights at initialisation are build_model(config, seed=seed)

    @property
    def classes(self) -> int:
        return self.configs[0].num_classes


def model_file(racer: str) -> str:
    return f"model-{racer}.safetensors"


def analysis_file(depth: int, analysis: str) -> str:
    result_type(analysis)  # only an analysis's own name becomes part of a file's
    return f"analysis-{int(depth)}-{analysis}.json"


def save_meta(store: RunStore, meta: RaceMeta) -> None:
    plain = {"names": list(meta.names), "configs": [c.to_dict() for c in meta.configs], "data": meta.data,
             "seed": meta.seed}
    store.save_file(meta.run_id, META, json.dumps(plain).encode())


def load_meta(store: RunStore, run_id: str) -> RaceMeta | None:
    """The race `run_id` names, or None (no such race here, or a file that is not one)."""
    raw = _json(store, run_id, META)
    try:
        return RaceMeta(run_id, tuple(raw["names"]), tuple(ResNetConfig.from_dict(c) for c in raw["configs"]),
                        str(raw["data"]), int(raw["seed"]))
    except (TypeError, KeyError, ValueError):
        return None


def save_end(store: RunStore, meta: RaceMeta, reports: list[RaceReport], models: dict[str, bytes]) -> None:
    """The race's curves and each trained racer's weights (safetensors bytes), once it has ended."""
    for racer, weights in models.items():
        store.save_file(meta.run_id, model_file(racer), weights)
    curves = [{"racer": r.racer, "progress": asdict(r.progress)} for r in reports]
    store.save_file(meta.run_id, CURVES, json.dumps(curves).encode())


def load_curves(store: RunStore, run_id: str) -> list[RaceReport]:
    try:
        return [RaceReport(c["racer"], Progress(**c["progress"])) for c in _json(store, run_id, CURVES) or []]
    except (TypeError, KeyError):
        return []


def load_model(store: RunStore, run_id: str, racer: str) -> bytes | None:
    return store.file(run_id, model_file(racer))


def save_analysis(store: RunStore, run_id: str, depth: int, analysis: str, result: dict[str, Any]) -> None:
    """What one analysis measured ({racer: its result_type(analysis)}), as JSON."""
    plain = {racer: _plain(value) for racer, value in result.items()}
    store.save_file(run_id, analysis_file(depth, analysis), json.dumps(plain).encode())


def load_analysis(store: RunStore, run_id: str, depth: int, analysis: str) -> dict[str, Any] | None:
    raw = _json(store, run_id, analysis_file(depth, analysis))
    if not isinstance(raw, dict):
        return None
    try:
        return {racer: _unplain(result_type(analysis), value) for racer, value in raw.items()}
    except (TypeError, KeyError, ValueError):
        return None


def _json(store: RunStore, run_id: str, name: str) -> Any:
    data = store.file(run_id, name)
    try:
        return json.loads(data) if data is not None else None
    except ValueError:
        return None


def _plain(value: Any) -> Any:
    """A result as JSON holds it: a dataclass as its fields, a tensor or tuple as nested lists."""
    if is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _unplain(cls: type, raw: dict[str, Any]) -> Any:
    """The dataclass `_plain` gave `raw` for: tensor fields as float32 tensors, lists as the tuples they were."""
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: torch.tensor(raw[f.name], dtype=torch.float32) if hints[f.name] is torch.Tensor
                  else _tuples(raw[f.name]) for f in fields(cls)})

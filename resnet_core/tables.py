"""A report as a pandas DataFrame at three levels: every layer, every block, every stage.

Columns keep their units in their names; numbers stay numbers (formatting is the UI's job).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from .analysis import LayerRow, Level, Report

LEVELS: tuple[str, ...] = ("stage", "block", "layer")

_SHORTCUT_LABEL = {
    "identity": "identity",
    "zero_pad": "zero-pad (A)",
    "projection": "projection",
    "none": "none (plain)",
}


# A table's columns as a CSV file names them: each with its unit, so a spreadsheet needs no legend.
CSV_HEADERS = {
    "output_shape": "output_shape_BxCxHxW",
    "macs": "macs_per_image",
    "flops": "flops_per_image",
    "output_bytes": "output_bytes_per_batch",
    "receptive_field": "receptive_field_px",
    "jump": "jump_px",
}


def to_csv(df: pd.DataFrame) -> bytes:
    """A report table as CSV with units in its headers (empty cells where a layer has no such value)."""
    return df.rename(columns=CSV_HEADERS).to_csv(index=False).encode()


def shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def _layer_frame(rows: tuple[LayerRow, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "layer": [r.path for r in rows],
            "stage": [r.stage for r in rows],
            "block": pd.array([r.block for r in rows], dtype="Int64"),
            "branch": [r.branch for r in rows],
            "type": [r.kind for r in rows],
            "kernel": pd.array([r.kernel for r in rows], dtype="Int64"),
            "stride": pd.array([r.stride for r in rows], dtype="Int64"),
            "output_shape": [shape_str(r.output_shape) for r in rows],
            "params": [r.params for r in rows],
            "macs": [r.macs for r in rows],
            "flops": [r.flops for r in rows],
            "output_bytes": [r.output_bytes for r in rows],
            "receptive_field": pd.array([r.receptive_field for r in rows], dtype="Int64"),
            "jump": pd.array([r.jump for r in rows], dtype="Int64"),
        }
    )


def _group_key(r: LayerRow) -> tuple[str, int | None]:
    return (r.stage, r.block)


def _grouped(report: Report, key_of: object) -> pd.DataFrame:
    groups: dict[object, list[LayerRow]] = {}
    for r in report.rows:
        groups.setdefault(key_of(r), []).append(r)  # type: ignore[operator]
    records = []
    for rows in groups.values():
        main = [r for r in rows if r.branch != "shortcut"]
        last = main[-1]
        spatial = [r for r in main if r.receptive_field is not None]
        records.append(
            {
                "stage": last.stage,
                "block": last.block,
                "modules": len(rows),  # convs, BNs, ReLUs, the sum, the shortcut's: rows of the layer table
                "output_shape": shape_str(last.output_shape),
                "params": sum(r.params for r in rows),
                "macs": sum(r.macs for r in rows),
                "flops": sum(r.flops for r in rows),
                "output_bytes": sum(r.output_bytes for r in rows),
                "receptive_field": spatial[-1].receptive_field if spatial else None,
                "jump": spatial[-1].jump if spatial else None,
            }
        )
    df = pd.DataFrame.from_records(records)
    for col in ("block", "receptive_field", "jump"):
        df[col] = pd.array(df[col].tolist(), dtype="Int64")
    return df


def report_dataframe(report: Report, level: Level = "layer") -> pd.DataFrame:
    if level == "layer":
        return _layer_frame(report.rows)
    if level == "stage":
        df = _grouped(report, lambda r: r.stage)
        df["blocks"] = [
            report.config.blocks[int(s.removeprefix("layer")) - 1] if s.startswith("layer") else 0
            for s in df["stage"]
        ]
        return df.drop(columns=["block"])[
            ["stage", "blocks", "modules", "output_shape", "params", "macs", "flops", "output_bytes",
             "receptive_field", "jump"]
        ]
    if level == "block":
        blocks = {b.path: b for b in report.plan.blocks}
        df = _grouped(report, _group_key)
        names, types, shortcuts = [], [], []
        for stage, block in zip(df["stage"], df["block"]):
            if pd.isna(block):
                names.append(stage)
                types.append("stem" if stage == "stem" else "head")
                shortcuts.append("")
                continue
            b = blocks[f"{stage}.{block}"]
            names.append(b.path)
            types.append(("PreAct" if b.preact else "") + ("BasicBlock" if b.kind == "basic" else "Bottleneck"))
            shortcuts.append(_SHORTCUT_LABEL[b.shortcut])
        df.insert(0, "layer", names)
        df.insert(3, "type", types)
        df.insert(4, "shortcut", shortcuts)
        return df
    raise ValueError(f"level={level!r} is not one of {LEVELS}")

"""Two ResNets side by side: headline numbers, per-stage sums, and their layers aligned row by row.

`compare(a, b)` takes two Reports (analyse B at A's input and batch, so the numbers speak of the same images)
and returns frozen numbers and DataFrames; it formats nothing.

How layers are aligned. A layer is known by its module path (`layer2.0.conv1`), the name torchvision's state
dict uses, so the same path in two models is the same place in the architecture (ReLUs, which share their
block's path, are named after the layer they follow: `row_keys`). The two key sequences are aligned in forward
order (`difflib.SequenceMatcher`, exact keys), each model's order kept: a stage of 3 blocks against one of 18
leaves blocks 3 to 17 on B's side only.

What makes a row differ: its type, kernel, stride, output shape, parameters or MACs. The receptive
field and jump are left out on purpose: they carry everything upstream, so one stride moved in stage 2 would mark
every later row, and the diff is meant to point at the layers that themselves changed (ResNet-50 v1 against v1.5:
the first 1x1 conv and the 3x3 conv of each downsampling bottleneck, and the BN and ReLU between them).
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import TYPE_CHECKING

import pandas as pd

from .tables import shape_str

if TYPE_CHECKING:
    from .analysis import LayerRow, Report

# (field of LayerRow, name in the diff's words); the order is the order `changed` lists them in.
COMPARED: tuple[tuple[str, str], ...] = (
    ("kind", "type"),
    ("kernel", "kernel"),
    ("stride", "stride"),
    ("output_shape", "output shape"),
    ("params", "params"),
    ("macs", "MACs"),
)  # output bytes follow the output shape: `compare` takes two reports at one batch and one dtype


@dataclass(frozen=True)
class Quantity:
    """One headline number of both models. `unit` is what `resnet_core.units.fmt_count` takes ("parameters",
    "MACs"), "bytes" (for `fmt_bytes`), "layers" or "px"."""

    name: str  # a short key: "params", "macs", "flops", "activation_bytes", "depth", "receptive_field"
    label: str
    unit: str
    a: int
    b: int

    @property
    def difference(self) -> int:
        """B minus A."""
        return self.b - self.a

    @property
    def ratio(self) -> float | None:
        """B / A; None when A is 0."""
        return self.b / self.a if self.a else None


@dataclass(frozen=True)
class StageShare:
    """The part of one quantity's difference that lies in one stage."""

    quantity: str  # "params" or "macs"
    stage: str  # "stem", "layer1" .. "layerN", "head"
    difference: int  # B minus A in that stage
    share: float  # its part of the summed absolute per-stage differences, 0..1


@dataclass(frozen=True)
class Comparison:
    a: Report
    b: Report
    headline: tuple[Quantity, ...]
    stages: pd.DataFrame  # one row per stage of either model; see `stage_frame`
    layers: pd.DataFrame  # the aligned layer rows; see `layer_frame`

    def quantity(self, name: str) -> Quantity:
        return next(q for q in self.headline if q.name == name)

    @property
    def differing(self) -> pd.DataFrame:
        """The aligned rows that differ (including those only one model has)."""
        return self.layers[self.layers["differs"]]

    def shares(self, quantity: str) -> tuple[StageShare, ...]:
        """Where the difference in `quantity` ("params", "macs" or "output_bytes") lies: the stages that differ,
        largest share first (forward order among equals); empty when no stage differs."""
        diff = self.stages[f"B {quantity}"] - self.stages[f"A {quantity}"]
        total = int(diff.abs().sum())
        found = [StageShare(quantity, str(stage), int(d), abs(int(d)) / total)
                 for stage, d in zip(self.stages["stage"], diff) if d != 0]
        return tuple(sorted(found, key=lambda s: -s.share))  # sorted() is stable: equals stay in forward order

    @property
    def differing_blocks(self) -> tuple[str, ...]:
        """The blocks (`layer2.0`) or stem/head that hold a differing row, in forward order."""
        rows = self.differing
        out: list[str] = []
        for stage, block in zip(rows["stage"], rows["block"]):
            where = stage if pd.isna(block) else f"{stage}.{int(block)}"
            if where not in out:
                out.append(where)
        return tuple(out)


def headline(a: Report, b: Report) -> tuple[Quantity, ...]:
    return (
        Quantity("params", "Parameters", "parameters", a.total_params, b.total_params),
        Quantity("macs", "MACs per image", "MACs", a.total_macs, b.total_macs),
        Quantity("flops", "FLOPs per image (2 × MACs)", "FLOPs", a.total_flops, b.total_flops),
        Quantity("activation_bytes", f"Activation memory (batch {a.batch_size})", "bytes", a.activation_bytes,
                 b.activation_bytes),
        Quantity("depth", "Depth (weighted layers)", "layers", a.weighted_layers, b.weighted_layers),
        Quantity("receptive_field", "Receptive field (theoretical)", "px", a.receptive_field, b.receptive_field),
    )


def align(a: list[str], b: list[str]) -> list[tuple[int | None, int | None]]:
    """Positions of `a` and `b` side by side, each list's order kept: (i, j) for equal keys matched in order,
    (i, None) and (None, j) for the keys only one side has there."""
    pairs: list[tuple[int | None, int | None]] = []
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            pairs.extend(zip(range(i1, i2), range(j1, j2)))
        else:  # a key both have, but in crossing orders (a pre-activation block against a plain one), stays apart
            pairs.extend((i, None) for i in range(i1, i2))
            pairs.extend((None, j) for j in range(j1, j2))
    return pairs


def stage_frame(a: Report, b: Report) -> pd.DataFrame:
    """Per stage of either model: `stage`, and for side X in A, B: `X blocks`, `X params`, `X macs` (per image),
    `X output_bytes` (batch), `X output_shape` (the stage's last output, with the batch). A stage one model lacks
    has 0 and an empty shape there."""
    frames = {side: r.to_dataframe("stage") for side, r in (("A", a), ("B", b))}
    pairs = align(list(frames["A"]["stage"]), list(frames["B"]["stage"]))
    out = pd.DataFrame({"stage": [frames["A"]["stage"].iloc[i] if i is not None else frames["B"]["stage"].iloc[j]
                                  for i, j in pairs]})
    for side, df in frames.items():
        at = [(i if side == "A" else j) for i, j in pairs]
        df = df.reindex([k if k is not None else -1 for k in at])  # -1: no such row, all missing
        out[f"{side} blocks"] = df["blocks"].fillna(0).astype(int).to_numpy()
        for col in ("params", "macs", "output_bytes"):
            out[f"{side} {col}"] = df[col].fillna(0).astype("int64").to_numpy()
        out[f"{side} output_shape"] = df["output_shape"].fillna("").to_numpy()
    return out


def row_keys(rows: tuple[LayerRow, ...]) -> list[str]:
    """A key for each row that names its place in the architecture: its module path, except for ReLUs, which share
    their block's path. A ReLU inside a branch, or in the stem or head, is named after the layer it follows
    (`layer2.0.bn1.relu`); a block's last ReLU, on the sum, keeps the block's (`layer2.0.relu`), so that a
    basic block's last ReLU meets a bottleneck's last ReLU and not the one after its second BN."""
    keys: list[str] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(rows):
        key = r.path
        if r.kind == "ReLU" and i > 0 and (r.branch == "residual" or r.block is None):
            key = f"{rows[i - 1].path}.relu"
        n = seen.get(key, 0)
        seen[key] = n + 1
        keys.append(key if n == 0 else f"{key}#{n}")  # never met in a ResNet; kept unique all the same
    return keys


def _changed(ra: LayerRow | None, rb: LayerRow | None) -> str:
    if ra is None:
        return "only in B"
    if rb is None:
        return "only in A"
    return ", ".join(words for name, words in COMPARED if getattr(ra, name) != getattr(rb, name))


def layer_frame(a: Report, b: Report) -> pd.DataFrame:
    """The layers of A and B aligned, one row per layer of either: `key` (see `row_keys`), `layer` (path),
    `stage`, `block`, `branch`, then for side X in A, B: `X type`, `X kernel`, `X stride`, `X output_shape`,
    `X params`, `X macs` (per image), `X output_bytes` (batch) (missing on a side that lacks the layer), `changed`
    (what differs, in words, or "only in A/B"; "" when nothing) and `differs` (bool)."""
    keys_a, keys_b = row_keys(a.rows), row_keys(b.rows)
    records = []
    for i, j in align(keys_a, keys_b):
        ra, rb = (a.rows[i] if i is not None else None), (b.rows[j] if j is not None else None)
        either = ra if ra is not None else rb
        assert either is not None
        record: dict[str, object] = {"key": keys_a[i] if i is not None else keys_b[j],  # type: ignore[index]
                                     "layer": either.path, "stage": either.stage, "block": either.block,
                                     "branch": either.branch}
        for side, r in (("A", ra), ("B", rb)):
            record[f"{side} type"] = r.kind if r else None
            record[f"{side} kernel"] = r.kernel if r else None
            record[f"{side} stride"] = r.stride if r else None
            record[f"{side} output_shape"] = shape_str(r.output_shape) if r else None
            record[f"{side} params"] = r.params if r else None
            record[f"{side} macs"] = r.macs if r else None
            record[f"{side} output_bytes"] = r.output_bytes if r else None
        record["changed"] = _changed(ra, rb)
        records.append(record)
    df = pd.DataFrame.from_records(records)
    for col in ("block", "A kernel", "A stride", "A params", "A macs", "A output_bytes",
                "B kernel", "B stride", "B params", "B macs", "B output_bytes"):
        df[col] = pd.array(df[col].tolist(), dtype="Int64")
    df["differs"] = df["changed"] != ""
    return df


def compare(a: Report, b: Report) -> Comparison:
    """A and B side by side. Both must be analysed at the same input height and width, batch and dtype (ValueError
    otherwise: MACs at different resolutions, or bytes at different batches, would not compare like with like). The
    channels may differ: each model takes its own."""
    if a.input_size[1:] != b.input_size[1:] or (a.batch_size, a.dtype_bytes) != (b.batch_size, b.dtype_bytes):
        raise ValueError(f"compare two models at the same input size, batch and dtype: A has {a.input_size}, batch "
                         f"{a.batch_size}, {a.dtype_bytes} bytes a value; B has {b.input_size}, batch {b.batch_size}, "
                         f"{b.dtype_bytes} bytes a value")
    return Comparison(a, b, headline(a, b), stage_frame(a, b), layer_frame(a, b))


# Units of the diff's columns, for a CSV that says them in its header.
_CSV_UNITS = {"params": "params", "macs": "MACs per image", "output_bytes": "bytes per batch"}


def diff_csv_frame(c: Comparison, *, only_differing: bool = False) -> pd.DataFrame:
    """The aligned layer rows with their units in the headers ("A macs (MACs per image)"), for a CSV download."""
    df = c.differing if only_differing else c.layers
    renamed = {}
    for col in df.columns:
        side, _, name = col.partition(" ")
        if side in ("A", "B") and name in _CSV_UNITS:
            renamed[col] = f"{col} ({_CSV_UNITS[name]})"
    for side in ("A", "B"):
        renamed[f"{side} output_shape"] = f"{side} output_shape (batch x channels x height x width)"
    return df.rename(columns=renamed)

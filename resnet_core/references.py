"""Published figures to check our numbers against: torchvision's weights metadata and the paper's tables.

[He2015] Table 1 lists "FLOPs" that are multiply-adds (our MACs) for the paper's models, whose bottlenecks
stride in the first 1x1 (v1). torchvision's `_ops` metadata, labelled GFLOPS, are also multiply-adds, of its
v1.5 models. Top-1 errors from [He2015] Tables 2 and 3 are 10-crop testing on ImageNet val; Table 6 gives
CIFAR-10 test error.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .analysis import analyze
from .config import PRESETS, TORCHVISION_PRESETS, ResNetConfig


@dataclass(frozen=True)
class Reference:
    source: str  # where the figure is printed
    params: float | None  # parameters (exact for torchvision, rounded in the paper)
    macs: float | None  # multiply-accumulates per image at `input_side`
    input_side: int
    top1_error: float | None  # percent
    note: str = ""


# [He2015] Table 1 (GMACs, "FLOPs" there) and Table 3 (10-crop top-1 error, %); option B shortcuts.
_PAPER_IMAGENET = {
    "resnet18": (1.8e9, 27.88, "Table 2"),
    "resnet34": (3.6e9, 24.52, "Table 3, option B"),
    "resnet50": (3.8e9, 22.85, "Table 3"),
    "resnet101": (7.6e9, 21.75, "Table 3"),
    "resnet152": (11.3e9, 21.43, "Table 3"),
}
_PAPER_PLAIN = {"plain18": 27.94, "plain34": 28.54}  # [He2015] Table 2, 10-crop top-1 error
# [He2015] Table 6: parameters and CIFAR-10 test error (%).
_PAPER_CIFAR = {
    "resnet20": (0.27e6, 8.75),
    "resnet32": (0.46e6, 7.51),
    "resnet44": (0.66e6, 7.17),
    "resnet56": (0.85e6, 6.97),
    "resnet110": (1.7e6, 6.43),
    "resnet1202": (19.4e6, 7.93),
}


def paper_config(name: str) -> ResNetConfig:
    """The paper's own variant of a preset: bottleneck stride on the first 1x1 (v1)."""
    return PRESETS[name].with_(stride_at="v1")


def references(name: str) -> list[Reference]:
    """Every published figure for a preset name (empty for custom models and presets nobody published)."""
    refs: list[Reference] = []
    if name in TORCHVISION_PRESETS:
        from torchvision.models import get_model_weights

        for w in get_model_weights(name):
            meta = w.meta
            refs.append(
                Reference(
                    source=f"torchvision {w}",
                    params=meta["num_params"],
                    macs=round(meta["_ops"] * 1e9),
                    input_side=224,
                    top1_error=round(100 - meta["_metrics"]["ImageNet-1K"]["acc@1"], 3),
                    note="'GFLOPS' in torchvision's metadata are multiply-adds; 1-crop top-1 error",
                )
            )
    base = "resnet50" if name == "resnet50_v1" else name
    if base in _PAPER_IMAGENET:
        macs, err, table = _PAPER_IMAGENET[base]
        refs.append(
            Reference(
                source=f"He et al. 2015, Table 1 (MACs), {table} (error)",
                params=None,
                macs=macs,
                input_side=224,
                top1_error=err,
                note="the paper's 'FLOPs' are multiply-adds"
                + (", with the stride on the first 1x1 (v1)" if "bottleneck" in PRESETS[name].block_types else ""),
            )
        )
    if name in _PAPER_PLAIN:
        refs.append(Reference("He et al. 2015, Table 2", None, None, 224, _PAPER_PLAIN[name], "10-crop top-1 error"))
    if name in _PAPER_CIFAR:
        params, err = _PAPER_CIFAR[name]
        refs.append(Reference("He et al. 2015, Table 6", params, None, 32, err, "CIFAR-10 test error"))
    return refs


def comparison(name: str) -> pd.DataFrame:
    """Each published figure for a preset beside ours at the same input size (and the paper's v1 stride)."""
    records = []
    for ref in references(name):
        ours_cfg = paper_config(name) if ref.source.startswith("He et al.") else PRESETS[name]
        ours = analyze(ours_cfg, input_size=(3, ref.input_side, ref.input_side))
        records.append(
            {
                "source": ref.source,
                "input": f"{ref.input_side}x{ref.input_side}",
                "params": ref.params,
                "ours: params": ours.total_params,
                "MACs": ref.macs,
                "ours: MACs": ours.total_macs,
                "top-1 error (%)": ref.top1_error,
                "note": ref.note,
            }
        )
    df = pd.DataFrame.from_records(records)
    for col in ("params", "MACs") if records else ():  # whole numbers, a gap where a source gives none
        df[col] = pd.array([None if pd.isna(v) else round(v) for v in df[col]], dtype="Int64")
    return df

"""resnet_core: every ResNet of the paper and of torchvision, built from data, with an exact layer analysis.

    from resnet_core import ResNetConfig, PRESETS, build_model, analyze
    model = build_model("resnet50")
    report = analyze("resnet50", input_size=(3, 224, 224), batch_size=1)
    report.total_params, report.total_macs, report.total_flops

This package never imports streamlit; the app's pages only lay out what it returns.
"""

import importlib
from typing import Any

# Where each name lives: imported on first use, so `import resnet_core.images` (the upload decoder, which a
# server's settings read) does not import torch.
_HOMES = {
    "LayerRow": "analysis", "MemoryEstimate": "analysis", "Report": "analysis", "analyze": "analysis",
    "PRESET_GROUPS": "config", "PRESETS": "config", "TORCHVISION_PRESETS": "config", "ResNetConfig": "config",
    "preset_name": "config", "resolve": "config",
    "ResNet": "model", "build_model": "model",
    "Pretrained": "weights", "PretrainedUnavailable": "weights", "load_pretrained": "weights",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    return value


__all__ = [
    "PRESETS",
    "PRESET_GROUPS",
    "TORCHVISION_PRESETS",
    "LayerRow",
    "MemoryEstimate",
    "Pretrained",
    "PretrainedUnavailable",
    "Report",
    "ResNet",
    "ResNetConfig",
    "analyze",
    "build_model",
    "load_pretrained",
    "preset_name",
    "resolve",
]

"""resnet_core: every ResNet of the paper and of torchvision, built from data, with an exact layer analysis.

    from resnet_core import ResNetConfig, PRESETS, build_model, analyze
    model = build_model("resnet50")
    report = analyze("resnet50", input_size=(3, 224, 224), batch_size=1)
    report.total_params, report.total_macs, report.total_flops

This package never imports streamlit; the app's pages only lay out what it returns.
"""

from .analysis import LayerRow, MemoryEstimate, Report, analyze
from .config import PRESET_GROUPS, PRESETS, TORCHVISION_PRESETS, ResNetConfig, preset_name, resolve
from .model import ResNet, build_model
from .plan import plan
from .weights import Pretrained, PretrainedUnavailable, load_pretrained

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
    "plan",
    "preset_name",
    "resolve",
]

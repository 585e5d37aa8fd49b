"""Configs and presets: every preset is valid, every invalid config names its field, the paper's tables hold."""

from __future__ import annotations

import pytest

from resnet_core import PRESET_GROUPS, PRESETS, ResNetConfig, analyze
from resnet_core.config import ConfigError, preset_name, resolve


def test_every_preset_is_grouped_once() -> None:
    names = [n for group in PRESET_GROUPS.values() for n in group]
    assert len(names) == len(set(names)) == len(PRESETS)


@pytest.mark.parametrize("name", [n for g in ("ImageNet", "CIFAR") for n in PRESET_GROUPS[g]])
def test_each_residual_preset_has_a_plain_twin(name: str) -> None:
    twin = PRESETS["plain" + name.removeprefix("resnet")]
    assert twin == PRESETS[name].with_(residual=False)


# [He2015] Table 6: depth and parameters of the CIFAR-10 nets (0.27M ... 19.4M).
PAPER_TABLE_6 = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet44": 0.66e6, "resnet56": 0.85e6,
                 "resnet110": 1.7e6, "resnet1202": 19.4e6}


@pytest.mark.parametrize(("name", "paper_params"), PAPER_TABLE_6.items())
def test_cifar_presets_match_paper_table_6(name: str, paper_params: float) -> None:
    cfg = PRESETS[name]
    assert cfg.depth == int(name.removeprefix("resnet"))  # 6n + 2 layers
    report = analyze(name, input_size=(3, 32, 32))
    assert report.weighted_layers == cfg.depth
    digits = 2 if paper_params < 1e6 else 1
    assert round(report.total_params / 1e6, digits) == round(paper_params / 1e6, digits)


# [He2015] Table 1: the ImageNet nets' depth and blocks per stage.
@pytest.mark.parametrize(
    ("name", "blocks", "block"),
    [("resnet18", (2, 2, 2, 2), "basic"), ("resnet34", (3, 4, 6, 3), "basic"),
     ("resnet50", (3, 4, 6, 3), "bottleneck"), ("resnet101", (3, 4, 23, 3), "bottleneck"),
     ("resnet152", (3, 8, 36, 3), "bottleneck")],
)
def test_imagenet_presets_match_paper_table_1(name: str, blocks: tuple[int, ...], block: str) -> None:
    cfg = PRESETS[name]
    assert cfg.blocks == blocks and cfg.block_types == (block,) * 4
    assert cfg.depth == analyze(name).weighted_layers == int(name.removeprefix("resnet"))


@pytest.mark.parametrize(
    ("changes", "field", "allowed"),
    [
        ({"blocks": (2, 0, 2, 2)}, "blocks[1]", "from 1 to"),
        ({"blocks": ()}, "blocks", "1 to 6"),
        ({"blocks": (2,) * 7, "widths": (64,) * 7}, "blocks", "1 to 6"),
        ({"blocks": (2, 2), "widths": (64, 128, 256)}, "widths", "one width per stage"),
        ({"widths": (64, 128, 0, 512)}, "widths[2]", "from 1 to"),
        ({"widths": (64, 128, 256, 10**6)}, "widths[3]", "from 1 to"),
        ({"block": "triple"}, "block", "basic"),
        ({"block": ("basic", "bottleneck")}, "block", "per stage"),
        ({"stem": "tiny"}, "stem", "imagenet"),
        ({"shortcut": "D"}, "shortcut", "A, B, C"),
        ({"stride_at": "v2"}, "stride_at", "v1.5"),
        ({"groups": 32, "width_per_group": 4}, "groups", "basic blocks"),
        ({"block": "bottleneck", "groups": 32, "width_per_group": 4, "widths": (100, 128, 256, 512)},
         "width_per_group", "divide by 64"),
        ({"block": "bottleneck", "groups": 0}, "groups", "from 1 to"),
        ({"in_channels": 0}, "in_channels", "from 1 to"),
        ({"num_classes": -3}, "num_classes", "from 1 to"),
        ({"preact": "yes"}, "preact", "True or False"),
        ({"shortcut": "A", "widths": (64, 32, 256, 512)}, "shortcut", "cannot shrink"),
        ({"blocks": (2, 2.5, 2, 2)}, "blocks[1]", "whole number"),
    ],
)
def test_invalid_configs_name_field_value_and_allowed(changes: dict[str, object], field: str, allowed: str) -> None:
    with pytest.raises(ValueError) as e:
        ResNetConfig(**changes)  # type: ignore[arg-type]
    msg = str(e.value)
    assert f"ResNetConfig.{field}=" in msg and allowed in msg
    # The same refusal for a person: the field and stage as data, the words without Python's notation.
    assert isinstance(e.value, ConfigError) and allowed in e.value.plain
    assert f"{e.value.field}" + ("" if e.value.index is None else f"[{e.value.index}]") == field
    assert "ResNetConfig" not in e.value.plain and "=" not in e.value.plain


def test_resolve_and_preset_name() -> None:
    assert resolve("resnet50") is PRESETS["resnet50"]
    assert preset_name(ResNetConfig(blocks=(3, 4, 6, 3), block="bottleneck")) == "resnet50"
    with pytest.raises(ValueError, match="unknown preset 'resnet51'"):
        resolve("resnet51")


def test_configs_are_frozen_and_hashable() -> None:
    cfg = PRESETS["resnet18"]
    with pytest.raises(AttributeError):
        cfg.blocks = (1, 1, 1, 1)  # type: ignore[misc]
    assert {cfg: 1}[ResNetConfig()] == 1

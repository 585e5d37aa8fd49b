"""The layer plan: every conv of a ResNet with its geometry, derived from a config by pure functions.

`model.py` builds modules from this plan and `analysis.py` counts from it, so the two share one
source of truth for channels, kernels, strides and shortcuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import BlockType, ResNetConfig, inner_width, stage_out_channels

ShortcutKind = Literal["identity", "zero_pad", "projection", "none"]


@dataclass(frozen=True)
class ConvSpec:
    """One bias-free Conv2d; `name` is its module name inside its parent (torchvision's names)."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def params(self) -> int:
        return self.out_channels * (self.in_channels // self.groups) * self.kernel * self.kernel


@dataclass(frozen=True)
class BlockPlan:
    """One residual block: out = relu(F(x) + shortcut(x)), F being `convs` with BN (and ReLU) between."""

    stage: int  # 0-based; module path is f"layer{stage + 1}.{index}"
    index: int
    kind: BlockType
    preact: bool
    in_channels: int
    out_channels: int
    stride: int
    convs: tuple[ConvSpec, ...]  # the residual branch F(x), in order
    shortcut: ShortcutKind  # "none" in a plain network
    projection: ConvSpec | None  # the 1x1 conv of a projection shortcut ("downsample.0")

    @property
    def path(self) -> str:
        return f"layer{self.stage + 1}.{self.index}"


@dataclass(frozen=True)
class Plan:
    config: ResNetConfig
    stem_conv: ConvSpec
    stem_bn: bool  # a pre-activation CIFAR net leaves BN-ReLU to its first block
    stem_pool: bool  # the ImageNet stem's 3x3/2 max-pool
    stages: tuple[tuple[BlockPlan, ...], ...]
    final_bn: bool  # pre-activation nets end with BN-ReLU before pooling ([He2016] Fig. 1b)
    features: int  # channels into the classifier

    @property
    def blocks(self) -> tuple[BlockPlan, ...]:
        return tuple(b for stage in self.stages for b in stage)


def _branch(cfg: ResNetConfig, stage: int, in_ch: int, stride: int) -> tuple[ConvSpec, ...]:
    width = cfg.widths[stage]
    if cfg.block_types[stage] == "basic":
        return (
            ConvSpec("conv1", in_ch, width, 3, stride, 1),
            ConvSpec("conv2", width, width, 3, 1, 1),
        )
    inner = inner_width(cfg, stage)
    # [He2015] puts the stride on the first 1x1 (v1); torchvision moves it to the 3x3 (v1.5), which
    # costs more MACs but loses less information when downsampling.
    s1, s2 = (stride, 1) if cfg.stride_at == "v1" else (1, stride)
    return (
        ConvSpec("conv1", in_ch, inner, 1, s1, 0),
        ConvSpec("conv2", inner, inner, 3, s2, 1, cfg.groups),
        ConvSpec("conv3", inner, stage_out_channels(cfg, stage), 1, 1, 0),
    )


def _shortcut(cfg: ResNetConfig, in_ch: int, out_ch: int, stride: int) -> ShortcutKind:
    if not cfg.residual:
        return "none"
    if cfg.shortcut == "C":
        return "projection"
    if stride == 1 and in_ch == out_ch:
        return "identity"
    return "zero_pad" if cfg.shortcut == "A" else "projection"


def block_plan(cfg: ResNetConfig, stage: int, index: int, in_channels: int) -> BlockPlan:
    stride = 2 if stage > 0 and index == 0 else 1
    out_ch = stage_out_channels(cfg, stage)
    shortcut = _shortcut(cfg, in_channels, out_ch, stride)
    projection = ConvSpec("downsample.0", in_channels, out_ch, 1, stride) if shortcut == "projection" else None
    return BlockPlan(
        stage=stage,
        index=index,
        kind=cfg.block_types[stage],
        preact=cfg.preact,
        in_channels=in_channels,
        out_channels=out_ch,
        stride=stride,
        convs=_branch(cfg, stage, in_channels, stride),
        shortcut=shortcut,
        projection=projection,
    )


def plan(cfg: ResNetConfig) -> Plan:
    if cfg.stem == "imagenet":
        stem_conv = ConvSpec("conv1", cfg.in_channels, cfg.stem_width, 7, 2, 3)
    else:
        stem_conv = ConvSpec("conv1", cfg.in_channels, cfg.stem_width, 3, 1, 1)
    stages = []
    channels = cfg.stem_width
    for s, n in enumerate(cfg.blocks):
        stage = []
        for i in range(n):
            stage.append(block_plan(cfg, s, i, channels))
            channels = stage[-1].out_channels
        stages.append(tuple(stage))
    return Plan(
        config=cfg,
        stem_conv=stem_conv,
        stem_bn=not (cfg.preact and cfg.stem == "cifar"),
        stem_pool=cfg.stem == "imagenet",
        stages=tuple(stages),
        final_bn=cfg.preact,
        features=channels,
    )

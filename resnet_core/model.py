"""The ResNet module, built by pure functions from a config's plan.

    stem -> layer1 .. layerN -> [final BN-ReLU, pre-activation only] -> global avg-pool -> fc

Module names are torchvision's, so for every torchvision preset our state dict has the same keys
and shapes as `torchvision.models.<name>()` and loads into it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .blocks import make_block
from .config import ResNetConfig, resolve
from .plan import BlockPlan, Plan, plan


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """`model` in eval mode inside the block, and in the mode it had after it, whatever happens."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def make_stage(blocks: tuple[BlockPlan, ...]) -> nn.Sequential:
    return nn.Sequential(*(make_block(b) for b in blocks))


class ResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.config = cfg
        self.plan: Plan = plan(cfg)
        p = self.plan
        self.conv1 = nn.Conv2d(
            cfg.in_channels,
            cfg.stem_width,
            p.stem_conv.kernel,
            stride=p.stem_conv.stride,
            padding=p.stem_conv.padding,
            bias=False,
        )
        if p.stem_bn:
            self.bn1 = nn.BatchNorm2d(cfg.stem_width)
        self.relu = nn.ReLU(inplace=True)
        if p.stem_pool:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stages = [f"layer{i + 1}" for i in range(cfg.num_stages)]
        for name, blocks in zip(self.stages, p.stages):
            self.add_module(name, make_stage(blocks))
        if p.final_bn:
            self.final_bn = nn.BatchNorm2d(p.features)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(p.features, cfg.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialisation ([He2015b], cited in [He2015] 3.4), fan-out as torchvision does.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.config.zero_init_residual:
            # Every block then starts as the identity (Goyal et al. 2017, "ImageNet in 1 hour", 5.1).
            for stage in self.stages:
                for block in self.get_submodule(stage).children():
                    block.zero_init_last()  # type: ignore[operator]

    def stem(self, x: Tensor) -> Tensor:
        x = self.conv1(x)  # (B, stem_width, H/2, W/2) for the ImageNet stem
        if self.plan.stem_bn:
            x = self.relu(self.bn1(x))
        if self.plan.stem_pool:
            x = self.maxpool(x)  # (B, stem_width, H/4, W/4)
        return x

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for name in self.stages:
            x = self.get_submodule(name)(x)  # each stage after the first halves H and W
        if self.plan.final_bn:
            x = self.relu(self.final_bn(x))
        return x  # (B, features, h, w)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.forward_features(x))  # (B, features, 1, 1)
        return self.fc(torch.flatten(x, 1))  # (B, num_classes)


MAX_PARAMS = 200_000_000  # build_model's default bound (and the app's): about 3x the largest preset, 800 MB in float32


def build_model(
    model: str | ResNetConfig, *, device: str | torch.device | None = None, seed: int | None = None,
    max_params: int | None = MAX_PARAMS,
) -> ResNet:
    """A fresh, randomly initialised ResNet for a preset name or a config.

    `seed` makes the weights reproducible without touching the global random state;
    `device="meta"` builds the module tree without allocating any weights (for shapes only).
    A config above `max_params` parameters is refused before anything is allocated (None: no bound).
    """
    cfg = resolve(model)
    if max_params is not None and device != "meta":
        from .analysis import param_count
        from .units import fmt_count

        n = param_count(cfg)
        if n > max_params:
            raise ValueError(f"this model has {fmt_count(n, 'parameters')} ({n * 4 / 2**30:,.1f} GiB in float32), "
                             f"more than the {fmt_count(max_params, 'parameters')} that build_model allows; choose "
                             "fewer or narrower blocks, or pass max_params to build it anyway")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        if device is None:
            return ResNet(cfg)
        with torch.device(device):
            return ResNet(cfg)

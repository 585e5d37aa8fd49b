"""Residual blocks. Each one computes  y = F(x) + shortcut(x)  ([He2015] eq. 1 and 2).

Module names follow torchvision (`conv1`, `bn1`, ..., `downsample`) so state dicts move across.
Each block is built from a `BlockPlan`, which already fixed every channel count and stride.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .plan import BlockPlan, ConvSpec


def conv(spec: ConvSpec) -> nn.Conv2d:
    # No bias: the BatchNorm that follows (or precedes, pre-activation) has its own shift.
    return nn.Conv2d(
        spec.in_channels,
        spec.out_channels,
        spec.kernel,
        stride=spec.stride,
        padding=spec.padding,
        groups=spec.groups,
        bias=False,
    )


class ZeroPadShortcut(nn.Module):
    """Option A of [He2015] 3.3: the identity, subsampled by the stride, with zero channels appended.

    It has no parameters, which is why the paper uses it for the CIFAR nets (Table 6).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C_in, ceil(H/s), ceil(W/s))
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))  # (B, C_out, ...)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def make_shortcut(plan: BlockPlan, *, with_bn: bool) -> nn.Module | None:
    """The `downsample` module of a block, or None where the shortcut is the plain identity."""
    if plan.shortcut == "zero_pad":
        return ZeroPadShortcut(plan.in_channels, plan.out_channels, plan.stride)
    if plan.projection is not None:
        proj: list[nn.Module] = [conv(plan.projection)]
        if with_bn:
            proj.append(nn.BatchNorm2d(plan.out_channels))
        return nn.Sequential(*proj)
    return None


class BasicBlock(nn.Module):
    """Two 3x3 convs ([He2015] Fig. 2 left). Used by ResNet-18/34 and the CIFAR nets."""

    def __init__(self, plan: BlockPlan) -> None:
        super().__init__()
        c1, c2 = plan.convs
        self.residual = plan.shortcut != "none"
        self.conv1 = conv(c1)
        self.bn1 = nn.BatchNorm2d(c1.out_channels)
        self.conv2 = conv(c2)
        self.bn2 = nn.BatchNorm2d(c2.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(plan, with_bn=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, w, H/s, W/s)
        out = self.bn2(self.conv2(out))  # F(x): (B, w, H/s, W/s)
        if self.residual:
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity  # y = F(x) + x
        return self.relu(out)

    def branch_end(self) -> nn.Module:
        """The last module of the branch F(x): what the sum adds to the shortcut."""
        return self.bn2

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand ([He2015] Fig. 5 right): deep nets at the cost of shallow ones."""

    def __init__(self, plan: BlockPlan) -> None:
        super().__init__()
        c1, c2, c3 = plan.convs
        self.residual = plan.shortcut != "none"
        self.conv1 = conv(c1)
        self.bn1 = nn.BatchNorm2d(c1.out_channels)
        self.conv2 = conv(c2)  # grouped for ResNeXt; strided here in v1.5, in conv1 in v1
        self.bn2 = nn.BatchNorm2d(c2.out_channels)
        self.conv3 = conv(c3)
        self.bn3 = nn.BatchNorm2d(c3.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = make_shortcut(plan, with_bn=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, inner, H', W')
        out = self.relu(self.bn2(self.conv2(out)))  # (B, inner, H/s, W/s)
        out = self.bn3(self.conv3(out))  # F(x): (B, 4w, H/s, W/s)
        if self.residual:
            identity = x if self.downsample is None else self.downsample(x)
            out = out + identity
        return self.relu(out)

    def branch_end(self) -> nn.Module:
        """The last module of the branch F(x): what the sum adds to the shortcut."""
        return self.bn3

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


class PreActBasicBlock(nn.Module):
    """BN-ReLU before each conv and nothing after the sum ([He2016] Fig. 1b): x(l+1) = x(l) + F(x(l))."""

    def __init__(self, plan: BlockPlan) -> None:
        super().__init__()
        c1, c2 = plan.convs
        self.residual = plan.shortcut != "none"
        self.bn1 = nn.BatchNorm2d(c1.in_channels)
        self.conv1 = conv(c1)
        self.bn2 = nn.BatchNorm2d(c2.in_channels)
        self.conv2 = conv(c2)
        self.relu = nn.ReLU(inplace=False)  # x itself must stay untouched for the shortcut
        self.downsample = make_shortcut(plan, with_bn=False)
        # A projection sees the pre-activated input, as in [He2016]'s code; the zero-pad identity sees x.
        self.project_pre = plan.projection is not None

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))  # F(x)
        if not self.residual:
            return out
        identity = x if self.downsample is None else self.downsample(pre if self.project_pre else x)
        return out + identity

    def branch_end(self) -> nn.Module:
        """The last module of the branch F(x): what the sum adds to the shortcut."""
        return self.conv2

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck ([He2016] Fig. 1b with the 1x1-3x3-1x1 branch)."""

    def __init__(self, plan: BlockPlan) -> None:
        super().__init__()
        c1, c2, c3 = plan.convs
        self.residual = plan.shortcut != "none"
        self.bn1 = nn.BatchNorm2d(c1.in_channels)
        self.conv1 = conv(c1)
        self.bn2 = nn.BatchNorm2d(c2.in_channels)
        self.conv2 = conv(c2)
        self.bn3 = nn.BatchNorm2d(c3.in_channels)
        self.conv3 = conv(c3)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = make_shortcut(plan, with_bn=False)
        self.project_pre = plan.projection is not None

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))  # F(x)
        if not self.residual:
            return out
        identity = x if self.downsample is None else self.downsample(pre if self.project_pre else x)
        return out + identity

    def branch_end(self) -> nn.Module:
        """The last module of the branch F(x): what the sum adds to the shortcut."""
        return self.conv3

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)


BLOCK_CLASSES: dict[tuple[str, bool], type[nn.Module]] = {
    ("basic", False): BasicBlock,
    ("bottleneck", False): Bottleneck,
    ("basic", True): PreActBasicBlock,
    ("bottleneck", True): PreActBottleneck,
}


def make_block(plan: BlockPlan) -> nn.Module:
    return BLOCK_CLASSES[(plan.kind, plan.preact)](plan)


__all__ = [
    "BasicBlock",
    "Bottleneck",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ZeroPadShortcut",
    "make_block",
]

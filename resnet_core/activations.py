"""What the network sees: feature maps at every stage and block, a block's inside, and Grad-CAM.

Hooks go on the model passed in and are always removed before returning; give each user their own
model object (never one shared between sessions), since hooks on a shared module would mix users.

- `capture(model, x)`: one forward pass that keeps the stem's and every block's output, plus the
  size of each block's residual F(x) against its shortcut x ("residual anatomy"), and the logits.
- `block_internals(block, x)`: re-runs one block on its input and keeps every conv output, F(x),
  the shortcut x, their sum and the block output.
- `tile(...)`: many channels as ONE image, for display.
- `grad_cam(...)`: where the evidence for a class lies ([Selvaraju2017], Grad-CAM).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import PreActBasicBlock, PreActBottleneck
from .model import ResNet, eval_mode

Scale = Literal["channel", "shared"]


@dataclass(frozen=True)
class BlockAnatomy:
    """Mean absolute value of a block's residual branch F(x) and of its shortcut x, on one image."""

    path: str
    residual_abs_mean: float
    shortcut_abs_mean: float  # 0 for a plain block, which has no shortcut

    @property
    def ratio(self) -> float:
        """|F(x)| / |x|: small means the block changes its input only a little."""
        return self.residual_abs_mean / self.shortcut_abs_mean if self.shortcut_abs_mean else float("inf")


@dataclass(frozen=True)
class Capture:
    outputs: dict[str, Tensor]  # "stem", "layer1.0", ... -> (C, H, W) for the first image of the batch
    anatomy: tuple[BlockAnatomy, ...]
    logits: Tensor  # (B, num_classes)

    def stage_output(self, stage: str) -> Tensor:
        last = [k for k in self.outputs if k.startswith(stage + ".")][-1]
        return self.outputs[last]

    def block_input(self, path: str) -> Tensor:
        """The input of a block: the output of whatever came before it."""
        keys = list(self.outputs)
        return self.outputs[keys[keys.index(path) - 1]]


def blocks_of(model: ResNet) -> Iterator[tuple[str, nn.Module]]:
    for stage in model.stages:
        for i, block in enumerate(model.get_submodule(stage).children()):
            yield f"{stage}.{i}", block


def _last_norm(block: nn.Module) -> nn.Module:
    """The module whose output is F(x): the last BN (post-activation) or the last conv (pre-activation)."""
    last_conv = max(n for n, _ in block.named_children() if n.startswith("conv"))
    if isinstance(block, PreActBasicBlock | PreActBottleneck):
        return block.get_submodule(last_conv)
    return block.get_submodule("bn" + last_conv.removeprefix("conv"))


@contextmanager
def _hooks(handles: list[torch.utils.hooks.RemovableHandle]) -> Iterator[None]:
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.inference_mode()
def capture(model: ResNet, x: Tensor) -> Capture:
    """Every block's output (first image of the batch) and each block's |F(x)| vs |x|, in one forward pass."""
    outputs: dict[str, Tensor] = {}
    residual: dict[str, float] = {}
    shortcut: dict[str, float] = {}
    handles = [model.get_submodule(model.stages[0]).register_forward_pre_hook(
        lambda m, args: outputs.__setitem__("stem", args[0][0]))]
    for path, block in blocks_of(model):
        handles.append(block.register_forward_hook(lambda m, a, out, path=path: outputs.__setitem__(path, out[0])))
        handles.append(_last_norm(block).register_forward_hook(
            lambda m, a, out, path=path: residual.__setitem__(path, out.abs().mean().item())))
        downsample = getattr(block, "downsample", None)
        if getattr(block, "residual", False):
            if not isinstance(downsample, nn.Module):
                handles.append(block.register_forward_pre_hook(
                    lambda m, args, path=path: shortcut.__setitem__(path, args[0].abs().mean().item())))
            else:
                handles.append(downsample.register_forward_hook(
                    lambda m, a, out, path=path: shortcut.__setitem__(path, out.abs().mean().item())))
    with _hooks(handles), eval_mode(model):
        logits = model(x)
    anatomy = tuple(BlockAnatomy(p, residual[p], shortcut.get(p, 0.0)) for p, _ in blocks_of(model))
    return Capture(outputs=outputs, anatomy=anatomy, logits=logits)


@torch.inference_mode()
def block_internals(block: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Run one block on its input `x` (C, H, W) and keep what happens inside, in forward order:
    conv1 .. convN outputs, "F(x)" (the residual branch), "x" (the shortcut), "F(x) + x", "output"."""
    found: dict[str, Tensor] = {}
    handles = []
    for name, m in block.named_children():
        if name.startswith("conv"):
            handles.append(m.register_forward_hook(lambda m, a, out, name=name: found.__setitem__(name, out[0])))
    handles.append(_last_norm(block).register_forward_hook(lambda m, a, out: found.__setitem__("F(x)", out[0])))
    if isinstance(block.downsample, nn.Module):
        handles.append(block.downsample.register_forward_hook(lambda m, a, out: found.__setitem__("x", out[0])))
    with _hooks(handles), eval_mode(block):
        out = block(x.unsqueeze(0))[0]
    result = {k: found[k] for k in sorted(k for k in found if k.startswith("conv"))}
    result["F(x)"] = found["F(x)"].clone()
    if getattr(block, "residual", False):
        identity = found.get("x", x)
        result["x"] = identity
        result["F(x) + x"] = result["F(x)"] + identity
    result["output"] = out
    return result


@dataclass(frozen=True)
class ChannelStats:
    mean: np.ndarray  # (C,)
    max: np.ndarray  # (C,)
    zero_fraction: np.ndarray  # (C,) share of exact zeros, e.g. after a ReLU


def channel_stats(act: Tensor) -> ChannelStats:
    flat = act.detach().float().flatten(1)  # (C, H*W)
    return ChannelStats(
        mean=flat.mean(1).numpy(),
        max=flat.amax(1).numpy(),
        zero_fraction=(flat == 0).float().mean(1).numpy(),
    )


def channel_order(act: Tensor, by: Literal["index", "mean"]) -> list[int]:
    if by == "index":
        return list(range(act.shape[0]))
    return [int(i) for i in np.argsort(-channel_stats(act).mean, kind="stable")]  # strongest mean first


def tile(act: Tensor, order: Sequence[int], *, max_tiles: int = 64, scale: Scale = "channel",
         columns: int | None = None) -> np.ndarray:
    """Channels of `act` (C, H, W), in `order`, as one 2-D image in [0, 1] with NaN gaps between tiles.

    `scale="channel"` stretches each channel to its own min..max (shape is visible everywhere);
    `"shared"` uses one min..max for all (strengths compare across channels).
    """
    chosen = act.detach().float()[list(order)[:max_tiles]]  # (n, H, W)
    n, h, w = chosen.shape
    if scale == "channel":
        lo = chosen.flatten(1).amin(1)[:, None, None]
        hi = chosen.flatten(1).amax(1)[:, None, None]
    else:
        lo, hi = chosen.min(), chosen.max()
    normed = (chosen - lo) / torch.clamp(hi - lo, min=1e-12)
    cols = columns or int(np.ceil(np.sqrt(n * h / w)))  # about square overall
    rows = int(np.ceil(n / cols))
    grid = torch.full((rows * (h + 1) - 1, cols * (w + 1) - 1), float("nan"))
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = normed[i]
    return grid.numpy()


def grad_cam(model: ResNet, x: Tensor, target: int, layer: str) -> Tensor:
    """Grad-CAM of class `target` at module `layer` (e.g. "layer4") for one image x (1, C, H, W).

    The map is ReLU(sum_k a_k A_k), with a_k the spatial mean of d score / d A_k, resized to the input
    and scaled to [0, 1]. Returns (H, W).
    """
    kept: dict[str, Tensor] = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, a, out: kept.__setitem__("A", out))
    with _hooks([handle]), eval_mode(model), torch.enable_grad():
        logits = model(x)
        (grads,) = torch.autograd.grad(logits[0, target], kept["A"])
    a = grads.mean(dim=(2, 3), keepdim=True)  # (1, K, 1, 1)
    cam = F.relu((a * kept["A"]).sum(1, keepdim=True)).detach()  # (1, 1, h, w)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return cam / cam.max() if cam.max() > 0 else cam


def top_k(logits: Tensor, categories: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
    probs = logits.float().softmax(-1)[0]
    values, indices = probs.topk(min(k, probs.numel()))
    return [(categories[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]


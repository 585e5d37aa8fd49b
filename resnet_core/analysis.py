"""Layer analysis: shapes, parameters, MACs, memory and receptive field of every layer, with no compute.

It walks the same plan the builder builds from (`plan.py`) and propagates shapes analytically, so
ResNet-50 at 1024x1024, batch 256, is analysed in milliseconds and no convolution ever runs.

Units, said once and used everywhere:
- `macs`: multiply-accumulates of convolutions and linear layers, per image; `flops` follow the one rule in
  `units.py` (FLOPS_PER_MAC). The ResNet paper's "FLOPs" (3.6 x 10^9 for ResNet-50, Table 1) are multiply-adds,
  i.e. our MACs.
- `*_bytes`: bytes at `dtype_bytes` per element (4: float32), for the whole batch unless said otherwise.
- Receptive field and jump (effective stride) in input pixels, through the residual graph: at a sum,
  the receptive field is the union of the branch's and the shortcut's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from .config import ResNetConfig, resolve
from .plan import BlockPlan, ConvSpec, Plan, plan
from .units import FLOPS_PER_MAC

if TYPE_CHECKING:
    import pandas as pd

MAX_SIDE = 4096  # pixels; the analysis is analytic, this only keeps results meaningful
MAX_BATCH = 65536
Level = Literal["layer", "block", "stage"]


@dataclass(frozen=True, slots=True)
class LayerRow:
    path: str  # module path ("layer2.0.conv1"); "layer2.0.add" is the residual sum
    stage: str  # "stem", "layer1" .. "layerN", "head"
    block: int | None  # index of the block inside its stage
    branch: str  # "main", "residual" (F(x)) or "shortcut"
    kind: str  # the layer type ("Conv2d", "BatchNorm2d", "Add", ...)
    kernel: int | None
    stride: int | None
    output_shape: tuple[int, ...]  # with the batch: (B, C, H, W) or (B, F)
    params: int
    macs: int  # per image
    output_bytes: int  # whole batch
    receptive_field: int | None  # pixels; None once pooled globally
    jump: int | None  # effective stride: input pixels between neighbouring outputs

    @property
    def flops(self) -> int:
        """Floating-point operations per image (`units.FLOPS_RULE`)."""
        return FLOPS_PER_MAC * self.macs


@dataclass(frozen=True)
class MemoryEstimate:
    """Training memory at one batch size for one optimizer step, every tensor at `dtype_bytes` per value (BN's
    weight and bias among the parameters, in the same dtype). Left out: BN's running statistics (two buffers per
    channel), the CUDA context and the allocator's cache, cuDNN workspaces, the input batch, and temporaries that
    autograd frees within the step."""

    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int  # SGD with momentum keeps one buffer per parameter
    saved_activation_bytes: int  # tensors autograd keeps from forward for backward

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes + self.saved_activation_bytes


@dataclass(frozen=True)
class Report:
    config: ResNetConfig
    input_size: tuple[int, int, int]  # (C, H, W)
    batch_size: int
    rows: tuple[LayerRow, ...]
    memory: MemoryEstimate
    plan: Plan = field(repr=False, compare=False)  # what the rows were walked from: tables and diagrams read it
    dtype_bytes: int = 4
    _bn_params: int = field(default=0, repr=False)
    _linear_bias: int = field(default=0, repr=False)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def trainable_params(self) -> int:
        return self.total_params  # every parameter of a ResNet is trained

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates per image (convolutions and linear layers)."""
        return sum(r.macs for r in self.rows)

    @property
    def total_flops(self) -> int:
        """FLOPs per image (`units.FLOPS_RULE`)."""
        return FLOPS_PER_MAC * self.total_macs

    @property
    def torchinfo_mult_adds(self) -> int:
        """torchinfo's "Mult-Adds" for the whole batch: our MACs plus one per BatchNorm parameter and
        per linear bias element, which torchinfo counts as well (it multiplies every parameter of a
        non-conv layer by the batch)."""
        return self.batch_size * (self.total_macs + self._bn_params + self._linear_bias)

    @property
    def activation_bytes(self) -> int:
        """Sum of every layer's output for the batch (what a forward pass writes)."""
        return sum(r.output_bytes for r in self.rows)

    @property
    def param_bytes(self) -> int:
        return self.total_params * self.dtype_bytes

    @property
    def _last_spatial(self) -> LayerRow:
        return next(r for r in reversed(self.rows) if r.receptive_field is not None)

    @property
    def receptive_field(self) -> int:
        """The theoretical receptive field in pixels at the last spatial layer (before global pooling): the input
        pixels that can influence one output, from kernels and strides alone (the effective one is smaller)."""
        rf = self._last_spatial.receptive_field
        assert rf is not None
        return rf

    @property
    def jump(self) -> int:
        """Effective stride at the last spatial layer (32 for the ImageNet stem with 4 stages)."""
        j = self._last_spatial.jump
        assert j is not None
        return j

    @property
    def warnings(self) -> tuple[str, ...]:
        """What a teacher should know about this model at this input, in sentences (empty when nothing)."""
        out = []
        _, h, w = self.input_size
        if min(h, w) < self.jump:
            out.append(f"The input ({h}×{w}) is smaller than the network's total stride ({self.jump}): its last "
                       "stages see a single padded pixel, or less, and learn little of where things are.")
        if self.receptive_field > max(h, w):
            out.append(f"The theoretical receptive field ({self.receptive_field} px) is larger than the input "
                       f"({h}×{w}): the last layers see all of the image, and padding beyond it.")
        return tuple(out)

    @property
    def weighted_layers(self) -> int:
        """Convs and linear layers on the main path, shortcuts not counted: the "50" in ResNet-50."""
        return sum(1 for r in self.rows if r.kind in ("Conv2d", "Linear") and r.branch != "shortcut")

    def to_dataframe(self, level: Level = "layer") -> pd.DataFrame:
        from .tables import report_dataframe

        return report_dataframe(self, level)


class _Walker:
    """Propagates shape, receptive field and buffers through the layers in forward order."""

    def __init__(self, batch: int, input_size: tuple[int, int, int], dtype_bytes: int) -> None:
        self.batch = batch
        self.dtype_bytes = dtype_bytes
        self.rows: list[LayerRow] = []
        self.saved: dict[int, int] = {}  # buffer id -> bytes, tensors kept for backward
        self.saved_extra = 0  # max-pool indices, BN statistics
        self.bn_params = 0
        self.linear_bias = 0
        c, h, w = input_size
        # State of the tensor flowing through: shape, RF interval [lo, hi] of output unit 0, jump, buffer.
        self.c, self.h, self.w = c, h, w
        self.lo, self.hi, self.j = 0, 0, 1
        self.buf = 0
        self._next_buf = 1
        self.saved_bytes_of = {0: self._bytes()}

    def _bytes(self) -> int:
        return self.batch * self.c * self.h * self.w * self.dtype_bytes

    def state(self) -> tuple[int, int, int, int, int, int, int]:
        return (self.c, self.h, self.w, self.lo, self.hi, self.j, self.buf)

    def restore(self, s: tuple[int, int, int, int, int, int, int]) -> None:
        self.c, self.h, self.w, self.lo, self.hi, self.j, self.buf = s

    def _new_buffer(self) -> None:
        self.buf = self._next_buf
        self._next_buf += 1
        self.saved_bytes_of[self.buf] = self._bytes()

    def _save_input(self) -> None:
        self.saved[self.buf] = self.saved_bytes_of[self.buf]

    def _row(self, path: str, stage: str, block: int | None, branch: str, kind: str, *,
             kernel: int | None = None, stride: int | None = None, params: int = 0, macs: int = 0) -> None:
        self.rows.append(
            LayerRow(
                path=path,
                stage=stage,
                block=block,
                branch=branch,
                kind=kind,
                kernel=kernel,
                stride=stride,
                output_shape=(self.batch, self.c, self.h, self.w),
                params=params,
                macs=macs,
                output_bytes=self._bytes(),
                receptive_field=self.hi - self.lo + 1,
                jump=self.j,
            )
        )

    def _window(self, kernel: int, stride: int, padding: int) -> None:
        # Every ResNet window is padded to (kernel - 1) // 2, so any input of 1 pixel or more reaches the end.
        self.h = (self.h + 2 * padding - kernel) // stride + 1
        self.w = (self.w + 2 * padding - kernel) // stride + 1
        # Output unit 0 reads input units -padding .. kernel-1-padding.
        self.lo -= padding * self.j
        self.hi += (kernel - 1 - padding) * self.j
        self.j *= stride

    def conv(self, spec: ConvSpec, path: str, stage: str, block: int | None, branch: str) -> None:
        self._save_input()
        self._window(spec.kernel, spec.stride, spec.padding)
        self.c = spec.out_channels
        self._new_buffer()
        macs = spec.params * self.h * self.w  # each weight is used once per output position
        self._row(path, stage, block, branch, "Conv2d", kernel=spec.kernel, stride=spec.stride,
                  params=spec.params, macs=macs)

    def bn(self, path: str, stage: str, block: int | None, branch: str) -> None:
        self._save_input()
        self.saved_extra += 2 * self.c * 4  # saved mean and inverse std, always float32
        self.bn_params += 2 * self.c
        self._new_buffer()
        self._row(path, stage, block, branch, "BatchNorm2d", params=2 * self.c)

    def relu(self, path: str, stage: str, block: int | None, branch: str, *, inplace: bool) -> None:
        if not inplace:
            self._new_buffer()
        self.saved[self.buf] = self.saved_bytes_of[self.buf]  # ReLU's backward reads its output
        self._row(path, stage, block, branch, "ReLU")

    def maxpool(self, path: str, stage: str) -> None:
        self._save_input()
        self._window(3, 2, 1)
        self._new_buffer()
        self.saved_extra += self.batch * self.c * self.h * self.w * 8  # int64 argmax indices
        self._row(path, stage, None, "main", "MaxPool2d", kernel=3, stride=2)

    def zero_pad(self, b: BlockPlan, path: str) -> None:
        self._window(1, b.stride, 0)
        self.c = b.out_channels
        self._new_buffer()
        self._row(path, f"layer{b.stage + 1}", b.index, "shortcut", "ZeroPadShortcut", kernel=1, stride=b.stride)

    def add(self, other: tuple[int, int, int, int, int, int, int], path: str, stage: str, block: int) -> None:
        c, h, w, lo, hi, j, _ = other
        assert (c, h, w, j) == (self.c, self.h, self.w, self.j), (path, other, self.state())
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        self._new_buffer()
        self._row(path, stage, block, "main", "Add")

    def head(self, num_classes: int) -> None:
        self._save_input()  # adaptive average pooling's backward reads its input
        self.h = self.w = 1
        self._new_buffer()
        self.rows.append(
            LayerRow("avgpool", "head", None, "main", "AdaptiveAvgPool2d", None, None,
                     (self.batch, self.c, 1, 1), 0, 0, self._bytes(), None, None)
        )
        self._save_input()  # the linear layer keeps its (flattened, same storage) input
        params = self.c * num_classes + num_classes
        self.linear_bias += num_classes
        self.rows.append(
            LayerRow("fc", "head", None, "main", "Linear", None, None, (self.batch, num_classes),
                     params, self.c * num_classes, self.batch * num_classes * self.dtype_bytes, None, None)
        )


def _walk_block(wk: _Walker, b: BlockPlan) -> None:
    stage, path = f"layer{b.stage + 1}", b.path
    x = wk.state()

    def row(kind: str, name: str) -> None:
        if kind == "bn":
            wk.bn(f"{path}.{name}", stage, b.index, "residual")
        else:
            wk.relu(f"{path}.relu", stage, b.index, "residual", inplace=not b.preact)

    pre = x
    if b.preact:
        # x -> BN-ReLU -> conv -> BN-ReLU -> conv [-> BN-ReLU -> conv]; the sum is the block's output.
        for i, spec in enumerate(b.convs):
            row("bn", f"bn{i + 1}")
            row("relu", "")
            if i == 0:
                pre = wk.state()
            wk.conv(spec, f"{path}.{spec.name}", stage, b.index, "residual")
    else:
        # x -> conv -> BN -> ReLU -> ... -> conv -> BN (no ReLU before the sum).
        for i, spec in enumerate(b.convs):
            wk.conv(spec, f"{path}.{spec.name}", stage, b.index, "residual")
            row("bn", f"bn{i + 1}")
            if i < len(b.convs) - 1:
                row("relu", "")
    if b.shortcut == "none":
        if not b.preact:
            wk.relu(f"{path}.relu", stage, b.index, "main", inplace=True)
        return
    branch = wk.state()
    if b.shortcut == "identity":
        identity = x
    else:
        wk.restore(pre if b.preact and b.projection is not None else x)
        if b.shortcut == "zero_pad":
            wk.zero_pad(b, f"{path}.downsample")
        else:
            assert b.projection is not None
            wk.conv(b.projection, f"{path}.downsample.0", stage, b.index, "shortcut")
            if not b.preact:
                wk.bn(f"{path}.downsample.1", stage, b.index, "shortcut")
        identity = wk.state()
    wk.restore(branch)
    wk.add(identity, f"{path}.add", stage, b.index)
    if not b.preact:
        wk.relu(f"{path}.relu", stage, b.index, "main", inplace=True)


def _walk(p: Plan, input_size: tuple[int, int, int], batch_size: int, dtype_bytes: int) -> Report:
    cfg = p.config
    wk = _Walker(batch_size, input_size, dtype_bytes)
    wk.conv(p.stem_conv, "conv1", "stem", None, "main")
    if p.stem_bn:
        wk.bn("bn1", "stem", None, "main")
        wk.relu("relu", "stem", None, "main", inplace=True)
    if p.stem_pool:
        wk.maxpool("maxpool", "stem")
    for b in p.blocks:
        _walk_block(wk, b)
    if p.final_bn:
        wk.bn("final_bn", "head", None, "main")
        wk.relu("relu", "head", None, "main", inplace=True)
    wk.head(cfg.num_classes)
    rows = tuple(wk.rows)
    params = sum(r.params for r in rows)
    memory = MemoryEstimate(
        param_bytes=params * dtype_bytes,
        grad_bytes=params * dtype_bytes,
        optimizer_bytes=params * dtype_bytes,
        saved_activation_bytes=sum(wk.saved.values()) + wk.saved_extra,
    )
    return Report(cfg, input_size, batch_size, rows, memory, p, dtype_bytes, wk.bn_params, wk.linear_bias)


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_input(input_size: tuple[int, int, int], batch_size: int, cfg: ResNetConfig) -> None:
    if not isinstance(input_size, tuple | list) or len(input_size) != 3 or not all(map(_whole, input_size)):
        raise ValueError(f"input_size={input_size!r} must be (channels, height, width): three whole numbers, "
                         "e.g. (3, 224, 224)")
    c, h, w = input_size
    if c != cfg.in_channels:
        raise ValueError(f"input has {c} channels but the model expects in_channels={cfg.in_channels}")
    for name, v in (("height", h), ("width", w)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIDE:
            raise ValueError(f"input {name}={v!r} is not allowed: an integer from 1 to {MAX_SIDE}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size={batch_size!r} is not allowed: an integer from 1 to {MAX_BATCH}")


@lru_cache(maxsize=64)
def _plan(cfg: ResNetConfig) -> Plan:
    return plan(cfg)


def analyze(
    model: str | ResNetConfig,
    *,
    input_size: tuple[int, int, int] = (3, 224, 224),
    batch_size: int = 1,
    dtype_bytes: int = 4,
) -> Report:
    """One row per layer of `model` at this input, plus totals and a training-memory estimate.

    Raises ValueError for an input the model cannot take (wrong channels, size or batch out of range).
    """
    cfg = resolve(model)
    check_input(input_size, batch_size, cfg)
    if not _whole(dtype_bytes) or not 1 <= dtype_bytes <= 8:
        raise ValueError(f"dtype_bytes={dtype_bytes!r} must be the bytes of one value: 4 for float32, 2 for "
                         "bfloat16 or float16, 8 for float64")
    return _walk(_plan(cfg), tuple(input_size), batch_size, dtype_bytes)  # type: ignore[arg-type]


def param_count(model: str | ResNetConfig) -> int:
    """The parameters of a model, counted from its plan without building it."""
    cfg = resolve(model)
    return analyze(cfg, input_size=(cfg.in_channels, 224, 224)).total_params

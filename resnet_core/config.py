"""What a ResNet is, as data: one frozen config and a table of named presets.

Every variant in this project is a `ResNetConfig`; the builder (`model.py`) and the analysis
(`analysis.py`) both read the same `plan()` of it (`plan.py`), so the table a user reads and
the module that runs can never disagree.

References
- [He2015] K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image Recognition", CVPR 2016.
- [He2016] K. He, X. Zhang, S. Ren, J. Sun. "Identity Mappings in Deep Residual Networks", ECCV 2016.
- [Xie2017] S. Xie et al. "Aggregated Residual Transformations for Deep Neural Networks" (ResNeXt).
- [Zagoruyko2016] S. Zagoruyko, N. Komodakis. "Wide Residual Networks".
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, get_args

BlockType = Literal["basic", "bottleneck"]
Stem = Literal["imagenet", "cifar"]
Shortcut = Literal["A", "B", "C"]
StrideAt = Literal["v1", "v1.5"]

BLOCK_TYPES: tuple[str, ...] = get_args(BlockType)
STEMS: tuple[str, ...] = get_args(Stem)
SHORTCUTS: tuple[str, ...] = get_args(Shortcut)
STRIDE_PLACEMENTS: tuple[str, ...] = get_args(StrideAt)

# Output channels of a block = width * expansion ([He2015] Table 1: 64 -> 256 in a bottleneck).
EXPANSION: dict[str, int] = {"basic": 1, "bottleneck": 4}

# Bounds that keep a config buildable and the app responsive. ResNet-1202 has 200 blocks per stage.
MAX_STAGES = 6
MAX_BLOCKS_PER_STAGE = 300
MAX_WIDTH = 4096
MAX_GROUPS = 512
MAX_IN_CHANNELS = 64
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class ResNetConfig:
    """A whole ResNet. Stage i (0-based) downsamples by 2 at its first block when i > 0."""

    blocks: tuple[int, ...] = (2, 2, 2, 2)  # residual blocks per stage; [He2015] Table 1
    block: BlockType | tuple[BlockType, ...] = "basic"  # one type for all stages, or one per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)  # base width per stage; a bottleneck outputs 4x this
    stem: Stem = "imagenet"  # imagenet: 7x7/2 conv + 3x3/2 max-pool; cifar: 3x3/1 conv, no pool ([He2015] 4.2)
    stem_width: int = 64  # channels out of the stem conv
    shortcut: Shortcut = "B"  # [He2015] 3.3: A zero-pad identity, B project on shape change, C project always
    stride_at: StrideAt = "v1.5"  # bottleneck downsampling: v1 on the first 1x1 (paper), v1.5 on the 3x3 (torchvision)
    groups: int = 1  # grouped 3x3 in bottlenecks (ResNeXt "cardinality", [Xie2017])
    width_per_group: int = 64  # bottleneck inner width = widths[i] * width_per_group / 64 * groups
    preact: bool = False  # BN-ReLU before each conv, identity path left clean ([He2016])
    residual: bool = True  # False: the plain network of the same shape, no shortcuts ([He2015] 4.1)
    zero_init_residual: bool = False  # each block's last BN (preact: last conv) starts at 0: blocks start as identity
    in_channels: int = 3
    num_classes: int = 1000

    def __post_init__(self) -> None:
        validate(self)

    @property
    def num_stages(self) -> int:
        return len(self.blocks)

    @property
    def block_types(self) -> tuple[BlockType, ...]:
        """The block type of each stage."""
        if isinstance(self.block, str):
            return (self.block,) * self.num_stages
        return self.block

    @property
    def depth(self) -> int:
        """Weighted layers along the main path, as the paper counts them (ResNet-50 has 50)."""
        convs_per_block = {"basic": 2, "bottleneck": 3}
        return 1 + sum(n * convs_per_block[b] for n, b in zip(self.blocks, self.block_types)) + 1

    def with_(self, **changes: object) -> ResNetConfig:
        """A copy with some fields changed (validated like any new config)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> ResNetConfig:
        """The config `to_dict` gave, also after a trip through JSON (lists become the tuples they were)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})  # type: ignore[arg-type]


class ConfigError(ValueError):
    """A config that cannot be built: which field (`field`, e.g. "widths"; `index`, the stage, for per-stage
    fields), the value, and what is allowed; `plain` says it without Python's notation."""

    def __init__(self, field: str, value: object, allowed: str, index: int | None = None, *,
                 why: str | None = None) -> None:
        name = field if index is None else f"{field}[{index}]"
        super().__init__(f"ResNetConfig.{name}={value!r} is not allowed: {why or allowed}")
        self.field, self.index, self.value, self.allowed, self.why = field, index, value, allowed, why

    @property
    def plain(self) -> str:
        """"stage 2 has 0; allowed: a whole number from 1 to 300", or the sentence that says why."""
        if self.why:
            return self.why
        value = ", ".join(map(str, self.value)) if isinstance(self.value, tuple) else self.value
        where = f"stage {self.index + 1} has {value}" if self.index is not None else f"{value} is not allowed"
        return f"{where}; allowed: {self.allowed}"


def _words(options: tuple[str, ...]) -> str:
    return ", ".join(options)


def _fail(field: str, value: object, allowed: str, index: int | None = None) -> ConfigError:
    return ConfigError(field, value, allowed, index)


def _refuse(field: str, value: object, why: str) -> ConfigError:
    """A refusal that only a sentence explains (two fields that do not fit together)."""
    return ConfigError(field, value, why, why=why)


def _check_int(field: str, value: object, low: int, high: int, index: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(field, value, f"a whole number from {low} to {high:,}", index)


def validate(cfg: ResNetConfig) -> None:
    """Raise ValueError naming the field, the value and what is allowed, for any config that cannot be built."""
    if not isinstance(cfg.blocks, tuple) or not 1 <= len(cfg.blocks) <= MAX_STAGES:
        raise _fail("blocks", cfg.blocks, f"1 to {MAX_STAGES} stages, one number of blocks each, e.g. (2, 2, 2, 2)")
    for i, n in enumerate(cfg.blocks):
        _check_int("blocks", n, 1, MAX_BLOCKS_PER_STAGE, i)
    if not isinstance(cfg.widths, tuple) or len(cfg.widths) != len(cfg.blocks):
        raise _fail("widths", cfg.widths, f"one width per stage ({len(cfg.blocks)} stages)")
    for i, w in enumerate(cfg.widths):
        _check_int("widths", w, 1, MAX_WIDTH, i)
    if isinstance(cfg.block, str):
        if cfg.block not in BLOCK_TYPES:
            raise _fail("block", cfg.block, f"one of {_words(BLOCK_TYPES)}")
    elif not isinstance(cfg.block, tuple) or len(cfg.block) != len(cfg.blocks):
        raise _fail("block", cfg.block, f"one of {_words(BLOCK_TYPES)}, or one of them per stage")
    else:
        for i, b in enumerate(cfg.block):
            if b not in BLOCK_TYPES:
                raise _fail("block", b, f"one of {_words(BLOCK_TYPES)}", i)
    if cfg.stem not in STEMS:
        raise _fail("stem", cfg.stem, f"one of {_words(STEMS)}")
    _check_int("stem_width", cfg.stem_width, 1, MAX_WIDTH)
    if cfg.shortcut not in SHORTCUTS:
        raise _fail("shortcut", cfg.shortcut, f"one of {_words(SHORTCUTS)} ([He2015] section 3.3)")
    if cfg.stride_at not in STRIDE_PLACEMENTS:
        raise _fail("stride_at", cfg.stride_at, f"one of {_words(STRIDE_PLACEMENTS)}")
    _check_int("groups", cfg.groups, 1, MAX_GROUPS)
    _check_int("width_per_group", cfg.width_per_group, 1, MAX_WIDTH)
    _check_int("in_channels", cfg.in_channels, 1, MAX_IN_CHANNELS)
    _check_int("num_classes", cfg.num_classes, 1, MAX_CLASSES)
    for name in ("preact", "residual", "zero_init_residual"):
        if not isinstance(getattr(cfg, name), bool):
            raise _fail(name, getattr(cfg, name), "True or False")

    for i, (b, w) in enumerate(zip(cfg.block_types, cfg.widths)):
        if b == "basic" and (cfg.groups != 1 or cfg.width_per_group != 64):
            # As in torchvision: a basic block has no 3x3 "inner" width to split into groups.
            raise _refuse(
                "groups",
                (cfg.groups, cfg.width_per_group),
                f"basic blocks (stage {i + 1}) have no grouped conv: groups must be 1 and width per group 64; "
                "choose bottleneck blocks for a ResNeXt",
            )
        if b == "bottleneck" and (w * cfg.width_per_group) % 64 != 0:
            raise _refuse(
                "width_per_group",
                cfg.width_per_group,
                f"stage {i + 1}'s width × width per group ({w} × {cfg.width_per_group}) must divide by 64, so that "
                "every group gets a whole number of channels",
            )
        if cfg.shortcut == "A" and cfg.residual:
            before = cfg.stem_width if i == 0 else stage_out_channels(cfg, i - 1)
            if stage_out_channels(cfg, i) < before:
                raise _refuse(
                    "shortcut",
                    "A",
                    f"option A pads the identity with zero channels, so it cannot shrink stage {i + 1} "
                    f"from {before} to {stage_out_channels(cfg, i)} channels; use B or C",
                )
        if b == "bottleneck" and inner_width(cfg, i) > MAX_WIDTH * 4:
            raise _refuse(
                "width_per_group",
                cfg.width_per_group,
                f"stage {i + 1}'s grouped 3×3 conv would have {inner_width(cfg, i):,} channels (width × width per "
                f"group / 64 × groups = {w} × {cfg.width_per_group} / 64 × {cfg.groups}); at most {MAX_WIDTH * 4:,}",
            )


def inner_width(cfg: ResNetConfig, stage: int) -> int:
    """Channels of the 3x3 conv inside a bottleneck of `stage` (torchvision's formula)."""
    return cfg.widths[stage] * cfg.width_per_group // 64 * cfg.groups


def stage_out_channels(cfg: ResNetConfig, stage: int) -> int:
    return cfg.widths[stage] * EXPANSION[cfg.block_types[stage]]


# ----------------------------------------------------------------------------------------------
# Presets. Each torchvision preset matches torchvision.models.<name>() key for key.

_IMAGENET = ResNetConfig()
_CIFAR = ResNetConfig(
    blocks=(3, 3, 3), widths=(16, 32, 64), stem="cifar", stem_width=16, shortcut="A", num_classes=10
)


def _cifar(n: int) -> ResNetConfig:
    """[He2015] section 4.2: 6n+2 layers, 16-32-64 widths, option A shortcuts."""
    return _CIFAR.with_(blocks=(n, n, n))


PRESET_GROUPS: dict[str, dict[str, ResNetConfig]] = {
    "ImageNet": {
        "resnet18": _IMAGENET.with_(blocks=(2, 2, 2, 2)),
        "resnet34": _IMAGENET.with_(blocks=(3, 4, 6, 3)),
        "resnet50": _IMAGENET.with_(blocks=(3, 4, 6, 3), block="bottleneck"),
        "resnet101": _IMAGENET.with_(blocks=(3, 4, 23, 3), block="bottleneck"),
        "resnet152": _IMAGENET.with_(blocks=(3, 8, 36, 3), block="bottleneck"),
        "resnet50_v1": _IMAGENET.with_(blocks=(3, 4, 6, 3), block="bottleneck", stride_at="v1"),
    },
    "Wide / ResNeXt": {
        "wide_resnet50_2": _IMAGENET.with_(blocks=(3, 4, 6, 3), block="bottleneck", width_per_group=128),
        "resnext50_32x4d": _IMAGENET.with_(blocks=(3, 4, 6, 3), block="bottleneck", groups=32, width_per_group=4),
    },
    "CIFAR": {
        **{f"resnet{6 * n + 2}": _cifar(n) for n in (3, 5, 7, 9, 18, 200)},
        # The ResNet-18 of the common CIFAR-10 recipe: 3x3 stem, no max-pool, projection shortcuts.
        "resnet18_cifar": _IMAGENET.with_(stem="cifar", num_classes=10),
    },
}
PRESET_GROUPS["Plain twins"] = {
    f"plain{name.removeprefix('resnet')}": cfg.with_(residual=False)
    for group in ("ImageNet", "CIFAR")
    for name, cfg in PRESET_GROUPS[group].items()
}

PRESETS: dict[str, ResNetConfig] = {name: cfg for group in PRESET_GROUPS.values() for name, cfg in group.items()}

# Presets whose module tree and weights are torchvision's own.
TORCHVISION_PRESETS: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "resnext50_32x4d",
)


def resolve(model: str | ResNetConfig) -> ResNetConfig:
    """A preset name or a config -> a config."""
    if isinstance(model, ResNetConfig):
        return model
    if not isinstance(model, str):
        raise ValueError(f"a model is a ResNetConfig or the name of a preset such as 'resnet50', not a "
                         f"{type(model).__name__}")
    try:
        return PRESETS[model]
    except KeyError:
        raise ValueError(f"unknown preset {model!r}; known presets: {', '.join(PRESETS)}") from None


def preset_name(cfg: ResNetConfig) -> str | None:
    """The name of the preset equal to `cfg`, if any."""
    return next((name for name, c in PRESETS.items() if c == cfg), None)

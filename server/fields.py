"""Each field of a ResNetConfig a student can set, described once: its control, its range, its URL key, its help.

The sidebar's custom-model controls, the session-state keys that hold them, the URL round trip
(`selection.py`) and the words of every message about a field all derive from `FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from resnet_core.config import (
    BLOCK_TYPES,
    MAX_BLOCKS_PER_STAGE,
    MAX_CLASSES,
    MAX_GROUPS,
    MAX_IN_CHANNELS,
    MAX_WIDTH,
    SHORTCUTS,
    STEMS,
    STRIDE_PLACEMENTS,
    ResNetConfig,
)
from resnet_core.units import parse_ints

Kind = Literal["ints", "types", "choice", "int", "toggle"]


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _types(text: str) -> str | tuple[str, ...]:
    """'bottleneck' -> 'bottleneck' (every stage); 'basic,bottleneck' -> one type per stage."""
    types = tuple(t.strip() for t in text.split(","))
    return types[0] if len(types) == 1 else types


def _write(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


@dataclass(frozen=True)
class Field:
    name: str  # the ResNetConfig field
    label: str  # the control's label; messages about the field use it too
    url: str  # its name in a link
    kind: Kind  # ints: a comma list, one per stage; types: one block type or one per stage; choice; int; toggle
    help: str = ""
    options: tuple[str, ...] = ()  # a choice's values
    high: int = 0  # an int's (or each listed int's) upper bound; the lower one is 1
    words: dict[str, str] | None = None  # how a choice's values read on screen

    @property
    def key(self) -> str:
        """Its session-state key."""
        return f"custom.{self.name}"

    def read(self, text: str) -> object:
        """The value a link's text stands for; ValueError when it cannot be read."""
        if self.kind == "ints":
            return parse_ints(text)
        if self.kind == "types":
            return _types(text)
        if self.kind == "int":
            return int(text)
        if self.kind == "toggle":
            return _bool(text)
        return self.options_value(text)

    def options_value(self, text: str) -> str:
        value = text.upper() if self.name == "shortcut" else text
        if value not in self.options:
            raise ValueError(f"{text!r} is not one of {', '.join(self.options)}")
        return value

    def write(self, value: object) -> str:
        """The value as a link writes it."""
        return _write(value)

    def show(self, value: object) -> str:
        """The value as the sidebar shows it: `format_func` of a choice."""
        return (self.words or {}).get(str(value), str(value))


FIELDS: tuple[Field, ...] = (
    Field("blocks", "Blocks per stage", "blocks", "ints", "Residual blocks in each stage, e.g. 3,4,6,3 (ResNet-50); "
          "one number per stage", high=MAX_BLOCKS_PER_STAGE),
    Field("block", "Block type", "block", "types", "basic: two 3×3 convs; bottleneck: 1×1, 3×3, 1×1 with 4× the "
          "width out. Or one type per stage", options=BLOCK_TYPES),
    Field("widths", "Widths", "widths", "ints", "Base width of each stage; a bottleneck outputs 4× this",
          high=MAX_WIDTH),
    Field("stem", "Stem", "stem", "choice", "imagenet: 7×7/2 conv + 3×3/2 max-pool; cifar: 3×3/1 conv", STEMS),
    Field("stem_width", "Stem width", "stem_width", "int", "Channels out of the stem conv", high=MAX_WIDTH),
    Field("shortcut", "Shortcut", "shortcut", "choice", "How the identity path meets a change of shape", SHORTCUTS,
          words={"A": "A · zero-padded identity (no parameters)", "B": "B · projection where the shape changes",
                 "C": "C · projection in every block"}),
    Field("stride_at", "Bottleneck stride on", "stride_at", "choice", "Where a downsampling bottleneck strides",
          STRIDE_PLACEMENTS, words={"v1": "v1 · first 1×1 (paper)", "v1.5": "v1.5 · 3×3 (torchvision)"}),
    Field("groups", "Groups", "groups", "int", "ResNeXt cardinality: the bottleneck's 3×3 conv split into this many "
          "groups (bottleneck blocks only)", high=MAX_GROUPS),
    Field("width_per_group", "Width per group", "width_per_group", "int", "Channels of each group per 64 of stage "
          "width: the 3×3 conv has width × width per group / 64 × groups channels (64 with 1 group: ResNet-50)",
          high=MAX_WIDTH),
    Field("preact", "Pre-activation (BN-ReLU before conv)", "preact", "toggle",
          "He et al. 2016, Identity Mappings: the identity path stays clean"),
    Field("residual", "Residual shortcuts", "residual", "toggle", "Off: the plain network of the same shape"),
    Field("zero_init_residual", "Zero-init last BN of each block", "zero_init", "toggle",
          "Each block starts as the identity"),
    Field("num_classes", "Classes", "classes", "int", "Outputs of the last layer", high=MAX_CLASSES),
    Field("in_channels", "Channels", "in_channels", "int", "Channels of the input image: 3 for RGB",
          high=MAX_IN_CHANNELS),
)
FIELD: dict[str, Field] = {f.name: f for f in FIELDS}


def config_from(values: dict[str, object], base: ResNetConfig | None = None) -> ResNetConfig:
    """A config from field values (missing ones from `base`); the config's own ValueError when it cannot be built."""
    return (base or ResNetConfig()).with_(**values)


def field_values(cfg: ResNetConfig) -> dict[str, object]:
    return {f.name: getattr(cfg, f.name) for f in FIELDS}


"""What the user picked (a model, an input, a batch) and its round trip through a URL query string.

Names in the URL: `preset`, `input` (`3x224x224`), `batch`, and for `preset=custom` the fields
`blocks` (`2,2,2,2`), `block` (`basic` or one per stage), `widths`, `stem`, `stem_width`, `shortcut`,
`stride_at`, `groups`, `width_per_group`, `preact`, `residual`, `classes`, `in_channels`.

`from_query` never raises: anything it cannot read falls back to the default and comes back as a
warning a person can act on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from resnet_core.analysis import MAX_SIDE as ANALYSIS_MAX_SIDE
from resnet_core.analysis import analyze
from resnet_core.config import PRESETS, ResNetConfig
from resnet_core.model import MAX_PARAMS
from server.settings import LIMITS

CUSTOM = "custom"
# The app refuses inputs outside these bounds (the library itself accepts up to analysis.MAX_SIDE);
# a host sets the upper ones with RESNET_INPUT_MAX_SIDE and RESNET_BATCH_MAX.
MIN_SIDE, MAX_SIDE = 8, min(LIMITS.input_max_side, ANALYSIS_MAX_SIDE)
MAX_BATCH = LIMITS.batch_max
# Weights the app will hold: the feature-maps, training and export views build the model (float32, 4 bytes a
# parameter, one copy per session), so a short link must not ask for terabytes: build_model's own bound,
# resnet_core.model.MAX_PARAMS.
MAX_QUERY_VALUE = 200  # characters; longer values are refused unread


@dataclass(frozen=True)
class Selection:
    preset: str  # a preset name, or CUSTOM
    config: ResNetConfig
    input_size: tuple[int, int, int] = (3, 224, 224)
    batch_size: int = 1

    @property
    def label(self) -> str:
        return self.preset if self.preset != CUSTOM else f"custom ({self.config.depth} layers)"


DEFAULT = Selection("resnet50", PRESETS["resnet50"])


def default_input(cfg: ResNetConfig) -> tuple[int, int, int]:
    side = 32 if cfg.stem == "cifar" else 224
    return (cfg.in_channels, side, side)


def check(sel: Selection) -> None:
    """Raise ValueError if the app should refuse this selection (the model cannot take the input, ...)."""
    _, h, w = sel.input_size
    for name, v in (("height", h), ("width", w)):
        if not MIN_SIDE <= v <= MAX_SIDE:
            raise ValueError(f"input {name} {v} is out of range: {MIN_SIDE} to {MAX_SIDE} pixels")
    if not 1 <= sel.batch_size <= MAX_BATCH:
        raise ValueError(f"batch size {sel.batch_size} is out of range: 1 to {MAX_BATCH}")
    report = analyze(sel.config, input_size=sel.input_size, batch_size=sel.batch_size)
    if report.total_params > MAX_PARAMS:
        raise ValueError(
            f"the model has {report.total_params:,} parameters; the app builds models of at most {MAX_PARAMS:,}"
        )


# --- query string ---------------------------------------------------------------------------------


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.replace(" ", "").split(",") if p != "")


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def parse_input(text: str) -> tuple[int, int, int]:
    parts = text.lower().replace("×", "x").split("x")
    if len(parts) != 3:
        raise ValueError(f"{text!r} is not CxHxW, e.g. 3x224x224")
    c, h, w = (int(p) for p in parts)
    return (c, h, w)


def format_input(size: tuple[int, int, int]) -> str:
    return "x".join(str(d) for d in size)


# URL parameter of a custom model -> (ResNetConfig field, reader that raises ValueError).
_CUSTOM_READERS: dict[str, tuple[str, Callable[[str], object]]] = {
    "blocks": ("blocks", _ints),
    "widths": ("widths", _ints),
    "stem": ("stem", str),
    "stem_width": ("stem_width", int),
    "shortcut": ("shortcut", lambda s: s.upper()),
    "stride_at": ("stride_at", str),
    "groups": ("groups", int),
    "width_per_group": ("width_per_group", int),
    "preact": ("preact", _bool),
    "residual": ("residual", _bool),
    "zero_init": ("zero_init_residual", _bool),
    "classes": ("num_classes", int),
    "in_channels": ("in_channels", int),
}
QUERY_KEYS = frozenset({"preset", "input", "batch", "block", *_CUSTOM_READERS})  # every other key is ignored


def _custom_config(q: Mapping[str, str]) -> ResNetConfig:
    """A custom config from the query; ValueError (naming the parameter) for anything unreadable."""
    base = ResNetConfig()
    changes: dict[str, object] = {}
    for key, (field, read) in _CUSTOM_READERS.items():
        if key in q:
            try:
                changes[field] = read(q[key])
            except ValueError:
                raise ValueError(f"URL parameter {key}={q[key]!r} cannot be read") from None
    if "block" in q:
        types = tuple(t.strip() for t in q["block"].split(","))
        changes["block"] = types[0] if len(types) == 1 else types
    blocks = changes.get("blocks", base.blocks)
    if "widths" not in changes and isinstance(blocks, tuple) and len(blocks) != len(base.widths):
        changes["widths"] = tuple(64 * 2**i for i in range(len(blocks)))
    return base.with_(**changes)


def from_query(q: Mapping[str, str]) -> tuple[Selection, list[str]]:
    """The selection a URL describes, and warnings for every part of it that had to be replaced."""
    warnings: list[str] = []
    # Only the names above are read (or quoted in a warning): a link's other parameters, however long, are ignored.
    q = {key: value for key, value in q.items() if key in QUERY_KEYS}
    for key, value in list(q.items()):
        if len(value) > MAX_QUERY_VALUE:
            warnings.append(f"URL parameter {key} is too long ({len(value)} characters) and was ignored.")
            del q[key]

    preset = q.get("preset", DEFAULT.preset)
    config = DEFAULT.config
    if preset == CUSTOM:
        try:
            config = _custom_config(q)
        except ValueError as e:
            warnings.append(f"The custom model in the link is not valid ({e}); showing {DEFAULT.preset}.")
            preset = DEFAULT.preset
    elif preset in PRESETS:
        config = PRESETS[preset]
    else:
        warnings.append(f"Unknown preset {preset!r} in the link; showing {DEFAULT.preset}.")
        preset = DEFAULT.preset

    input_size = default_input(config)
    if "input" in q:
        try:
            input_size = parse_input(q["input"])
        except ValueError:
            warnings.append(f"URL parameter input={q['input']!r} is not CxHxW; using {format_input(input_size)}.")
    batch = DEFAULT.batch_size
    if "batch" in q:
        try:
            batch = int(q["batch"])
        except ValueError:
            warnings.append(f"URL parameter batch={q['batch']!r} is not a whole number; using {batch}.")

    sel = Selection(preset, config, input_size, batch)
    try:
        check(sel)
    except ValueError as e:
        fallback = Selection(preset, config, default_input(config), DEFAULT.batch_size)
        try:
            check(fallback)
        except ValueError:
            fallback = DEFAULT
        warnings.append(f"The link asks for something this model cannot show ({e}); using the defaults.")
        sel = fallback
    return sel, warnings


def to_query(sel: Selection) -> dict[str, str]:
    q = {"preset": sel.preset, "input": format_input(sel.input_size), "batch": str(sel.batch_size)}
    if sel.preset != CUSTOM:
        return q
    c = sel.config
    block = c.block if isinstance(c.block, str) else ",".join(c.block)
    q.update(
        blocks=",".join(map(str, c.blocks)),
        block=block,
        widths=",".join(map(str, c.widths)),
        stem=c.stem,
        stem_width=str(c.stem_width),
        shortcut=c.shortcut,
        stride_at=c.stride_at,
        groups=str(c.groups),
        width_per_group=str(c.width_per_group),
        preact=str(c.preact).lower(),
        residual=str(c.residual).lower(),
        zero_init=str(c.zero_init_residual).lower(),
        classes=str(c.num_classes),
        in_channels=str(c.in_channels),
    )
    return q

"""What the user picked (a model, an input, a batch) and its round trip through a URL query string.

Names in the URL: `preset`, `input` (`3x224x224`), `batch`, and for `preset=custom` each field's URL key
from the table of fields (`server/fields.py`): `blocks=2,2,2,2`, `block=basic` (or one per stage), ...

`from_query` never raises: anything it cannot read falls back to the default and comes back as a
warning a person can act on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from resnet_core.analysis import MAX_SIDE as ANALYSIS_MAX_SIDE
from resnet_core.analysis import Report, analyze
from resnet_core.config import PRESETS, ResNetConfig
from resnet_core.model import MAX_PARAMS
from resnet_core.units import fmt_count, format_input, parse_input
from server.fields import FIELDS
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


class TooLarge(ValueError):
    """A model with more parameters than the app builds: how many, and where most of them are."""

    def __init__(self, report: Report) -> None:
        per_stage: dict[str, int] = {}
        for r in report.rows:
            per_stage[r.stage] = per_stage.get(r.stage, 0) + r.params
        stage, most = max(per_stage.items(), key=lambda item: item[1])
        where = f"stage {stage.removeprefix('layer')}" if stage.startswith("layer") else f"the {stage}"
        bound = fmt_count(MAX_PARAMS, "parameters", digits=0)
        super().__init__(
            f"the model would have {fmt_count(report.total_params, 'parameters')} ({report.total_params:,}), more "
            f"than the {bound} the app builds; {most / report.total_params:.0%} of them are in {where}"
        )


def analyze_selection(sel: Selection) -> Report:
    return analyze(sel.config, input_size=sel.input_size, batch_size=sel.batch_size)


def check(sel: Selection, analyze: Callable[[Selection], Report] = analyze_selection) -> None:
    """Raise ValueError if the app should refuse this selection (the model cannot take the input, ...).
    `analyze` is how to get its report: a server passes its cached one."""
    _, h, w = sel.input_size
    for name, v in (("height", h), ("width", w)):
        if not MIN_SIDE <= v <= MAX_SIDE:
            raise ValueError(f"input {name} {v} is out of range: {MIN_SIDE} to {MAX_SIDE} pixels")
    if not 1 <= sel.batch_size <= MAX_BATCH:
        raise ValueError(f"batch size {sel.batch_size} is out of range: 1 to {MAX_BATCH}")
    report = analyze(sel)
    if report.total_params > MAX_PARAMS:
        raise TooLarge(report)


# --- query string ---------------------------------------------------------------------------------

QUERY_KEYS = frozenset({"preset", "input", "batch", *(f.url for f in FIELDS)})  # every other key is ignored


def _custom_config(q: Mapping[str, str]) -> ResNetConfig:
    """A custom config from the query; ValueError (naming the parameter) for anything unreadable."""
    base = ResNetConfig()
    changes: dict[str, object] = {}
    for f in FIELDS:
        if f.url in q:
            try:
                changes[f.name] = f.read(q[f.url])
            except ValueError:
                raise ValueError(f"URL parameter {f.url}={q[f.url]!r} cannot be read") from None
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
    if sel.preset == CUSTOM:
        q.update({f.url: f.write(getattr(sel.config, f.name)) for f in FIELDS})
    return q

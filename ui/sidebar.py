"""The shared model picker in the sidebar, kept in the URL so a copied link reproduces the view.

Flow of one run: (first run of a session only) the URL seeds the widgets; the widgets give a candidate
selection; a valid candidate becomes the last good one and is written back to the URL; an invalid one
gets a message next to its control while the last good selection stays on screen.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from resnet_core.config import PRESET_GROUPS, PRESETS, ConfigError, ResNetConfig
from resnet_core.units import parse_ints
from server.fields import FIELD, FIELDS, Field
from server.runs import is_run_id
from server.selection import (
    CUSTOM,
    DEFAULT,
    MAX_QUERY_VALUE,
    MAX_SIDE,
    MIN_SIDE,
    QUERY_KEYS,
    Selection,
    TooLarge,
    check,
    default_input,
    from_query,
    to_query,
)
from ui import state as K
from ui.cache import report_for

FAMILIES = (*PRESET_GROUPS, "Custom")
# URL keys a page owns (the compare page's model B: `b_preset`, `b_blocks`, ...): the picker keeps them as they are.
PAGE_KEY_PREFIX = "b_"
PER_STAGE = "per stage…"


def _family_of(preset: str) -> str:
    return next((fam for fam, group in PRESET_GROUPS.items() if preset in group), "Custom")


def _seed_custom(cfg: ResNetConfig) -> None:
    """Copy a config into the custom controls (so customising starts from what is on screen)."""
    ss = st.session_state
    for f in CUSTOM_FIELDS:
        value = getattr(cfg, f.name)
        ss[f.key] = f.write(value) if f.kind == "ints" else value
    block = FIELD["block"]
    if isinstance(cfg.block, str):
        ss[block.key], ss[K.C_BLOCK_PER_STAGE] = cfg.block, cfg.block
    else:
        ss[block.key], ss[K.C_BLOCK_PER_STAGE] = PER_STAGE, block.write(cfg.block)


def _seed(sel: Selection) -> None:
    """Put a selection into every widget of the picker."""
    ss = st.session_state
    ss[K.FAMILY] = _family_of(sel.preset)
    if sel.preset != CUSTOM:
        ss[K.PRESET] = sel.preset
    _seed_custom(sel.config)
    c, h, w = sel.input_size
    ss[K.CHANNELS], ss[K.SQUARE], ss[K.SIDE], ss[K.HEIGHT], ss[K.WIDTH] = c, h == w, h, h, w
    ss[K.BATCH] = sel.batch_size


def choose_preset(name: str) -> None:
    """Put preset `name`, at its natural input size, into the picker (an `on_click` callback: it runs before the
    widgets of the next run are drawn)."""
    cfg = PRESETS[name]
    batch = st.session_state.get(K.BATCH, DEFAULT.batch_size)
    sel = Selection(name, cfg, default_input(cfg), int(batch))
    _seed(sel)
    st.session_state[K.LAST_GOOD] = sel


def _on_family_change() -> None:
    ss = st.session_state
    last: Selection = ss[K.LAST_GOOD]
    if ss[K.FAMILY] == "Custom":
        _seed_custom(last.config)
    else:
        group = PRESET_GROUPS[ss[K.FAMILY]]
        ss[K.PRESET] = next(iter(group))
        _seed_input(group[ss[K.PRESET]])


def _seed_input(cfg: ResNetConfig) -> None:
    """A new preset family gets its natural input size (32 for CIFAR nets, 224 for ImageNet ones)."""
    ss = st.session_state
    c, h, w = default_input(cfg)
    ss[K.CHANNELS], ss[K.SQUARE], ss[K.SIDE], ss[K.HEIGHT], ss[K.WIDTH] = c, True, h, h, w


def _on_preset_change() -> None:
    ss = st.session_state
    new = PRESET_GROUPS[ss[K.FAMILY]][ss[K.PRESET]]
    old: Selection = ss[K.LAST_GOOD]
    if new.stem != old.config.stem or new.in_channels != ss[K.CHANNELS]:
        _seed_input(new)


def _initialise() -> None:
    ss = st.session_state
    if ss.get(K.INITIALISED):
        return
    sel, warnings = from_query(st.query_params.to_dict())
    ss[K.URL_WARNINGS], ss[K.URL_SELECTION] = warnings, sel
    ss[K.LAST_GOOD] = sel
    _seed(sel)
    ss[K.INITIALISED] = True


# Every keyed widget of the picker is also given the session's current value as its default (`index=`,
# `value=`). The session state alone decides the value; the default is what the browser shows whenever it
# falls back to one, so it can only ever show the session's value. (With defaults left at the first option,
# some sessions opened under heavy load showed "ImageNet" over a custom model, and their next click sent it.)


def _choice(widget: Any, label: str, options: Sequence[Any], key: str, **kwargs: Any) -> Any:
    """A keyed selectbox or radio (`widget`, e.g. `st.selectbox` or `cols[0].radio`) defaulting to the
    session's value."""
    current = st.session_state.get(key)
    index = options.index(current) if current in options else 0
    return widget(label, options, index=index, key=key, **kwargs)


def _entry(widget: Any, label: str, key: str, **kwargs: Any) -> Any:
    """A keyed text or number input or toggle (`widget`) defaulting to the session's value."""
    if key in st.session_state:
        kwargs["value"] = st.session_state[key]
    return widget(label, key=key, **kwargs)


@dataclass(frozen=True)
class Problem:
    """Why the controls' model cannot be shown, said beside the control it belongs to."""

    field: str | None  # a ResNetConfig field; None: the input's controls
    text: str


def _custom_config() -> ResNetConfig:
    """The custom controls' config; a Problem-shaped ValueError (`ConfigError` or a parse error) when it cannot be
    built."""
    ss = st.session_state
    values: dict[str, object] = {"in_channels": int(ss[K.CHANNELS])}
    for f in CUSTOM_FIELDS:
        raw = ss[f.key]
        if f.kind == "ints":
            try:
                values[f.name] = parse_ints(raw)
            except ValueError as e:
                raise ConfigError(f.name, raw, str(e), why=str(e)) from None
        elif f.kind == "types" and raw == PER_STAGE:
            values[f.name] = f.read(ss[K.C_BLOCK_PER_STAGE])
        else:
            values[f.name] = int(raw) if f.kind == "int" else raw
    return ResNetConfig(**values)  # type: ignore[arg-type]


def _problem_of(e: ConfigError) -> Problem:
    return Problem(e.field, _sentence(f"{FIELD[e.field].label}: {e.plain}"))


def _sentence(text: str) -> str:
    """A message as a sentence: capital first, full stop last."""
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _changed_field(new: ResNetConfig, old: ResNetConfig) -> str | None:
    """The first field the student changed from the model on screen: where a refusal of the whole model is said."""
    return next((f.name for f in FIELDS if getattr(new, f.name) != getattr(old, f.name)), None)


def _note(field: str, text: str) -> None:
    """Say, beside a control, what the app changed in it to follow another (shown once)."""
    st.session_state.setdefault(K.C_NOTES, {})[field] = text


def _stage_widths(widths: tuple[int, ...], stages: int) -> tuple[int, ...]:
    """One width per stage: the first ones kept, each new stage twice the one before it (as in every ResNet)."""
    out = list(widths[:stages])
    while len(out) < stages:
        out.append(out[-1] * 2 if out else 64)
    return tuple(out)


def _on_blocks_change() -> None:
    """Blocks per stage sets the number of stages: widths (and per-stage block types) follow it."""
    ss = st.session_state
    try:
        stages = len(parse_ints(ss[FIELD["blocks"].key]))
        widths = parse_ints(ss[FIELD["widths"].key])
    except ValueError:
        return
    if len(widths) != stages:
        new = _stage_widths(widths, stages)
        ss[FIELD["widths"].key] = FIELD["widths"].write(new)
        _note("widths", f"Set to {FIELD['widths'].write(new)}: one width for each of the {stages} stages.")
    if ss[FIELD["block"].key] == PER_STAGE:
        types = [t.strip() for t in ss[K.C_BLOCK_PER_STAGE].split(",")]
        if len(types) not in (1, stages):
            types = (types + [types[-1]] * stages)[:stages]
            ss[K.C_BLOCK_PER_STAGE] = ",".join(types)
            _note("block", f"Set to {ss[K.C_BLOCK_PER_STAGE]}: one block type for each of the {stages} stages.")


def _on_groups_change() -> None:
    """More groups, thinner groups: width per group follows so that the grouped 3×3 conv keeps its width
    (groups × width per group stays what it was), instead of growing with the groups."""
    ss = st.session_state
    last: ResNetConfig = ss[K.LAST_GOOD].config
    channels = last.groups * last.width_per_group
    groups = int(ss[FIELD["groups"].key])
    per_group = max(1, channels // groups)
    if per_group != int(ss[FIELD["width_per_group"].key]):
        ss[FIELD["width_per_group"].key] = per_group
        _note("width_per_group", f"Set to {per_group}: {groups} groups × {per_group} keeps the grouped 3×3 conv at "
              f"{groups * per_group} channels per 64 of stage width (it had {channels}).")


def _all_basic() -> bool:
    ss = st.session_state
    block = ss[FIELD["block"].key]
    types = ss[K.C_BLOCK_PER_STAGE].split(",") if block == PER_STAGE else [block]
    return all(t.strip() == "basic" for t in types)


def _on_block_change() -> None:
    """Basic blocks have no grouped conv: choosing them puts groups back to 1 and width per group to 64."""
    ss = st.session_state
    groups, per_group = FIELD["groups"], FIELD["width_per_group"]
    if _all_basic() and (int(ss[groups.key]), int(ss[per_group.key])) != (1, 64):
        ss[groups.key], ss[per_group.key] = 1, 64
        _note("groups", "Set to 1 group of width 64: basic blocks have no grouped conv (bottleneck blocks do).")


LINKED = {"blocks": _on_blocks_change, "groups": _on_groups_change, "block": _on_block_change}
# The custom controls, row by row; in_channels is the input's Channels control.
ROWS = (("blocks",), ("block",), ("widths",), ("stem",), ("stem_width",), ("shortcut",), ("stride_at",),
        ("groups", "width_per_group"), ("preact",), ("residual",), ("zero_init_residual",), ("num_classes",))
CUSTOM_FIELDS = tuple(FIELD[name] for row in ROWS for name in row)


def _control(box: Any, f: Field) -> None:
    """One field's control in `box` (the sidebar or one of its columns), drawn as the table of fields says."""
    on_change = LINKED.get(f.name)
    if f.kind == "ints":
        _entry(box.text_input, f.label, f.key, help=f.help, on_change=on_change)
    elif f.kind == "types":
        _choice(box.selectbox, f.label, (*f.options, PER_STAGE), f.key, help=f.help, on_change=on_change)
        if st.session_state[f.key] == PER_STAGE:
            _entry(box.text_input, "Block type of each stage", K.C_BLOCK_PER_STAGE,
                   help="e.g. basic,basic,bottleneck,bottleneck", on_change=on_change)
    elif f.kind == "choice":  # a few options: all in sight (a select box at sidebar width cut "imagenet" short)
        _choice(box.radio, f.label, f.options, f.key, help=f.help, format_func=f.show, horizontal=not f.words)
    elif f.kind == "int":
        grouped = f.name in ("groups", "width_per_group")
        _entry(box.number_input, f.label, f.key, min_value=1, max_value=f.high, on_change=on_change,
               disabled=grouped and _all_basic(), help=f.help + (" Choose bottleneck blocks to change it."
                                                                 if grouped and _all_basic() else ""))
    else:
        _entry(box.toggle, f.label, f.key, help=f.help)


def _custom_controls(problem: Problem | None) -> None:
    """The custom-model controls, each followed by what is wrong with it or what the app changed in it."""
    notes: dict[str, str] = st.session_state.pop(K.C_NOTES, {})
    for row in ROWS:
        boxes = st.columns(len(row)) if len(row) > 1 else [st]
        for box, name in zip(boxes, row):
            _control(box, FIELD[name])
        for name in row:
            if problem is not None and problem.field == name:
                st.error(problem.text, icon=":material/warning:")
            if name in notes:
                st.caption(f"{FIELD[name].label}: {notes[name]}")


def _input_state() -> tuple[tuple[int, int, int], int]:
    """The input size and batch the controls hold (read before they are drawn, so a refusal can be said beside
    the control it is about)."""
    ss = st.session_state
    if ss[K.SQUARE]:
        h = w = int(ss[K.SIDE])
        ss[K.HEIGHT], ss[K.WIDTH] = h, w
    else:
        h, w = int(ss[K.HEIGHT]), int(ss[K.WIDTH])
        ss[K.SIDE] = h
    return (int(ss[K.CHANNELS]), h, w), int(ss[K.BATCH])


def _input_controls(*, custom: bool) -> None:
    channels = FIELD["in_channels"]
    _entry(st.number_input, channels.label, K.CHANNELS, min_value=1, max_value=channels.high, disabled=not custom,
           help=channels.help if custom else "A preset takes 3-channel (RGB) images; choose Custom for other inputs")
    if _entry(st.toggle, "Square input", K.SQUARE):
        _entry(st.number_input, "Side (pixels)", K.SIDE, min_value=1, max_value=100_000)
    else:
        cols = st.columns(2)
        _entry(cols[0].number_input, "Height", K.HEIGHT, min_value=1, max_value=100_000)
        _entry(cols[1].number_input, "Width", K.WIDTH, min_value=1, max_value=100_000)
    _entry(st.number_input, "Batch size", K.BATCH, min_value=1, max_value=1_000_000)


def _candidate(family: str) -> tuple[Selection | None, Problem | None]:
    """What the controls ask for, and why it cannot be shown (None when it can)."""
    ss = st.session_state
    last: Selection = ss[K.LAST_GOOD]
    if family == "Custom":
        preset = CUSTOM
        try:
            config = _custom_config()
        except ConfigError as e:
            return None, _problem_of(e)
    else:
        preset = ss[K.PRESET]
        config = PRESET_GROUPS[family][preset]
        ss[K.CHANNELS] = config.in_channels  # a preset's in_channels is fixed; the input's channels follow it
    input_size, batch = _input_state()
    candidate = Selection(preset, config, input_size, batch)
    try:
        check(candidate, report_for)
    except TooLarge as e:
        return None, Problem(_changed_field(config, last.config), _sentence(str(e)))
    except ValueError as e:
        return None, Problem(None, _sentence(str(e)))
    return candidate, None


def model_picker() -> Selection:
    """Render the picker and return the selection to show: the current one if valid, else the last good one,
    with the reason beside the control that caused it and a note above the page.
    What had to be replaced in the link the session was opened with is said at the top of the page, whichever
    page the link opens, until the student picks another model."""
    _initialise()
    ss = st.session_state
    family = ss[K.FAMILY]
    if family != "Custom" and ss.get(K.PRESET) not in PRESET_GROUPS[family]:
        ss[K.PRESET] = next(iter(PRESET_GROUPS[family]))
    candidate, problem = _candidate(family)
    if candidate is not None:
        ss[K.LAST_GOOD] = candidate
    with st.sidebar:
        st.header("Model")
        _choice(st.selectbox, "Family", FAMILIES, K.FAMILY, on_change=_on_family_change)
        if family == "Custom":
            with st.expander("Stages and blocks", expanded=True):
                _custom_controls(problem)
        else:
            _choice(st.selectbox, "Preset", tuple(PRESET_GROUPS[family]), K.PRESET, on_change=_on_preset_change)
        st.header("Input")
        _input_controls(custom=family == "Custom")
        if problem is not None and problem.field is None:
            st.error(problem.text, icon=":material/warning:")
        if problem is not None:
            st.caption("Showing the last valid model until this is fixed.")

    shown: Selection = ss.get(K.LAST_GOOD, DEFAULT)
    if problem is not None:
        st.warning(f"**The model in the sidebar is not shown.** {problem.text} This page shows the last valid "
                   f"model, **{shown.label}**, until it is fixed.", icon=":material/block:")
    if shown != ss.get(K.URL_SELECTION, shown):
        ss[K.URL_WARNINGS] = []  # the link's problems are gone with the model it asked for
    for warning in url_warnings():
        st.warning(warning, icon=":material/link:")
    ss[K.SELECTION] = shown
    query = to_query(shown)
    for key, value in st.query_params.to_dict().items():  # what pages own rides along: not part of the model
        if (key == "run" and is_run_id(value)) or _page_key(key, value):
            query[key] = value
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    return shown


def _page_key(key: str, value: str) -> bool:
    """A URL key the compare page owns (model B's `b_preset`, `b_blocks`, ...), of a readable length."""
    own = key.startswith(PAGE_KEY_PREFIX) and key.removeprefix(PAGE_KEY_PREFIX) in QUERY_KEYS
    return own and len(value) <= MAX_QUERY_VALUE


def current_selection() -> Selection:
    """The selection the sidebar settled on in this run (pages call this)."""
    return st.session_state.get(K.SELECTION, DEFAULT)


_PUNCTUATION = frozenset(string.punctuation)
# Autolinks (GFM) are found in the text after escapes are resolved, so a backslash cannot stop them; a word
# joiner (U+2060, invisible) inside "://", "www." and before "@" breaks their patterns.
_AUTOLINK = re.compile(r"(?<=:)(?=\\/\\/)|(?<=www)(?=\\\.)|(?=\\@)", re.IGNORECASE)


def literal_markdown(text: str) -> str:
    """Markdown that Streamlit shows as exactly `text`: no links, emphasis, HTML, math, icons or colours.

    Every ASCII punctuation character is backslash-escaped (CommonMark allows it for all of them), line
    breaks become spaces, and autolinks are broken with an invisible word joiner.
    """
    escaped = "".join("\\" + ch if ch in _PUNCTUATION else " " if ch in "\r\n" else ch for ch in text)
    return _AUTOLINK.sub("\u2060", escaped)


def url_warnings() -> list[str]:
    """Warnings about the link this session was opened with, as literal markdown:
    they quote the link, which someone else may have written."""
    return [literal_markdown(w) for w in st.session_state.get(K.URL_WARNINGS, [])]


__all__ = ["MAX_SIDE", "MIN_SIDE", "choose_preset", "current_selection", "literal_markdown", "model_picker",
           "url_warnings"]

"""The shared model picker in the sidebar, kept in the URL so a copied link reproduces the view.

Flow of one run: (first run of a session only) the URL seeds the widgets; the widgets give a candidate
selection; a valid candidate becomes the last good one and is written back to the URL; an invalid one
gets a message next to its control while the last good selection stays on screen.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

import streamlit as st

from resnet_core.config import BLOCK_TYPES, PRESET_GROUPS, PRESETS, SHORTCUTS, STEMS, STRIDE_PLACEMENTS, ResNetConfig
from server.runs import is_run_id
from server.selection import (
    CUSTOM,
    DEFAULT,
    MAX_SIDE,
    MIN_SIDE,
    Selection,
    check,
    default_input,
    from_query,
    to_query,
)
from ui import state as K

FAMILIES = (*PRESET_GROUPS, "Custom")
PER_STAGE = "per stage…"
SHORTCUT_HELP = {
    "A": "A · zero-padded identity (no parameters)",
    "B": "B · projection where the shape changes",
    "C": "C · projection in every block",
}


def _family_of(preset: str) -> str:
    return next((fam for fam, group in PRESET_GROUPS.items() if preset in group), "Custom")


def _seed_custom(cfg: ResNetConfig) -> None:
    """Copy a config into the custom controls (so customising starts from what is on screen)."""
    ss = st.session_state
    ss[K.C_BLOCKS] = ",".join(map(str, cfg.blocks))
    if isinstance(cfg.block, str):
        ss[K.C_BLOCK], ss[K.C_BLOCK_PER_STAGE] = cfg.block, cfg.block
    else:
        ss[K.C_BLOCK], ss[K.C_BLOCK_PER_STAGE] = PER_STAGE, ",".join(cfg.block)
    ss[K.C_WIDTHS] = ",".join(map(str, cfg.widths))
    ss[K.C_STEM] = cfg.stem
    ss[K.C_STEM_WIDTH] = cfg.stem_width
    ss[K.C_SHORTCUT] = cfg.shortcut
    ss[K.C_STRIDE_AT] = cfg.stride_at
    ss[K.C_GROUPS] = cfg.groups
    ss[K.C_WIDTH_PER_GROUP] = cfg.width_per_group
    ss[K.C_PREACT] = cfg.preact
    ss[K.C_RESIDUAL] = cfg.residual
    ss[K.C_ZERO_INIT] = cfg.zero_init_residual
    ss[K.C_CLASSES] = cfg.num_classes


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
    ss[K.URL_WARNINGS] = warnings
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


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise ValueError(f"{what}: write whole numbers separated by commas, e.g. 2,2,2,2") from None
    if not values:
        raise ValueError(f"{what}: give at least one stage")
    return values


CONTROL_OF_FIELD = {
    "blocks": "Blocks per stage",
    "widths": "Widths",
    "block": "Block type",
    "stem": "Stem",
    "stem_width": "Stem width",
    "shortcut": "Shortcut",
    "stride_at": "Bottleneck stride",
    "groups": "Groups",
    "width_per_group": "Width per group",
    "num_classes": "Classes",
    "in_channels": "Channels",
}


def control_message(message: str) -> str:
    """A config error in the words of the sidebar: the control's label first, no class names."""
    if not message.startswith("ResNetConfig."):
        return message
    detail = message.removeprefix("ResNetConfig.")
    field = detail.split("=", 1)[0].split("[", 1)[0]
    return f"{CONTROL_OF_FIELD.get(field, field)}: {detail}"


def _custom_controls() -> ResNetConfig:
    """The custom-model controls; raises ValueError (shown next to them) for a config that cannot be built."""
    _entry(
        st.text_input, "Blocks per stage", K.C_BLOCKS, help="Residual blocks in each stage, e.g. 3,4,6,3 (ResNet-50)"
    )
    _choice(st.selectbox, "Block type", (*BLOCK_TYPES, PER_STAGE), K.C_BLOCK)
    if st.session_state[K.C_BLOCK] == PER_STAGE:
        _entry(
            st.text_input,
            "Block type of each stage",
            K.C_BLOCK_PER_STAGE,
            help="e.g. basic,basic,bottleneck,bottleneck",
        )
    _entry(st.text_input, "Widths", K.C_WIDTHS, help="Base width of each stage; a bottleneck outputs 4x this")
    cols = st.columns(2)
    _choice(cols[0].selectbox, "Stem", STEMS, K.C_STEM, help="imagenet: 7x7/2 conv + max-pool; cifar: 3x3/1 conv")
    _entry(cols[1].number_input, "Stem width", K.C_STEM_WIDTH, min_value=1, max_value=100_000)
    _choice(st.radio, "Shortcut", SHORTCUTS, K.C_SHORTCUT, format_func=SHORTCUT_HELP.get)
    _choice(
        st.radio,
        "Bottleneck stride on",
        STRIDE_PLACEMENTS,
        K.C_STRIDE_AT,
        horizontal=True,
        format_func=lambda v: {"v1": "v1 · first 1x1 (paper)", "v1.5": "v1.5 · 3x3 (torchvision)"}[v],
    )
    cols = st.columns(2)
    _entry(cols[0].number_input, "Groups", K.C_GROUPS, min_value=1, max_value=100_000, help="ResNeXt cardinality")
    _entry(cols[1].number_input, "Width per group", K.C_WIDTH_PER_GROUP, min_value=1, max_value=100_000)
    _entry(st.toggle, "Pre-activation (BN-ReLU before conv)", K.C_PREACT)
    _entry(st.toggle, "Residual shortcuts", K.C_RESIDUAL, help="Off: the plain network of the same shape")
    _entry(st.toggle, "Zero-init last BN of each block", K.C_ZERO_INIT)
    _entry(st.number_input, "Classes", K.C_CLASSES, min_value=1, max_value=10_000_000)

    ss = st.session_state
    blocks = _ints(ss[K.C_BLOCKS], "Blocks per stage")
    widths = _ints(ss[K.C_WIDTHS], "Widths")
    if ss[K.C_BLOCK] == PER_STAGE:
        types = tuple(t.strip() for t in ss[K.C_BLOCK_PER_STAGE].split(","))
        block: object = types[0] if len(types) == 1 else types
    else:
        block = ss[K.C_BLOCK]
    return ResNetConfig(
        blocks=blocks,
        block=block,  # type: ignore[arg-type]
        widths=widths,
        stem=ss[K.C_STEM],
        stem_width=int(ss[K.C_STEM_WIDTH]),
        shortcut=ss[K.C_SHORTCUT],
        stride_at=ss[K.C_STRIDE_AT],
        groups=int(ss[K.C_GROUPS]),
        width_per_group=int(ss[K.C_WIDTH_PER_GROUP]),
        preact=bool(ss[K.C_PREACT]),
        residual=bool(ss[K.C_RESIDUAL]),
        zero_init_residual=bool(ss[K.C_ZERO_INIT]),
        in_channels=int(ss[K.CHANNELS]),
        num_classes=int(ss[K.C_CLASSES]),
    )


def _input_controls(*, custom: bool) -> tuple[tuple[int, int, int], int]:
    ss = st.session_state
    _entry(
        st.number_input,
        "Channels",
        K.CHANNELS,
        min_value=1,
        max_value=64,
        disabled=not custom,
        help=None if custom else "A preset takes 3-channel (RGB) images; choose Custom for other inputs",
    )
    square = _entry(st.toggle, "Square input", K.SQUARE)
    if square:
        _entry(st.number_input, "Side (pixels)", K.SIDE, min_value=1, max_value=100_000)
        h = w = int(ss[K.SIDE])
        ss[K.HEIGHT], ss[K.WIDTH] = h, w
    else:
        cols = st.columns(2)
        _entry(cols[0].number_input, "Height", K.HEIGHT, min_value=1, max_value=100_000)
        _entry(cols[1].number_input, "Width", K.WIDTH, min_value=1, max_value=100_000)
        h, w = int(ss[K.HEIGHT]), int(ss[K.WIDTH])
        ss[K.SIDE] = h
    _entry(st.number_input, "Batch size", K.BATCH, min_value=1, max_value=1_000_000)
    return (int(ss[K.CHANNELS]), h, w), int(ss[K.BATCH])


def model_picker() -> Selection:
    """Render the picker and return the selection to show: the current one if valid, else the last good one.
    What had to be replaced in the link the session was opened with is said at the top of the page, whichever
    page the link opens."""
    _initialise()
    ss = st.session_state
    with st.sidebar:
        st.header("Model")
        family = _choice(st.selectbox, "Family", FAMILIES, K.FAMILY, on_change=_on_family_change)
        problem: str | None = None
        config: ResNetConfig | None = None
        preset = CUSTOM
        if family == "Custom":
            try:
                with st.expander("Stages and blocks", expanded=True):
                    config = _custom_controls()
            except ValueError as e:
                problem = control_message(str(e))
                st.error(problem, icon=":material/warning:")
        else:
            options = tuple(PRESET_GROUPS[family])
            if ss.get(K.PRESET) not in options:
                ss[K.PRESET] = options[0]
            preset = _choice(st.selectbox, "Preset", options, K.PRESET, on_change=_on_preset_change)
            config = PRESET_GROUPS[family][preset]
            # A preset's in_channels is fixed; keep the input's channels in step with it.
            ss[K.CHANNELS] = config.in_channels

        st.header("Input")
        input_size, batch = _input_controls(custom=family == "Custom")
        if config is not None:
            candidate = Selection(preset, config, input_size, batch)
            try:
                check(candidate)
            except ValueError as e:
                problem = str(e)
                st.error(problem, icon=":material/warning:")
            else:
                ss[K.LAST_GOOD] = candidate
        if problem:
            st.caption("Showing the last valid model until this is fixed.")

    for warning in url_warnings():
        st.warning(warning, icon=":material/link:")
    shown: Selection = ss.get(K.LAST_GOOD, DEFAULT)
    ss[K.SELECTION] = shown
    query = to_query(shown)
    run = st.query_params.get("run")
    if run is not None and is_run_id(run):  # the training page's run: not part of the model
        query["run"] = run
    if st.query_params.to_dict() != query:
        st.query_params.from_dict(query)
    return shown


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

"""The compare page's helpers: model B's picker and its place in the URL, the cached comparison, and the words and
tables made from its numbers.

Model A is the sidebar's selection. Model B lives in the URL under the sidebar's names with a `b_` prefix
(`b_preset=resnet50`; a custom B: `b_preset=custom&b_blocks=3,4,6,3&...`), read with `server.selection.from_query`
on the stripped keys. B has no input or batch of its own: it is analysed at A's (with its own channel count), so
the two are compared on the same images; `b_input` and `b_batch` are not written.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from resnet_core.compare import COMPARED, Comparison, Quantity, StageShare, compare, diff_csv_frame
from resnet_core.config import PRESETS, ConfigError, preset_name
from resnet_core.units import fmt_bytes, fmt_count
from server.fields import FIELD, FIELDS, Field, config_from
from server.selection import CUSTOM, Selection, check, from_query, to_query
from ui import state as K
from ui.cache import report_for
from ui.sidebar import PAGE_KEY_PREFIX, choose_preset, literal_markdown

# One click sets both models: the comparisons people ask for most.
PAIRS: tuple[tuple[str, str], ...] = (
    ("resnet18", "resnet50"),
    ("resnet50_v1", "resnet50"),
    ("resnet56", "plain56"),
    ("resnet50", "wide_resnet50_2"),
    ("resnet50", "resnext50_32x4d"),
    ("resnet20", "resnet110"),
)
B_OPTIONS: tuple[str, ...] = (*PRESETS, CUSTOM)
# B's own input and batch are A's: a link's b_input and b_batch are not read.
_NOT_B = ("input", "batch")
_HASH: dict[str | type, Any] = {Selection: repr}  # a frozen dataclass: its repr is its value


def partner(a: str) -> str:
    """The model B a page opens with when the link names none: A's partner in the first pair that holds A."""
    for first, second in PAIRS:
        if a == first:
            return second
        if a == second:
            return first
    return "resnet50" if a != "resnet50" else "resnet18"


# --- model B in the URL -------------------------------------------------------------------------------------------


def b_query(b: Selection) -> dict[str, str]:
    """B's keys in a link: `to_query`'s names with the `b_` prefix, less the input and batch (A's are used)."""
    return {PAGE_KEY_PREFIX + k: v for k, v in to_query(b).items() if k not in _NOT_B}


def b_from_query(q: dict[str, str]) -> tuple[Selection, list[str]] | None:
    """B as a link describes it, with warnings for what had to be replaced; None when the link names no B."""
    own = {k.removeprefix(PAGE_KEY_PREFIX): v for k, v in q.items() if k.startswith(PAGE_KEY_PREFIX)}
    own = {k: v for k, v in own.items() if k not in _NOT_B}
    if "preset" not in own:
        return None
    sel, warnings = from_query(own)
    return sel, [w.replace("URL parameter ", f"URL parameter {PAGE_KEY_PREFIX}") for w in warnings]


def _write_url(b: Selection) -> None:
    """Put B in the URL (the sidebar has already written A and kept the old `b_` keys)."""
    current = st.query_params.to_dict()
    query = {k: v for k, v in current.items() if not k.startswith(PAGE_KEY_PREFIX)}
    query.update(b_query(b))
    if query != current:
        st.query_params.from_dict(query)


# --- model B's picker ---------------------------------------------------------------------------------------------


def _field_key(f: Field) -> str:
    return f"{K.CMP_B_FIELD}.{f.name}"


def _seed_custom(b: Selection) -> None:
    """Copy B's config into the custom controls (customising starts from the model on screen)."""
    for f in FIELDS:
        value = getattr(b.config, f.name)
        st.session_state[_field_key(f)] = f.write(value) if f.kind in ("ints", "types") else value


def _initialise(a: Selection) -> None:
    ss = st.session_state
    if ss.get(K.CMP_INITIALISED):
        return
    found = b_from_query(st.query_params.to_dict())
    if found is None:
        name = partner(a.preset)
        found = Selection(name, PRESETS[name]), []
    b, warnings = found
    ss[K.CMP_B_LAST_GOOD], ss[K.CMP_URL_WARNINGS] = b, warnings
    ss[K.CMP_B_MODEL] = b.preset
    _seed_custom(b)
    ss[K.CMP_INITIALISED] = True


def choose_pair(a: str, b: str) -> None:
    """A pair button's `on_click`: A through the sidebar, B here."""
    choose_preset(a)
    ss = st.session_state
    ss[K.CMP_B_MODEL] = b
    ss[K.CMP_B_LAST_GOOD] = Selection(b, PRESETS[b])


def _on_model_change() -> None:
    if st.session_state[K.CMP_B_MODEL] == CUSTOM:
        _seed_custom(st.session_state[K.CMP_B_LAST_GOOD])


def _read_custom() -> dict[str, object]:
    values: dict[str, object] = {}
    for f in FIELDS:
        raw = st.session_state[_field_key(f)]
        try:
            values[f.name] = f.read(raw) if f.kind in ("ints", "types") else raw
        except ValueError as e:
            raise ConfigError(f.name, raw, str(e), why=f"{f.label}: {e}") from None
    return values


def _custom_controls() -> None:
    """Every field of the table of fields (`server/fields.py`), three to a row."""
    cols = st.columns(3)
    for i, f in enumerate(FIELDS):
        box, key = cols[i % 3], _field_key(f)
        if f.kind in ("ints", "types"):
            box.text_input(f.label, key=key, help=f.help)
        elif f.kind == "choice":
            box.selectbox(f.label, f.options, key=key, help=f.help, format_func=f.show)
        elif f.kind == "int":
            box.number_input(f.label, key=key, min_value=1, max_value=f.high, help=f.help)
        else:
            box.toggle(f.label, key=key, help=f.help)


def _at_a(b: Selection, a: Selection) -> Selection:
    """B at A's input size and batch (with B's own channel count)."""
    _, h, w = a.input_size
    return Selection(b.preset, b.config, (b.config.in_channels, h, w), a.batch_size)


def model_b(a: Selection, box: Any) -> Selection:
    """Draw B's picker in `box` (a column) and return B at A's input: the controls' model when it is valid, else the
    last valid one, with the reason said plainly. Keeps B in the URL."""
    _initialise(a)
    ss = st.session_state
    last: Selection = ss[K.CMP_B_LAST_GOOD]
    if ss.get(K.CMP_B_MODEL) not in B_OPTIONS:
        ss[K.CMP_B_MODEL] = last.preset
    box.selectbox("Model B", B_OPTIONS, key=K.CMP_B_MODEL, on_change=_on_model_change,
                  help="Any preset, or custom: the controls below. A is the sidebar's model.")
    problem = None
    if ss[K.CMP_B_MODEL] == CUSTOM:
        for f in FIELDS:  # a control left undrawn on another page loses its value: start from B on screen
            if _field_key(f) not in ss:
                _seed_custom(last)
                break
        with st.expander("Custom model B", expanded=True):
            _custom_controls()
            try:
                config = config_from(_read_custom())
                candidate = Selection(preset_name(config) or CUSTOM, config)  # a preset's own config keeps its name
                check(_at_a(candidate, a), report_for)
            except ConfigError as e:
                problem = e.plain if e.why else f"{FIELD[e.field].label}: {e.plain}"
            except ValueError as e:
                problem = str(e)
            else:
                last = candidate
    else:
        name = ss[K.CMP_B_MODEL]
        candidate = Selection(name, PRESETS[name])
        try:
            check(_at_a(candidate, a), report_for)
        except ValueError as e:
            problem = str(e)
        else:
            last = candidate
    if problem is not None:
        st.error(f"Model B cannot be shown: {literal_markdown(problem)}. Showing the last valid model B, "
                 f"**{last.label}**, until it is fixed.", icon=":material/block:")
    if last != ss[K.CMP_B_LAST_GOOD]:
        ss[K.CMP_URL_WARNINGS] = []  # the link's problems are gone with the model B it asked for
    ss[K.CMP_B_LAST_GOOD] = last
    for warning in ss.get(K.CMP_URL_WARNINGS, []):
        st.warning(literal_markdown(warning), icon=":material/link:")
    _write_url(last)
    return _at_a(last, a)


# --- the comparison and its words ---------------------------------------------------------------------------------


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_HASH)
def comparison_for(a: Selection, b: Selection) -> Comparison:
    return compare(report_for(a), report_for(b))


@st.cache_data(max_entries=32, show_spinner=False, hash_funcs=_HASH)
def diff_csv(a: Selection, b: Selection) -> bytes:
    return diff_csv_frame(comparison_for(a, b)).to_csv(index=False).encode()


def amount(q: Quantity, n: int) -> str:
    """A headline number in the project's formats: '25.56 M parameters', '4.09 GMACs', '137.2 MiB', '427 px'."""
    if q.unit == "bytes":
        return fmt_bytes(n)
    if q.unit in ("layers", "px"):
        return f"{n:,} {q.unit}"
    return fmt_count(n, q.unit)


def _times(r: float) -> str:
    return f"{r:.3g}×"


def headline_frame(c: Comparison, a_label: str, b_label: str) -> pd.DataFrame:
    """The headline quantities as text: A, B, B − A and B / A."""
    rows = []
    for q in c.headline:
        diff = "same" if q.difference == 0 else ("+" if q.difference > 0 else "") + amount(q, q.difference)
        rows.append({"quantity": q.label, f"A · {a_label}": amount(q, q.a), f"B · {b_label}": amount(q, q.b),
                     "B − A": diff, "B / A": "—" if q.ratio is None else _times(q.ratio)})
    return pd.DataFrame(rows).set_index("quantity").rename_axis(None)  # labels as the index


def stage_words(stage: str) -> str:
    return f"stage {stage.removeprefix('layer')}" if stage.startswith("layer") else f"the {stage}"


def _listed(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _where(shares: tuple[StageShare, ...], what: str) -> str | None:
    if not shares:
        return None
    top = shares[0]
    tied = [s for s in shares if math.isclose(s.share, top.share, rel_tol=1e-9)]
    if len(tied) > 1:
        places = _listed([stage_words(s.stage) for s in tied])
        return f"the difference in {what} is split evenly over {places} ({top.share:.0%} each)"
    if top.share > 0.5:
        return f"most of the difference in {what} is in {stage_words(top.stage)} ({top.share:.0%})"
    return f"the largest part of the difference in {what} is in {stage_words(top.stage)} ({top.share:.0%})"


def _cost_sentence(c: Comparison) -> str:
    p, m = c.quantity("params"), c.quantity("macs")
    if p.ratio is None or m.ratio is None:
        return f"B has {amount(p, p.b)} and {amount(m, m.b)} per image; A has {amount(p, p.a)} and {amount(m, m.a)}."
    if p.difference == 0 and m.difference == 0:
        return f"A and B have the same parameters ({amount(p, p.a)}) and the same MACs per image ({amount(m, m.a)})."
    if p.difference == 0:
        return (f"B has the same parameters as A ({amount(p, p.a)}) but {_times(m.ratio)} its MACs per image "
                f"({amount(m, m.b)} against {amount(m, m.a)}).")
    if m.difference == 0:
        return f"B has {_times(p.ratio)} the parameters of A but the same MACs per image ({amount(m, m.a)})."
    # "but" when the two ratios part: one grows and the other shrinks, or they differ by more than 5%.
    parted = (p.ratio > 1) != (m.ratio > 1) or abs(math.log(p.ratio / m.ratio)) > math.log(1.05)
    return f"B has {_times(p.ratio)} the parameters of A {'but' if parted else 'and'} {_times(m.ratio)} its MACs."


def sentences(c: Comparison) -> list[str]:
    """What the numbers say, in sentences made from them (markdown)."""
    out = [_cost_sentence(c)]
    where = [w for w in (_where(c.shares("params"), "parameters"), _where(c.shares("macs"), "MACs")) if w]
    if where:
        text = "; ".join(where)
        out.append(text[0].upper() + text[1:] + ".")
    d, rf = c.quantity("depth"), c.quantity("receptive_field")
    depth = (f"Both have {d.a} weighted layers" if d.difference == 0 else
             f"B is {abs(d.difference)} weighted layers {'deeper' if d.difference > 0 else 'shallower'} than A "
             f"({d.b} against {d.a})")
    field = ("the same theoretical receptive field" if rf.difference == 0 else
             f"a theoretical receptive field of {rf.b} px against A's {rf.a} px")
    out.append(f"{depth}; B has {field}.")
    act = c.quantity("activation_bytes")
    if act.difference and act.ratio is not None:
        out.append(f"At batch {c.a.batch_size}, B's layers write {_times(act.ratio)} A's activation memory "
                   f"({amount(act, act.b)} against {amount(act, act.a)}).")
    out.append(_layers_sentence(c))
    return out


def _layers_sentence(c: Comparison) -> str:
    diff = c.differing
    if diff.empty:
        return "Layer by layer, the two models are the same."
    only_a = int((diff["changed"] == "only in A").sum())
    only_b = int((diff["changed"] == "only in B").sum())
    changed = len(diff) - only_a - only_b
    parts = []
    if changed:
        seen = {w for text in diff["changed"] if not text.startswith("only") for w in text.split(", ")}
        what = [words for _, words in COMPARED if words in seen]
        parts.append(f"{changed} differ in {_listed(what)}")
    for side, n in (("B", only_b), ("A", only_a)):
        if n:
            kinds = diff.loc[diff["changed"] == f"only in {side}", f"{side} type"].value_counts()
            parts.append(f"{n} are only in {side} ({', '.join(f'{k} {t}' for t, k in kinds.items())})")
    blocks = c.differing_blocks
    if len(blocks) <= 6:
        where = f"all in {'block' if len(blocks) == 1 else 'blocks'} {_listed(list(blocks))}"
    else:
        stages = list(dict.fromkeys(stage_words(b.split(".")[0]) for b in blocks))
        where = f"they are in {len(blocks)} blocks of {_listed(stages)}"
    return f"Of the {len(c.layers):,} layers of either model, {'; '.join(parts)}; {where}."



# --- tables for the page ------------------------------------------------------------------------------------------

_MARK = "background-color: #fee2e2"  # a differing row


_WORDS = {"output_shape": "output shape", "params": "params", "macs": "MACs / image",
          "output_bytes": "activation bytes (batch)", "blocks": "blocks"}


def stage_view(c: Comparison) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-stage numbers of both models, A beside B for each, and their column config."""
    cols = ["stage"] + [f"{side} {name}" for name in _WORDS for side in ("A", "B")]
    config: dict[str, Any] = {}
    for col in cols[1:]:
        side, _, name = col.partition(" ")
        label = f"{side} {_WORDS[name]}"
        config[col] = label if name == "output_shape" else st.column_config.NumberColumn(label, format="localized")
    return c.stages[cols], config


def layer_view(c: Comparison, *, only_differing: bool) -> tuple[Any, dict[str, Any], int]:
    """The aligned layer table as the page shows it (a Styler: differing rows shaded), its column config and its
    number of rows."""
    df = c.differing if only_differing else c.layers
    cols = ["layer", "changed", "A type", "B type", "A stride", "B stride", "A output_shape", "B output_shape",
            "A params", "B params", "A macs", "B macs"]
    marked = df["differs"].to_numpy()
    view = df[cols].reset_index(drop=True)
    counts = ["A params", "B params", "A macs", "B macs"]
    styled = (view.style.apply(lambda row: [_MARK if marked[row.name] else ""] * len(row), axis=1)
              .format(na_rep="").format("{:,}", subset=counts, na_rep=""))  # the Styler's text is what is shown
    config = {
        "layer": st.column_config.TextColumn("layer", pinned=True, width="medium"),
        "A output_shape": "A output shape", "B output_shape": "B output shape",
        "A macs": "A MACs / image", "B macs": "B MACs / image",
        "changed": st.column_config.TextColumn("differs in", width="medium"),
    }
    return styled, config, len(view)


def block_options(c: Comparison) -> tuple[list[str], str]:
    """The blocks of either model in forward order, and the one to draw first: the first that differs."""
    options = list(dict.fromkeys(f"{s}.{int(b)}" for s, b in zip(c.layers["stage"], c.layers["block"])
                                 if not pd.isna(b)))
    first = next((b for b in c.differing_blocks if b in options), options[0])
    return options, first

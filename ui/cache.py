"""Cached calls into resnet_core. Every cache is bounded; cached objects are immutable or fresh copies."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from resnet_core import Report, build_model
from resnet_core.analysis import Level
from resnet_core.export import to_onnx, to_safetensors
from resnet_core.references import comparison
from server.selection import Selection, analyze_selection
from server.settings import LIMITS
from ui.charts import along_depth, per_stage
from ui.diagram import block_diagram

_HASH: dict[str | type, Callable[[Any], Any]] = {Selection: repr}  # a frozen dataclass: its repr is its value


@st.cache_resource(max_entries=LIMITS.analysis_cache_entries, show_spinner=False, hash_funcs=_HASH)
def report_for(sel: Selection) -> Report:
    return analyze_selection(sel)


@st.cache_data(max_entries=LIMITS.analysis_cache_entries, show_spinner=False, hash_funcs=_HASH)
def table_for(sel: Selection, level: Level) -> pd.DataFrame:
    return report_for(sel).to_dataframe(level)


@st.cache_resource(max_entries=LIMITS.analysis_cache_entries, show_spinner=False, hash_funcs=_HASH)
def charts_for(sel: Selection) -> tuple[go.Figure, ...]:
    """The Charts tab's figures, built once per model (about 85 ms) and shared by every session: drawn, never
    modified (`st.plotly_chart` only reads a figure)."""
    report = report_for(sel)
    return per_stage(report), along_depth(report)


@st.cache_data(max_entries=64, show_spinner=False, hash_funcs=_HASH)
def diagram_for(sel: Selection, expanded: tuple[str, ...]) -> str:
    return block_diagram(report_for(sel), expanded)


@st.cache_data(max_entries=64, show_spinner=False)
def reference_table(preset: str) -> pd.DataFrame:
    return comparison(preset)


def export_onnx(sel: Selection) -> bytes:
    """Built on demand (a download click), never cached: the bytes can be hundreds of MB."""
    return to_onnx(build_model(sel.config), sel.input_size)


def export_safetensors(sel: Selection) -> bytes:
    return to_safetensors(build_model(sel.config))


_SOURCE_LOCK = threading.Lock()


@functools.cache
def block_source(cls: type) -> str:
    """The source code of a block class, read once per server. `inspect.getsource` parses the whole module with
    `ast`, which Python 3.11 before 3.11.8 cannot do from two threads at once ("SystemError: AST constructor
    recursion depth mismatch", seen when five sessions opened this page together): one parse at a time."""
    with _SOURCE_LOCK:
        return inspect.getsource(cls)

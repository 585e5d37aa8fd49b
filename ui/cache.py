"""Cached calls into resnet_core. Every cache is bounded; cached objects are immutable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from resnet_core import Report, analyze
from resnet_core.analysis import Level
from resnet_core.selection import Selection

_HASH: dict[str | type, Callable[[Any], Any]] = {Selection: repr}  # a frozen dataclass: its repr is its value


@st.cache_resource(max_entries=128, show_spinner=False, hash_funcs=_HASH)
def report_for(sel: Selection) -> Report:
    return analyze(sel.config, input_size=sel.input_size, batch_size=sel.batch_size)


@st.cache_data(max_entries=128, show_spinner=False, hash_funcs=_HASH)
def table_for(sel: Selection, level: Level) -> pd.DataFrame:
    return report_for(sel).to_dataframe(level)

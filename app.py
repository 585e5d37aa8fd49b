"""ResNet Explorer: the router. Each page lives in app_pages/; the model picker is shared by all of them.

(Not `pages/`: Streamlit treats a folder of that name as an old-style multipage app and, on a fresh server,
would run a deep-linked page without this router and its sidebar.)"""

from __future__ import annotations

import os

# Before anything imports torch: OpenMP reads this once, when torch loads it. Torch's idle threads otherwise spin
# after each forward pass, taking a core from the browser on a small host (a feature-map layer switch: 248 ms median
# with spinning threads, 176 ms without; docs/benchmarks.md). A host that wants spinning threads sets it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st

from server.settings import SETTINGS_ERROR
from ui.janitor import watch_this_session
from ui.sidebar import model_picker

st.set_page_config(page_title="ResNet Explorer", page_icon="🧱", layout="wide")
if SETTINGS_ERROR:  # a host's typo: said on every page, never run with limits nobody chose
    st.error(SETTINGS_ERROR, icon=":material/settings_alert:")
    st.stop()
watch_this_session()

pages = [
    st.Page("app_pages/architecture.py", title="Architecture", icon=":material/account_tree:", default=True),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("app_pages/feature_maps.py", title="Feature maps", icon=":material/biotech:"),
    st.Page("app_pages/training.py", title="Training", icon=":material/monitoring:"),
    st.Page("app_pages/residual_lab.py", title="Why residuals work", icon=":material/science:"),
]
page = st.navigation(pages)
model_picker()
page.run()

"""ResNet Explorer: the router. Each page lives in pages/; the model picker is shared by all of them."""

from __future__ import annotations

import streamlit as st

from ui.sidebar import model_picker

st.set_page_config(page_title="ResNet Explorer", page_icon="🧱", layout="wide")

pages = [
    st.Page("pages/architecture.py", title="Architecture", icon="🏗️", default=True),
]
page = st.navigation(pages)
model_picker()
page.run()

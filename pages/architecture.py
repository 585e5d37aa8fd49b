"""The architecture explorer: what the chosen ResNet is, layer by layer, with exact numbers."""

from __future__ import annotations

import streamlit as st

from resnet_core.units import fmt_count
from ui.cache import report_for
from ui.sidebar import current_selection, url_warnings

sel = current_selection()
for w in url_warnings():
    st.warning(w, icon="🔗")

report = report_for(sel)
c, h, w = sel.input_size
st.title(f"{sel.label}")
st.caption(f"Input {c}x{h}x{w} · batch {sel.batch_size}")

m = st.columns(4)
m[0].metric("Parameters (trainable)", f"{report.trainable_params:,}", help=f"{fmt_count(report.trainable_params)}")
m[1].metric(
    "MACs per image",
    f"{fmt_count(report.total_macs)}MACs",
    help=f"{report.total_macs:,} multiply-accumulates of the convolutions and the linear layer",
)
m[2].metric("FLOPs per image", f"{fmt_count(report.total_flops)}FLOPs", help="FLOPs = 2 x MACs")
m[3].metric("Receptive field", f"{report.receptive_field} px", help=f"at the last spatial layer; jump {report.jump}")

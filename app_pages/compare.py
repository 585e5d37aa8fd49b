"""Compare two ResNets: A is the sidebar's model, B is chosen here; numbers, stages, layers and one block side by
side."""

from __future__ import annotations

import streamlit as st

from resnet_core.units import format_input
from server.selection import CUSTOM
from ui import state as K
from ui.cache import report_for
from ui.charts import compare_stages
from ui.compare import (
    PAIRS,
    block_options,
    choose_pair,
    comparison_for,
    diff_csv,
    headline_frame,
    layer_view,
    model_b,
    sentences,
    stage_view,
)
from ui.diagram import layer_diagram
from ui.sidebar import current_selection

a = current_selection()
title = st.empty()  # names both models, so it is filled once B is known
grid = st.columns(3)
for i, (first, second) in enumerate(PAIRS):  # one click sets both models
    grid[i % 3].button(f"{first} | {second}", on_click=choose_pair, args=(first, second), width="stretch",
                       help=f"A = {first} (set in the sidebar), B = {second}")
top = st.columns([1, 2], vertical_alignment="bottom")
b = model_b(a, top[0])
title.title(f"{a.label} vs {b.label}", anchor=False)
_, h, w = a.input_size
top[1].caption(
    f"**A** is the sidebar's model, **B** is chosen here. B is analysed at A's input, {h}×{w} pixels"
    + (f" (with B's own {b.input_size[0]} channels)" if b.input_size[0] != a.input_size[0] else "")
    + f", and A's batch, {a.batch_size}, so both are measured on the same images. The link holds both models."
)
c = comparison_for(a, b)
st.markdown("\n".join(f"- {s}" for s in sentences(c)))
st.table(headline_frame(c, a.label, b.label), border="horizontal")

# Only the open tab is drawn (a click on another reruns the page), so switching B redraws one of them.
tab_stages, tab_layers, tab_block = st.tabs(["Per stage", "Layers side by side", "One block, layer by layer"],
                                            key=K.CMP_TAB, on_change="rerun")

if tab_stages.open:
    with tab_stages:
        st.plotly_chart(compare_stages(c.stages, a.label, b.label), config={"displayModeBar": False})
        stages, config = stage_view(c)
        st.dataframe(stages, hide_index=True, width="stretch", column_config=config)
        st.caption("MACs are per image; activation memory is every layer's output for the batch in float32. Output "
                   "shape is the stage's last output (batch × channels × height × width).")

if tab_layers.open:
    with tab_layers:
        cols = st.columns([3, 1], vertical_alignment="center")
        only = cols[0].toggle("Only the layers that differ", key=K.CMP_ONLY_DIFFERING)
        name = "_".join(s.preset if s.preset != CUSTOM else "custom" for s in (a, b))
        cols[1].download_button("Download the diff (CSV)", diff_csv(a, b), on_click="ignore",
                                file_name=f"compare_{name}_{format_input(a.input_size)}_b{a.batch_size}.csv",
                                mime="text/csv", icon=":material/download:")
        table, config, n_rows = layer_view(c, only_differing=only)
        st.dataframe(table, hide_index=True, width="stretch", height=min(35 * (n_rows + 1) + 3, 560),
                     column_config=config)
        st.caption("Layers are matched by module path (torchvision's names). A row is marked when its type, kernel, "
                   "stride, output shape, parameters or MACs differ, or when only one model has it; the receptive "
                   "field is left out, as it changes every layer after the first difference.")

if tab_block.open:
    with tab_block:
        options, first = block_options(c)
        block = st.columns([1, 2])[0].selectbox(
            "Block", options, index=options.index(first), key=f"{K.CMP_BLOCK}.{hash((a.config, b.config))}",
            help="Drawn layer by layer; layers that differ between A and B are red.")
        marked = set(c.differing["key"])
        left, right = st.columns(2)
        for box, side, sel in ((left, "A", a), (right, "B", b)):
            box.markdown(f"**{side} · {sel.label}**")
            report = report_for(sel)
            if any(p.path == block for p in report.plan.blocks):
                box.graphviz_chart(layer_diagram(report, block, marked), width="content")
            else:
                box.info(f"{sel.label} has no block {block}.", icon=":material/info:")

"""The architecture explorer: what the chosen ResNet is, layer by layer, with exact numbers."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from resnet_core import blocks as block_module
from resnet_core.tables import LEVELS, to_csv
from resnet_core.units import FLOPS_RULE, fmt_bytes, fmt_count
from server.selection import CUSTOM
from ui import state as K
from ui.cache import (
    block_source,
    charts_for,
    diagram_for,
    export_onnx,
    export_safetensors,
    reference_table,
    report_for,
    table_for,
)
from ui.diagram import default_expanded
from ui.sidebar import current_selection

sel = current_selection()

report = report_for(sel)
cfg = report.config
c, h, w = sel.input_size
types = sorted(set(cfg.block_types), key=cfg.block_types.index)
st.title(sel.label)
st.caption(
    f"{' + '.join(types)} blocks {'-'.join(map(str, cfg.blocks))} · {cfg.stem} stem · "
    f"shortcut {cfg.shortcut if cfg.residual else 'none (plain network)'} · "
    + (f"bottleneck stride {cfg.stride_at} · " if "bottleneck" in types else "")
    + ("pre-activation · " if cfg.preact else "")
    + f"input {c}×{h}×{w}, batch {sel.batch_size}"
)

m = st.columns(4)
m[0].metric("Parameters (trainable)", f"{report.trainable_params:,}",
            help=fmt_count(report.trainable_params, "parameters"))
m[1].metric(
    "MACs per image",
    fmt_count(report.total_macs, "MACs"),
    help=f"{report.total_macs:,} multiply-accumulates of the convolutions and the linear layer, for one image",
)
m[2].metric("FLOPs per image", fmt_count(report.total_flops, "FLOPs"), help=FLOPS_RULE)
m[3].metric(
    "Receptive field (theoretical)",
    f"{report.receptive_field} px",
    help=f"Input pixels that can reach one unit of the last feature map, from kernels and strides alone (the "
    f"effective one, where most of the influence lies, is smaller); neighbouring units are {report.jump} px apart",
)
m = st.columns(4)
m[0].metric("Weighted layers", f"{report.weighted_layers:,}",
            help="Convs and the fc layer on the main path (shortcuts not counted)")
m[1].metric(
    "Activation memory (batch)",
    fmt_bytes(report.activation_bytes),
    help="Every layer's output for the whole batch in float32: what a forward pass writes",
)
mem = report.memory
m[2].metric(
    "Training memory (batch)",
    fmt_bytes(mem.total_bytes),
    help=(
        f"float32 (BN too), SGD with momentum: parameters {fmt_bytes(mem.param_bytes)} + gradients "
        f"{fmt_bytes(mem.grad_bytes)} + momentum {fmt_bytes(mem.optimizer_bytes)} + activations kept for backward "
        f"{fmt_bytes(mem.saved_activation_bytes)}"
    ),
)
last = next(r for r in reversed(report.rows) if r.receptive_field is not None)
m[3].metric(
    "Last feature map", "×".join(map(str, last.output_shape[1:])), help="channels × height × width, before pooling"
)
for note in report.warnings:  # what a teacher should know about this model at this input
    st.caption(f":material/info: {note}")

number = st.column_config.NumberColumn


def layer_table() -> None:
    labels = {"stage": "Stages", "block": "Blocks", "layer": "Every layer"}
    cols = st.columns([2, 2, 1])
    with cols[0]:
        level = st.segmented_control(
            "Level", LEVELS, format_func=labels.get, key=K.TABLE_LEVEL, default="block", required=True,
            persist_state="page",
        )
    stages = ["stem", *(f"layer{i + 1}" for i in range(cfg.num_stages)), "head"]
    with cols[1]:
        stage = st.selectbox("Stage", ["all", *stages], key=K.TABLE_STAGE, disabled=level == "stage",
                             persist_state="page")
    table = table_for(sel, level)
    if level != "stage" and stage != "all":
        table = table[table["stage"] == stage]
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        height=min(35 * (len(table) + 1) + 3, 560),
        placeholder="",  # a layer without a block, kernel or receptive field shows nothing there
        column_config={
            "layer": st.column_config.TextColumn("layer", pinned=True, width="medium"),
            "modules": number("modules", help="Rows of the layer table in it: convs, BNs, ReLUs, the sum and the "
                              "shortcut's layers"),
            "output_shape": st.column_config.TextColumn("output shape", help="batch × channels × height × width"),
            "params": number("params", format="localized"),
            "macs": number("MACs / image", format="localized"),
            "flops": number("FLOPs / image", format="localized"),
            "output_bytes": number("output bytes (batch)", format="localized"),
            "receptive_field": number("RF (px)"),
            "jump": number("jump (px)"),
        },
    )
    name = sel.preset if sel.preset != CUSTOM else "custom"
    with cols[2]:
        st.download_button(
            "Download CSV",
            to_csv(table),
            file_name=f"{name}_{c}x{h}x{w}_b{sel.batch_size}_{level}.csv",
            mime="text/csv",
            on_click="ignore",
            icon=":material/download:",
        )
    st.caption(
        f"MACs are multiply-accumulates of convolutions and the linear layer, per image; {FLOPS_RULE}. "
        "Output bytes are for the whole batch in float32. RF is the receptive field through the residual graph "
        "(the union of branch and shortcut at each sum); jump is the distance in input pixels between neighbouring "
        "units."
    )

def charts() -> None:
    for fig in charts_for(sel):
        st.plotly_chart(fig, config={"displayModeBar": False})


def diagram() -> None:
    stage_names = [f"layer{i + 1}" for i in range(cfg.num_stages)]
    expanded = st.multiselect(
        "Stages drawn block by block (the others are collapsed into one box)",
        stage_names,
        default=default_expanded(report),
        key=f"{K.DIAGRAM_EXPANDED}.{sel.preset}.{cfg.blocks}",
        persist_state="page",
    )
    st.graphviz_chart(diagram_for(sel, tuple(expanded)), width="content")
    st.caption(
        "Shortcuts: **solid green** identity · **dashed orange** projection (1x1 conv + BN) · "
        "**dotted blue** zero-padded identity (option A). Edge labels are the tensor shapes (C×H×W)."
    )


def against_references() -> None:
    if sel.preset == CUSTOM:
        st.info("Published figures exist for the presets; pick one to compare.", icon=":material/menu_book:")
    else:
        ref = reference_table(sel.preset)
        if ref.empty:
            st.info(f"No published figures for {sel.preset}.", icon=":material/menu_book:")
        else:
            st.dataframe(
                ref.drop(columns="note"),
                hide_index=True,
                width="stretch",
                placeholder="",  # a source that gives no figure for a column
                column_config={
                    "params": number("params", format="localized"),
                    "ours: params": number("ours: params", format="localized"),
                    "MACs": number("MACs", format="localized"),
                    "ours: MACs": number("ours: MACs", format="localized"),
                    "top-1 error (%)": number("top-1 error (%)", format="%.2f"),
                },
            )
            notes = dict(zip(ref["source"], ref["note"]))  # in full, under the table rather than cut off in it
            st.caption("  \n".join(f"**{source}**: {note}." for source, note in notes.items() if note))
            st.markdown("\n".join(f"- {b}" for b in reference_bullets(ref)))


def reference_bullets(ref: pd.DataFrame) -> list[str]:
    """How to read the table, only the points that apply to this model's rows."""
    sources = " ".join(ref["source"])
    out = []
    if "torchvision" in sources:
        out.append("**Parameters** are counted exactly; torchvision's counts are exact too, so they agree to the "
                   "last digit.")
    if "Table 6" in sources:
        out.append("**The paper rounds** its CIFAR parameter counts (0.27M for ResNet-20); ours are exact.")
    if ref["MACs"].notna().any():
        out.append("**MACs vs FLOPs.** The paper's Table 1 'FLOPs' and torchvision's 'GFLOPS' are both "
                   f"*multiply-adds*: compare them with our **MACs** ({FLOPS_RULE}).")
    if "bottleneck" in cfg.block_types and "He et al." in sources:
        out.append("**v1 vs v1.5.** The paper strides its bottlenecks in the first 1x1 conv (v1); torchvision "
                   "strides in the 3x3 (v1.5), which costs more (ResNet-50: 4.09 vs 3.86 GMACs) and is about "
                   "0.5% more accurate. The 'ours' MACs beside a paper row are for the paper's v1 model.")
    side = ref["input"].iloc[0]
    if f"{h}x{w}" != side:
        out.append(f"Ours are exact at the row's input, {side}, not the sidebar's {h}×{w}: the paper and "
                   "torchvision measure there.")
    return out


def how_it_works() -> None:
    st.markdown(
        "**Residual learning** ([He et al. 2015](https://arxiv.org/abs/1512.03385), §3.1–3.2). Instead of asking a "
        "stack of layers to fit a mapping H(x) directly, a block fits the *residual* F(x) = H(x) − x and adds its "
        "input back through a shortcut:"
    )
    st.latex(r"y = \mathcal{F}(x, \{W_i\}) + x \qquad \text{(eq. 1)}")
    st.markdown(
        "If the best thing a block can do is nothing, it only has to drive F to zero, which is easy; a plain stack "
        "has to learn the identity through several non-linear layers, which the paper shows is hard (the "
        "*degradation problem*: a deeper plain net has **higher training error**, Fig. 1). Where the shapes differ, "
        "the shortcut is a linear projection:"
    )
    st.latex(r"y = \mathcal{F}(x, \{W_i\}) + W_s\,x \qquad \text{(eq. 2)}")
    st.markdown(
        "**Shortcut options** (§3.3, Table 3): **A** zero-pads the identity with extra channels (no parameters; the "
        "CIFAR nets use it); **B** projects only where the shape changes (torchvision's choice); **C** projects "
        "everywhere (slightly better, many more parameters).\n\n"
        "**Bottlenecks** (§4.1, Fig. 5): a 1x1 conv reduces the channels 4×, the 3x3 works on the thin tensor, and "
        "a 1x1 expands back. With 64→256 channels this costs about the same as a basic block of two 3x3 convs on 64 "
        "channels, so ResNet-50/101/152 go deep for the price of ResNet-34.\n\n"
        "**Pre-activation** ([He et al. 2016](https://arxiv.org/abs/1603.05027)): BN and ReLU move before each conv "
        "and nothing follows the sum, so the shortcut path is a pure identity from the first block to the last."
    )
    st.markdown("**The code of the blocks in this model** (the exact source that runs):")
    classes = {block_module.BLOCK_CLASSES[(t, cfg.preact)] for t in cfg.block_types}
    if cfg.residual and cfg.shortcut == "A":
        classes.add(block_module.ZeroPadShortcut)
    for cls in sorted(classes, key=lambda k: k.__name__):
        st.code(block_source(cls), language="python")


def export() -> None:
    st.markdown(
        "Download the model with random weights: **ONNX** opens in [Netron](https://netron.app) to browse the graph "
        "and runs in ONNX Runtime; **safetensors** holds the state dict with torchvision's key names."
    )
    base = f"{sel.preset if sel.preset != CUSTOM else 'custom'}"
    e1, e2 = st.columns(2)
    e1.download_button(
        "ONNX model", lambda: export_onnx(sel), file_name=f"{base}.onnx", mime="application/octet-stream",
        on_click="ignore", icon=":material/deployed_code:",
    )
    e2.download_button(
        "State dict (safetensors)", lambda: export_safetensors(sel), file_name=f"{base}.safetensors",
        mime="application/octet-stream", on_click="ignore", icon=":material/deployed_code:",
    )
    st.caption(f"Files are about {fmt_bytes(report.param_bytes)} (float32 weights).")


# Only the open tab is drawn (opening another reruns the page): drawing the hidden Diagram and Charts tabs cost the
# browser about a second on every preset switch. Controls in a closed tab keep their value (persist_state="page").
tabs = {"Layer table": layer_table, "Charts": charts, "Diagram": diagram, "Against the references": against_references,
        "How it works": how_it_works, "Export": export}
for tab, draw in zip(st.tabs(list(tabs), key=K.ARCH_TAB, on_change="rerun"), tabs.values()):
    if tab.open:
        with tab:
            draw()

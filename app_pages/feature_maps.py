"""Feature maps: what every stage, block and conv of the chosen network sees in an image."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from resnet_core import TORCHVISION_PRESETS, PretrainedUnavailable, analyze
from resnet_core.activations import block_internals, blocks_of, channel_order, channel_stats, grad_cam, tile, top_k
from resnet_core.images import TEST_PATTERNS, ImageError, LoadedImage, load_sample, sample_images
from resnet_core.images import test_pattern as make_pattern
from resnet_core.preprocess import to_display
from resnet_core.units import fmt_bytes
from server.selection import CUSTOM
from server.settings import LIMITS
from server.uploads import limits_text, load_upload
from ui import state as K
from ui.featuremaps import IMAGENET, RANDOM, TRAINED, current_capture, ensure_downloaded, overlay, session_model
from ui.sidebar import current_selection

sel = current_selection()
cfg = sel.config
ss = st.session_state
st.title("Feature maps")
st.caption(f"{sel.label}: what each stage, block and convolution computes from one image.")

if cfg.in_channels not in (1, 3):
    st.warning(f"Feature maps need a model with 1 or 3 input channels; this one takes {cfg.in_channels}.")
    st.stop()

# --- the image ------------------------------------------------------------------------------------
left, right = st.columns([1, 2], gap="large")
with left:
    source = st.segmented_control(
        "Image", ["Samples", "Your image", "Test patterns"], key=K.FM_SOURCE, default="Samples", required=True
    )
    if source == "Samples":
        name = st.selectbox("Sample photo", list(sample_images()), key=K.FM_SAMPLE)
        if ss.get(K.FM_IMAGE, ("",))[0] != f"sample:{name}":
            ss[K.FM_IMAGE] = (f"sample:{name}", name, load_sample(name))
    elif source == "Test patterns":
        name = st.selectbox("Pattern", TEST_PATTERNS, key=K.FM_PATTERN)
        if ss.get(K.FM_IMAGE, ("",))[0] != f"pattern:{name}":
            img = make_pattern(name, 224)
            ss[K.FM_IMAGE] = (f"pattern:{name}", name, LoadedImage(img, "generated", "RGB", img.size, ()))
    else:
        upload = st.file_uploader(
            "Upload an image (PNG, JPEG, WebP, BMP or GIF)",
            key=K.FM_UPLOAD,
            help=limits_text(),
        )
        if upload is not None and ss.get(K.FM_UPLOAD_SEEN, (None,))[0] != upload.file_id:
            try:
                image_id, loaded = load_upload(upload.getvalue())
            except ImageError as e:
                ss[K.FM_UPLOAD_SEEN] = (upload.file_id, str(e))
            else:
                ss[K.FM_UPLOAD_SEEN] = (upload.file_id, None)
                ss[K.FM_IMAGE] = (image_id, upload.name, loaded)
        if upload is not None and ss[K.FM_UPLOAD_SEEN][1]:
            st.error(ss[K.FM_UPLOAD_SEEN][1], icon=":material/block:")
            st.caption("The previous image stays on screen.")

    if K.FM_IMAGE not in ss:  # first visit on the Upload tab: start from a sample
        first = next(iter(sample_images()))
        ss[K.FM_IMAGE] = (f"sample:{first}", first, load_sample(first))
    image_id, label, loaded = ss[K.FM_IMAGE]
    st.image(loaded.image, width="stretch")
    # A file name and metadata are the user's text: shown as plain text, never as markdown or HTML.
    st.text(f"{label}\n{loaded.format}, {loaded.original_mode}, {loaded.original_size[0]}×{loaded.original_size[1]}")
    for note in loaded.notes:
        st.text(note)

    # --- the weights ------------------------------------------------------------------------------
    options = [RANDOM]
    if sel.preset in TORCHVISION_PRESETS:
        options.append(IMAGENET)
    options.append(TRAINED)
    weights = st.radio("Weights", options, key=K.FM_WEIGHTS)
    trained = ss.get(K.TRAINED)
    if weights == TRAINED and trained is None:
        st.info("Train a model on the Training page first; it will appear here.", icon=":material/fitness_center:")
        weights = RANDOM
    elif weights == TRAINED:
        st.text(f"Trained in this session: {trained.label}")
    if weights == IMAGENET:
        try:
            bar = st.progress(0.0, text="Checking the weights…")
            ensure_downloaded(
                sel.preset,
                lambda done, total: bar.progress(
                    done / total if total else 0.0, text=f"Downloading weights: {done / 2**20:.0f} MB"
                ),
            )
            bar.empty()
        except PretrainedUnavailable as e:
            bar.empty()
            st.warning(f"{e}", icon=":material/wifi_off:")
            weights = RANDOM
    if sel.preset == CUSTOM and weights == IMAGENET:
        weights = RANDOM

side = min(max(sel.input_size[1:]), LIMITS.activation_max_side)
input_hw = (min(sel.input_size[1], side), min(sel.input_size[2], side))
# Refuse, before building anything, a model whose feature maps for one image would not fit this server.
need = analyze(cfg, input_size=(sel.input_size[0], *input_hw)).activation_bytes
if need > LIMITS.activation_max_bytes:
    st.error(f"The feature maps of {sel.label} at {input_hw[0]}×{input_hw[1]} take {fmt_bytes(need)} for one image, "
             f"more than this server allows ({fmt_bytes(LIMITS.activation_max_bytes)}). Choose a smaller input or "
             "fewer or narrower channels in the sidebar.", icon=":material/memory:")
    st.stop()
with st.spinner("Running the network…"):
    sm = session_model(cfg, sel.preset, weights, input_hw)
    x, cap = current_capture(sm, image_id, loaded.image)

with left:
    st.markdown("**What the network is given**")
    st.image(to_display(x, sm.preprocess), width="stretch")
    st.caption(f"Tensor {tuple(x.shape)} · {sm.weights_label} · {sm.preprocess.describe()}")

# --- the layer ------------------------------------------------------------------------------------
with right:
    places = ["stem"]
    for stage in sm.model.stages:
        places.append(stage)
        places += [p for p, _ in blocks_of(sm.model) if p.startswith(stage + ".")]

    def place_label(p: str) -> str:
        if p == "stem":
            return "stem (output)"
        return f"{p} (stage output)" if p.count(".") == 0 else f"{p} (block)"

    c1, c2 = st.columns([1, 2])
    place = c1.selectbox("Layer", places, key=K.FM_LAYER, format_func=place_label)
    if place.count(".") == 1:
        block = sm.model.get_submodule(place)
        inside = block_internals(block, cap.block_input(place))
        what = c2.segmented_control(
            "Inside the block", list(inside), key=K.FM_INSIDE, default="output", required=True
        )
        if what not in inside:
            what = "output"
        act = inside[what]
    else:
        inside, what = {}, "output"
        act = cap.outputs["stem"] if place == "stem" else cap.stage_output(place)

    c1, c2, c3 = st.columns([1.3, 1, 1])
    sort = c1.segmented_control(
        "Order", ["index", "mean"], key=K.FM_SORT, default="mean", required=True,
        format_func={"index": "by number", "mean": "by mean"}.get,
    )
    scale = c2.segmented_control(
        "Colour scale", ["channel", "shared"], key=K.FM_SCALE, default="channel", required=True,
        format_func={"channel": "per channel", "shared": "shared"}.get,
    )
    n_tiles = c3.select_slider("Channels shown", [16, 32, 64, 128, 256], key=K.FM_TILES, value=64)
    order = channel_order(act, sort)
    grid = tile(act, order, max_tiles=n_tiles, scale=scale)
    c, h, w = act.shape
    fig = px.imshow(grid, color_continuous_scale="Viridis", zmin=0, zmax=1, aspect="equal")
    fig.update_layout(height=560, margin=dict(t=10, b=10, l=10, r=10), coloraxis_showscale=False)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_traces(hovertemplate="x %{x}, y %{y}: %{z:.2f}<extra></extra>")
    st.plotly_chart(fig, config={"displayModeBar": False}, key="fm_grid")
    shown = min(n_tiles, c)
    st.caption(
        f"{place} · {what} · {c} channels of {h}×{w}; showing {shown}, ordered by "
        f"{'mean activation (strongest first)' if sort == 'mean' else 'channel number'}, read left to right."
    )
    stats = channel_stats(act)
    table = pd.DataFrame(
        {
            "channel": order[:shown],
            "mean": stats.mean[order[:shown]],
            "max": stats.max[order[:shown]],
            "zeros (%)": 100 * stats.zero_fraction[order[:shown]],
        }
    )
    with st.expander("Per-channel statistics"):
        st.dataframe(table, hide_index=True, width="stretch", height=240)

# --- residual anatomy -----------------------------------------------------------------------------
st.subheader("Residual anatomy: how much does each block change its input?")
anatomy = cap.anatomy
if not cfg.residual:
    st.info("This is a plain network: no shortcut, so each block's output is all F(x).", icon=":material/info:")
fig = go.Figure()
paths = [a.path for a in anatomy]
fig.add_bar(x=paths, y=[a.shortcut_abs_mean for a in anatomy], name="|x| (shortcut)", marker_color="#16a34a")
fig.add_bar(x=paths, y=[a.residual_abs_mean for a in anatomy], name="|F(x)| (residual branch)", marker_color="#ea580c")
fig.update_layout(barmode="group", height=300, margin=dict(t=10, b=10, l=10, r=10), yaxis_title="mean |value|",
                  legend=dict(orientation="h", y=1.1))
st.plotly_chart(fig, config={"displayModeBar": False}, key="fm_anatomy")
if cfg.residual and inside:
    f_abs, x_abs = inside["F(x)"].abs().mean(0), inside["x"].abs().mean(0)
    top = float(max(f_abs.max(), x_abs.max()))
    a1, a2 = st.columns(2)
    for col, title, m in ((a1, "|F(x)|, mean over channels", f_abs), (a2, "|x| (shortcut), mean over channels", x_abs)):
        fig = px.imshow(m.numpy(), color_continuous_scale="Viridis", zmin=0, zmax=top, aspect="equal", title=title)
        fig.update_layout(height=300, margin=dict(t=40, b=10, l=10, r=10))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        col.plotly_chart(fig, config={"displayModeBar": False}, key=f"fm_anat_{title[:3]}")
if cfg.residual and anatomy:
    ratios = sorted(a.ratio for a in anatomy if a.shortcut_abs_mean > 0)
    median = ratios[len(ratios) // 2]
    small = sum(r < 1 for r in ratios)
    st.caption(
        f"Here the median |F(x)| / |x| is {median:.2f}; in {small} of {len(ratios)} blocks the residual branch is "
        "smaller than the shortcut. "
        + ("With random weights nothing has been learned yet, so F(x) is about as large as x. " if
           sm.categories is None else "")
        + "He et al. (2015, §4.2 and Fig. 7) measured that in trained residual networks the responses of the "
        "residual functions are generally small: each block only learns how to change its input, not to rebuild it, "
        "which is why residual networks can be so deep. Compare a trained model with random weights here."
    )

# --- predictions and Grad-CAM ---------------------------------------------------------------------
st.subheader("Predictions and Grad-CAM")
if sm.categories is None:
    st.info("Random weights predict nothing meaningful: choose ImageNet-pretrained weights (for a torchvision "
            "preset) or a model trained in this session.", icon=":material/casino:")
else:
    preds = top_k(cap.logits, sm.categories, k=5)
    p1, p2 = st.columns([1, 2])
    p1.dataframe(pd.DataFrame(preds, columns=["class", "probability"]), hide_index=True,
                 column_config={"probability": st.column_config.ProgressColumn(format="%.3f", min_value=0,
                                                                                 max_value=1)})
    names = [c for c, _ in preds]
    cls = p2.selectbox("Class to explain", names, key=K.FM_CAM_CLASS)
    stage = p2.selectbox("At stage", sm.model.stages[::-1], key=K.FM_CAM_STAGE)
    cam = grad_cam(sm.model, x, sm.categories.index(cls), stage)
    p2.image(overlay(to_display(x, sm.preprocess), cam.numpy()), width=360)
    p2.caption(f"Grad-CAM of '{cls}' at {stage}: bright where the evidence for the class lies.")

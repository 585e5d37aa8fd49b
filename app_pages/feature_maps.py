"""Feature maps: what every stage, block and conv of the chosen network sees in an image."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from resnet_core import TORCHVISION_PRESETS, analyze
from resnet_core.activations import (
    Capture,
    block_internals,
    blocks_of,
    channel_order,
    channel_stats,
    grad_cam,
    tile,
    top_k,
)
from resnet_core.images import TEST_PATTERNS, ImageError, LoadedImage, load_sample, sample_images
from resnet_core.images import test_pattern as make_pattern
from resnet_core.preprocess import to_display
from resnet_core.units import fmt_bytes
from resnet_core.weights import checkpoint_present
from server.selection import CUSTOM
from server.settings import LIMITS
from server.uploads import limits_text, load_upload
from ui import state as K
from ui.charts import anatomy_bars, image_map
from ui.featuremaps import (
    IMAGENET,
    RANDOM,
    SHAPE_ID,
    TRAINED,
    SessionModel,
    anatomy_sentence,
    current_capture,
    knows_shapes,
    overlay,
    session_model,
    shape_samples,
    shown_model,
)
from ui.offline import NOT_HERE, offer_weights, weights_note
from ui.sidebar import current_selection

sel = current_selection()
ss = st.session_state
shown = shown_model(sel)  # the model trained in this session when the Weights radio below picks it
cfg = shown.config
st.title("Feature maps")
st.caption(f"{shown.label}: what each stage, block and convolution computes from one image."
           + (f" (The sidebar's {sel.label} is another model.)" if shown.trained is not None else ""))

if cfg.in_channels not in (1, 3):
    st.warning(f"Feature maps need a model with 1 or 3 input channels; this one takes {cfg.in_channels}.")
    st.stop()

# --- the image ------------------------------------------------------------------------------------
left, right = st.columns([1, 2], gap="large")
with left:
    source = st.segmented_control(
        "Image", ["Samples", "Your image", "Test patterns"], key=K.FM_SOURCE, default="Samples", required=True
    )
    if source == "Samples" and shown.trained is not None and knows_shapes(shown.trained.classes):
        # A model of the built-in shapes: one shape of each of its classes first, then the photos.
        shapes = shape_samples(shown.input_size[1])
        ids = {f"{n} (built-in shape)": SHAPE_ID + n for n in shapes} | {n: f"sample:{n}" for n in sample_images()}
        choice = ids[st.selectbox("Sample", list(ids), key=K.FM_SHAPE)]
        if ss.get(K.FM_IMAGE, ("",))[0] != choice:
            name = choice.partition(":")[2]
            ss[K.FM_IMAGE] = (choice, name, shapes[name] if choice.startswith(SHAPE_ID) else load_sample(name))
    elif source == "Samples":
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
    imagenet_missing = sel.preset in TORCHVISION_PRESETS and not checkpoint_present(sel.preset)
    weights = st.radio("Weights", options, key=K.FM_WEIGHTS,
                       captions=[NOT_HERE if o == IMAGENET and imagenet_missing else "" for o in options],
                       help=weights_note(sel.preset) if imagenet_missing else None)
    trained = ss.get(K.TRAINED)
    if weights == TRAINED and trained is None:
        st.info("Train a model on the Training page first; it will appear here.", icon=":material/fitness_center:")
        weights = RANDOM
    elif weights == TRAINED:
        st.text(f"Trained in this session: {trained.label}")
    if weights == IMAGENET and imagenet_missing:
        offer_weights(sel.preset)  # what is missing and the command that adds it; random weights meanwhile
        weights = RANDOM
    if sel.preset == CUSTOM and weights == IMAGENET:
        weights = RANDOM

input_hw = (shown.input_size[1], shown.input_size[2])
if shown.trained is None and input_hw != sel.input_size[1:]:  # said where it happens, never done silently
    st.info(f"The sidebar's {sel.input_size[1]}×{sel.input_size[2]} input is shown at {input_hw[0]}×{input_hw[1]}: "
            f"this server computes feature maps up to {LIMITS.activation_max_side} px a side.",
            icon=":material/photo_size_select_small:")
# Refuse, before building anything, a model whose feature maps for one image would not fit this server.
need = analyze(cfg, input_size=shown.input_size).activation_bytes
if need > LIMITS.activation_max_bytes:
    st.error(f"The feature maps of {shown.label} at {input_hw[0]}×{input_hw[1]} take {fmt_bytes(need)} for one image, "
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
def place_label(p: str) -> str:
    if p == "stem":
        return "stem (output)"
    return f"{p} (stage output)" if p.count(".") == 0 else f"{p} (block)"


@st.fragment  # a layer or a view of it changes only this part: the image, the chart below and Grad-CAM stay
def layer_view(sm: SessionModel, cap: Capture) -> None:
    places = ["stem"]
    for stage in sm.model.stages:
        places.append(stage)
        places += [p for p, _ in blocks_of(sm.model) if p.startswith(stage + ".")]

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
    c, h, w = act.shape
    st.plotly_chart(image_map(tile(act, order, max_tiles=n_tiles, scale=scale), height=560),
                    config={"displayModeBar": False}, key="fm_grid")
    n_shown = min(n_tiles, c)
    st.caption(
        f"{place} · {what} · {c} channels of {h}×{w}; showing {n_shown}, ordered by "
        f"{'mean activation (strongest first)' if sort == 'mean' else 'channel number'}, read left to right."
    )
    stats = channel_stats(act)
    table = pd.DataFrame(
        {
            "channel": order[:n_shown],
            "mean": stats.mean[order[:n_shown]],
            "max": stats.max[order[:n_shown]],
            "zeros (%)": 100 * stats.zero_fraction[order[:n_shown]],
        }
    )
    with st.expander("Per-channel statistics"):
        number = st.column_config.NumberColumn
        st.dataframe(table, hide_index=True, width="stretch", height=240,
                     column_config={"mean": number("mean", format="%.3f"), "max": number("max", format="%.3f"),
                                    "zeros (%)": number("zeros (%)", format="%.1f")})

    if "x" in inside:  # a residual block: its branch beside its shortcut, on one colour scale
        f_abs, x_abs = inside["F(x)"].abs().mean(0), inside["x"].abs().mean(0)
        top = float(max(f_abs.max(), x_abs.max()))
        st.markdown(f"**Inside {place}: the residual branch and the shortcut**")
        a1, a2 = st.columns(2)
        for col, title, m in ((a1, "|F(x)|, mean over channels", f_abs), (a2, "|x| (shortcut), mean over channels",
                                                                           x_abs)):
            col.plotly_chart(image_map(m.numpy(), zmax=top, height=300, title=title),
                             config={"displayModeBar": False}, key=f"fm_anat_{title[:3]}")


with right:
    layer_view(sm, cap)

# --- residual anatomy -----------------------------------------------------------------------------
st.subheader("Residual anatomy: how much does each block change its input?")
if not cfg.residual:
    st.info("This is a plain network: no shortcut, so each block's output is all F(x).", icon=":material/info:")
st.plotly_chart(anatomy_bars(cap.anatomy), config={"displayModeBar": False}, key="fm_anatomy")
if cfg.residual and (said := anatomy_sentence(cap.anatomy, learned=sm.categories is not None)):
    st.caption(said)

# --- predictions and Grad-CAM ---------------------------------------------------------------------
st.subheader("Predictions and Grad-CAM")
if sm.categories is None:
    st.info("Random weights predict nothing meaningful: choose ImageNet-pretrained weights (for a torchvision "
            "preset) or a model trained in this session.", icon=":material/casino:")
else:
    if shown.trained is not None:  # a small model: every class it can answer with fits in a line
        st.caption(f"This model knows {len(sm.categories)} classes: {', '.join(sm.categories)}.")
    if knows_shapes(sm.categories) and not image_id.startswith(SHAPE_ID):
        st.warning(f"This model was trained on the built-in shapes only: whatever this image shows, it answers with "
                   f"the closest of its {len(sm.categories)} shapes, so read its answer as that, not as what the "
                   "image is. Pick a shape under Samples to see it recognise one.", icon=":material/category:")
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

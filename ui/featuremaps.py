"""The feature-maps page's state: which model it shows (the sidebar's, or the one trained in this session), the
session's own copy of it (hooks never touch a shared one), its input image, the one capture of the current image
that every view reads, and the words that describe what was measured."""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import plotly.colors
import streamlit as st
import torch
from PIL import Image

from resnet_core import ResNet, build_model, load_pretrained
from resnet_core.activations import BlockAnatomy, Capture, capture
from resnet_core.config import ResNetConfig
from resnet_core.data import BUILTIN_CLASSES, builtin
from resnet_core.images import LoadedImage
from resnet_core.preprocess import Preprocess, for_input, from_weights_transforms, preprocess
from server.selection import Selection
from server.settings import LIMITS
from ui import state as K

if TYPE_CHECKING:
    from ui.training import TrainedModel  # a type only: ui.training imports Ray, which this page never needs

RANDOM, IMAGENET, TRAINED = "Random (seed 0)", "ImageNet-pretrained", "Trained in this session"


@dataclass(frozen=True)
class SessionModel:
    key: tuple[str, str]  # (config repr, weights)
    model: ResNet  # this session's own copy, eval mode
    preprocess: Preprocess
    categories: tuple[str, ...] | None  # class names when the weights know them
    weights_label: str


@dataclass(frozen=True)
class Shown:
    """The model whose activations the page shows, known before it is built (for the header and the memory check)."""

    config: ResNetConfig
    label: str
    input_size: tuple[int, int, int]  # (C, H, W) the page feeds it
    trained: TrainedModel | None  # the model trained in this session, when that is the one shown


def shown_model(sel: Selection) -> Shown:
    """The session's trained model when the Weights radio picks it (its value in session state is the choice of
    this run, before the radio is drawn), else the sidebar's model at its input size, capped at the server's
    largest side for feature maps."""
    trained: TrainedModel | None = st.session_state.get(K.TRAINED)
    if st.session_state.get(K.FM_WEIGHTS) == TRAINED and trained is not None:
        return Shown(trained.config, f"{trained.label} (trained in this session)", trained.input_size, trained)
    c, h, w = sel.input_size
    side = min(max(h, w), LIMITS.activation_max_side)
    return Shown(sel.config, sel.label, (c, min(h, side), min(w, side)), None)


def knows_shapes(categories: Sequence[str] | None) -> bool:
    """Whether a model's classes are those of the built-in shapes dataset (resnet_core.data.builtin)."""
    return categories is not None and tuple(categories) == BUILTIN_CLASSES


SHAPE_ID = "shape:"  # how the id of a built-in shape sample starts (FM_IMAGE, FM_SHAPE options)
SHAPE_SAMPLE_SEED = 0  # shapes drawn from builtin()'s test stream: never the images a model trained on


@st.cache_resource(max_entries=4, show_spinner=False)
def shape_samples(size: int) -> dict[str, LoadedImage]:
    """One built-in shape per class at `size` pixels, class name -> image, in BUILTIN_CLASSES order."""
    data = builtin(n_train=1, n_test=len(BUILTIN_CLASSES), seed=SHAPE_SAMPLE_SEED, size=size)  # one of each class
    out = {}
    for k, name in enumerate(BUILTIN_CLASSES):
        i = int((data.y_test == k).nonzero()[0, 0])
        img = Image.fromarray(data.x_test[i].permute(1, 2, 0).numpy())  # (H, W, 3) uint8
        out[name] = LoadedImage(img, "generated", "RGB", img.size, ())
    return out


@st.cache_resource(max_entries=LIMITS.model_cache_entries, show_spinner=False)
def _pretrained(preset: str) -> tuple[ResNet, tuple[str, ...], Preprocess, str]:
    """Shared by every session and never modified: sessions take a deep copy."""
    pre = load_pretrained(preset)
    return pre.model, pre.categories, from_weights_transforms(pre.transforms), pre.weights_name


def session_model(cfg: ResNetConfig, preset: str, weights: str, input_hw: tuple[int, int]) -> SessionModel:
    """This session's model for (config, weights), built once and kept in session state."""
    trained = st.session_state.get(K.TRAINED)
    if weights == TRAINED and trained is not None:
        cfg = trained.config
        weights = f"{TRAINED}#{trained.job_id}"
    key = (repr(cfg), weights if weights != RANDOM else f"{weights}@{input_hw}")
    weights = TRAINED if weights.startswith(TRAINED) else weights
    held: SessionModel | None = st.session_state.get(K.FM_MODEL)
    if held is not None and held.key == key:
        return held
    if weights == IMAGENET:
        shared, categories, prep, name = _pretrained(preset)
        made = SessionModel(key, copy.deepcopy(shared).eval(), prep, categories, name)
    elif weights == TRAINED:
        trained = st.session_state[K.TRAINED]
        model = build_model(trained.config, device="meta").to_empty(device="cpu")
        model.load_state_dict(trained.state)
        c, h, w = trained.input_size
        prep = Preprocess(crop=(h, w), resize=max(h, w), mean=trained.mean, std=trained.std, channels=c)
        made = SessionModel(key, model.eval(), prep, trained.classes, f"trained: {trained.label}")
    else:
        model = build_model(cfg, seed=0).eval()
        made = SessionModel(key, model, for_input(input_hw, cfg.in_channels), None, "random weights, seed 0")
    st.session_state[K.FM_MODEL] = made
    st.session_state.pop(K.FM_CAPTURE, None)
    return made


def current_capture(sm: SessionModel, image_id: str, image: object) -> tuple[torch.Tensor, Capture]:
    """The input tensor and the capture of it, recomputed only when the model or the image changes."""
    key = (sm.key, image_id, sm.preprocess)
    held = st.session_state.get(K.FM_CAPTURE)
    if held is not None and held[0] == key:
        return held[1], held[2]
    x = preprocess(image, sm.preprocess)  # type: ignore[arg-type]
    cap = capture(sm.model, x)
    st.session_state[K.FM_CAPTURE] = (key, x, cap)
    return x, cap


def _lut(name: str) -> np.ndarray:
    colours = plotly.colors.sample_colorscale(name, [i / 255 for i in range(256)], colortype="tuple")
    return (np.array(colours) * (255 if max(max(c) for c in colours) <= 1 else 1)).astype(np.uint8)


HEAT_LUT = _lut("Inferno")


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """A [0, 1] heat map over an (H, W, 3) uint8 image."""
    coloured = HEAT_LUT[np.clip((heat * 255).round(), 0, 255).astype(np.uint8)]
    return (image * (1 - alpha) + coloured * alpha).round().astype(np.uint8)


# How a typical block's |F(x)| / |x| reads in words: (upper bound of the ratio, words), checked in order.
_RATIO_WORDS = ((0.5, "much smaller than"), (0.9, "smaller than"), (1.1, "about as large as"),
                (2.0, "larger than"), (float("inf"), "much larger than"))


def anatomy_sentence(anatomy: Sequence[BlockAnatomy], *, learned: bool) -> str | None:
    """What the residual-anatomy chart measured, in words that follow from the numbers: the median ratio
    |F(x)| / |x| over the blocks with a shortcut, how many blocks have a branch smaller than their shortcut, and
    whether this model agrees with He et al.'s observation (only a model with `learned` weights can)."""
    ratios = [a.ratio for a in anatomy if a.shortcut_abs_mean > 0]
    if not ratios:
        return None
    median = statistics.median(ratios)
    small = sum(r < 1 for r in ratios)
    words = next(w for bound, w in _RATIO_WORDS if median < bound)
    said = (f"Here the median |F(x)| / |x| is {median:.2f}: in a typical block the residual branch is {words} the "
            f"shortcut, and it is smaller in {small} of {len(ratios)} blocks. He et al. (2015, §4.2 and Fig. 7) "
            "measured that in trained residual networks the responses of the residual functions are generally small: "
            "each block only learns how to change its input, not to rebuild it, which is why residual networks can "
            "be so deep. ")
    if not learned:
        return said + ("These weights are random, so the ratio shows how the initialisation scales F(x), not what "
                       "training makes of it: compare a trained model.")
    if median < 1:
        return said + "This model shows it too on this image."
    return said + "This model does not show it on this image: its residual branches are not the smaller part."

"""The feature-maps page's state: the session's own model (hooks never touch a shared one), its input
image, and the one capture of the current image that every view reads."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import plotly.colors
import streamlit as st
import torch

from resnet_core import ResNet, build_model, load_pretrained
from resnet_core.activations import Capture, capture
from resnet_core.config import ResNetConfig
from resnet_core.preprocess import Preprocess, for_input, from_weights_transforms, preprocess
from resnet_core.weights import fetch_checkpoint
from server.settings import LIMITS
from ui import state as K

RANDOM, IMAGENET, TRAINED = "Random (seed 0)", "ImageNet-pretrained", "Trained in this session"


@dataclass(frozen=True)
class SessionModel:
    key: tuple[str, str]  # (config repr, weights)
    model: ResNet  # this session's own copy, eval mode
    preprocess: Preprocess
    categories: tuple[str, ...] | None  # class names when the weights know them
    weights_label: str


@st.cache_resource(max_entries=LIMITS.model_cache_entries, show_spinner=False)
def _pretrained(preset: str) -> tuple[ResNet, tuple[str, ...], Preprocess, str]:
    """Shared by every session and never modified: sessions take a deep copy."""
    pre = load_pretrained(preset)
    return pre.model, pre.categories, from_weights_transforms(pre.transforms), pre.weights_name


def ensure_downloaded(preset: str, on_progress: Callable[[int, int | None], None]) -> None:
    """Download the checkpoint (once, into torch hub's cache) with a progress bar, before the cached load."""
    fetch_checkpoint(preset, on_progress=on_progress)


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

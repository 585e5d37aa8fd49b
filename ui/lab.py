"""The residual lab's plumbing: cached signal measurements, the words that describe them, races as jobs."""

from __future__ import annotations

import streamlit as st
import torch

from resnet_core.config import ResNetConfig
from resnet_core.data import Dataset
from resnet_core.images import load_sample, sample_images
from resnet_core.lab import CIFAR_DEPTHS, SignalProfile, compare_at_init
from resnet_core.preprocess import for_input, preprocess
from resnet_core.residuals import test_inputs
from resnet_core.train import RACE_RECIPES
from server.jobs import Job
from server.work import RaceJob
from ui import state as K
from ui.training import dataset, job_runner, owner

RACE_DATA_LABELS = {"builtin": "the built-in shapes (offline, minutes on a CPU)",
                    "cifar10": "CIFAR-10 (the paper's data and recipe; a GPU)"}
SIGNAL_BATCH = {"cifar": 32, "imagenet": 4}  # images per measurement: a real batch, small enough to be instant


def _batch(depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A real batch: built-in test images for the CIFAR nets, the sample photos for the ImageNet ones."""
    if depth in CIFAR_DEPTHS:
        return test_inputs(dataset("builtin"), SIGNAL_BATCH["cifar"])  # normalised as the trainer feeds them
    names = list(sample_images())[: SIGNAL_BATCH["imagenet"]]
    x = torch.cat([preprocess(load_sample(n).image, for_input((224, 224))) for n in names])
    return x, torch.arange(len(names))


@st.cache_data(max_entries=32, show_spinner=False)
def signal_profiles(depth: int, batchnorm: bool) -> dict[str, SignalProfile]:
    x, y = _batch(depth)
    return compare_at_init(depth, x, y, batchnorm=batchnorm, seed=0)


def _gradient_words(name: str, prof: SignalProfile) -> str:
    r = prof.grad_ratio
    if r < 0.01:
        return f"{name}'s gradient **vanishes**: at the first conv it is {1 / r:,.0f}× smaller than at the last"
    if r < 0.1:
        return (f"{name}'s gradient **shrinks** towards the input: {1 / r:,.0f}× smaller at the first conv "
                "than at the last")
    if r > 10:
        return f"{name}'s gradient **grows** towards the input: {r:,.0f}× larger at the first conv than at the last"
    return f"{name}'s gradient **stays level**: first and last conv are within a factor of {max(r, 1 / r):.1f}"


def describe_gradient(depth: int, batchnorm: bool, profiles: dict[str, SignalProfile]) -> str:
    """Words that say what the chart shows, for this setting (computed from the numbers, never assumed)."""
    plain, res = profiles["plain"], profiles["residual"]
    lines = [
        f"- {_gradient_words(f'plain-{depth}', plain)}.",
        f"- {_gradient_words(f'ResNet-{depth}', res)}.",
    ]
    plain_vanishes = plain.grad_ratio < 0.01
    if batchnorm and not plain_vanishes:
        lines.append(
            "- So with batch normalisation the plain network's trouble is **not** vanishing gradients, as the "
            "paper argues (§4.1: BN ensures \"healthy norms\"): its deeper layers still receive a signal, yet it "
            "trains worse (the race below). The paper calls it an optimisation difficulty."
        )
    elif plain_vanishes:
        lines.append(
            "- Here the plain network's gradient does vanish"
            + (" (no batch normalisation)" if not batchnorm else "")
            + ": its first layers barely learn. The shortcuts carry the gradient straight back to them."
        )
    if not batchnorm:
        f_plain, f_res = plain.forward_ratio, res.forward_ratio
        lines.append(
            f"- Forward, without BN the plain net's signal changes by {f_plain:.2g}× from the first conv to the last, "
            f"the residual net's by {f_res:.2g}×: each shortcut adds its input back, so the residual signal cannot "
            "die out (it grows instead, which is why the paper keeps BN)."
        )
    return "\n".join(lines)


def start_race(racers: dict[str, ResNetConfig], data: Dataset, epochs: int, seconds: float) -> None:
    cfg = RACE_RECIPES[data.name].with_(epochs=epochs, max_seconds=seconds)

    job = job_runner().submit(owner(), RaceJob(tuple(racers.items()), data.name, cfg),
                              label="race: " + " vs ".join(racers), max_seconds=seconds,
                              meta={"data": data.name, "seed": cfg.seed})  # what its twins' analyses need
    st.session_state.setdefault(K.LAB_RACES, []).append((tuple(racers), job.id))


def race_runs() -> list[tuple[tuple[str, ...], Job]]:
    r = job_runner()
    return [(names, job) for names, job_id in st.session_state.get(K.LAB_RACES, []) if (job := r.get(job_id))]

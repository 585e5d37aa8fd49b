"""The training page's plumbing: the shared job runner, the cached datasets, this session's runs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from resnet_core.config import ResNetConfig
from resnet_core.data import Dataset, load_dataset
from resnet_core.jobs import Job, JobContext, JobRunner
from resnet_core.settings import LIMITS
from resnet_core.training import Progress, TrainConfig, Trainer, TrainResult
from ui import state as K


@st.cache_resource
def job_runner() -> JobRunner:
    """One runner for the whole server: every session's jobs share its queue and its device."""
    return JobRunner(workers=LIMITS.train_workers, max_queue=LIMITS.train_queue,
                     max_seconds=LIMITS.train_max_seconds, name="train")


@st.cache_resource(max_entries=3, show_spinner=False)
def dataset(name: str) -> Dataset:
    """Datasets are read-only tensors, shared by every session (never keyed on user input)."""
    return load_dataset(name, download=False)


def download_dataset(name: str, on_progress: Callable[[int, int | None], None]) -> None:
    load_dataset(name, download=True, on_progress=on_progress)


def owner() -> str:
    if K.OWNER not in st.session_state:
        st.session_state[K.OWNER] = uuid.uuid4().hex
    return str(st.session_state[K.OWNER])


@dataclass(frozen=True)
class Run:
    """One of this session's training runs."""

    job_id: int
    label: str
    model_cfg: ResNetConfig
    train_cfg: TrainConfig
    data_name: str


@dataclass(frozen=True)
class TrainedModel:
    """A model trained in this session, as the feature-maps page needs it."""

    job_id: int
    label: str
    config: ResNetConfig
    state: dict[str, torch.Tensor]
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]


def start(model_cfg: ResNetConfig, data: Dataset, train_cfg: TrainConfig, label: str) -> Run:
    def fn(ctx: JobContext) -> TrainResult:
        trainer = Trainer(model_cfg, data, train_cfg, on_progress=ctx.report, should_stop=ctx.should_stop)
        return trainer.run()

    job = job_runner().submit(owner(), fn, label=label)
    run = Run(job.id, label, model_cfg, train_cfg, data.name)
    st.session_state.setdefault(K.TRAIN_JOBS, []).append(run)
    return run


def runs() -> list[tuple[Run, Job]]:
    """This session's runs whose jobs the runner still knows, oldest first."""
    r = job_runner()
    return [(run, job) for run in st.session_state.get(K.TRAIN_JOBS, []) if (job := r.get(run.job_id)) is not None]


def smooth(values: list[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average with bias correction (a flat start, not one that climbs from zero)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight**i))
    return out


def curves(progress: list[Progress], earlier: list[tuple[str, list[Progress]]] = ()) -> go.Figure:  # type: ignore[assignment]
    steps = [p for p in progress if p.kind == "step" and p.loss is not None]
    epochs = [p for p in progress if p.kind == "epoch"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Training loss (smoothed)", "Accuracy per epoch",
                                                         "Learning rate"))
    if steps:
        xs = [p.step for p in steps]
        fig.add_scatter(x=xs, y=[p.loss for p in steps], mode="lines", line=dict(color="#cbd5e1", width=1),
                        name="loss", row=1, col=1, showlegend=False)
        fig.add_scatter(x=xs, y=smooth([float(p.loss or 0.0) for p in steps]), mode="lines",
                        line=dict(color="#c2410c", width=2), name="loss (smoothed)", row=1, col=1)
        fig.add_scatter(x=xs, y=[p.lr for p in steps], mode="lines", line=dict(color="#0ea5e9"), name="lr",
                        row=1, col=3, showlegend=False)
    for name, past in earlier:
        past_epochs = [p for p in past if p.kind == "epoch"]
        fig.add_scatter(x=[p.epoch for p in past_epochs], y=[p.test_acc for p in past_epochs], mode="lines",
                        line=dict(dash="dot", width=1), name=f"{name}: test", row=1, col=2, opacity=0.6)
    if epochs:
        ex = [p.epoch for p in epochs]
        fig.add_scatter(x=ex, y=[p.train_acc for p in epochs], mode="lines+markers", name="train accuracy",
                        line=dict(color="#10b981"), row=1, col=2)
        fig.add_scatter(x=ex, y=[p.test_acc for p in epochs], mode="lines+markers", name="test accuracy",
                        line=dict(color="#6366f1"), row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=3)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=2)
    fig.update_layout(height=330, margin=dict(t=40, b=10, l=10, r=10), legend=dict(orientation="h", y=-0.25))
    return fig

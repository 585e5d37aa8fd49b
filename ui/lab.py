"""The residual lab's plumbing: cached signal measurements, the words that describe them, races as jobs and records."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
import torch

from resnet_core.config import ResNetConfig
from resnet_core.data import Dataset
from resnet_core.export import to_safetensors
from resnet_core.images import load_sample, sample_images
from resnet_core.lab import CIFAR_DEPTHS, RaceReport, SignalProfile, compare_at_init
from resnet_core.preprocess import for_input, preprocess
from resnet_core.residuals import test_inputs
from resnet_core.train import RACE_RECIPES
from server.jobs import Job, QueueFull
from server.races import RaceMeta, load_curves, load_meta, load_model, model_file, save_end, save_meta
from server.runs import UNFINISHED, RunRecord, is_run_id, new_run_id
from server.work import RaceJob
from ui import state as K
from ui.training import RUN_PARAM, LinkedRun, dataset, job_runner, owner, run_store, take_linked

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


@dataclass(frozen=True)
class LabRace:
    """A race the lab shows: through its job while a queue holds it, from its record on disk after that (a link
    opened after the job was dropped or the server restarted)."""

    meta: RaceMeta
    job: Job | None
    record: RunRecord | None = None  # read when there is no job

    @property
    def finished(self) -> bool:
        return self.job.state.finished if self.job is not None else True

    @property
    def error(self) -> str | None:
        if self.job is not None:
            return self.job.error
        return self.record.error if self.record is not None else None

    @property
    def trained(self) -> tuple[str, ...]:
        """The racers whose trained weights there are (a finished race's)."""
        if self.job is not None:
            return tuple(n for n in self.meta.names if n in (self.job.result or {})) if self.finished else ()
        store = run_store()
        return tuple(n for n in self.meta.names if store.has(self.meta.run_id, model_file(n)))

    def reports(self) -> list[RaceReport]:
        return self.job.progress() if self.job is not None else load_curves(run_store(), self.meta.run_id)

    def weights(self, racer: str) -> bytes | None:
        """A trained racer's weights as safetensors bytes."""
        if self.job is not None and racer in (self.job.result or {}):
            return to_safetensors(self.job.result[racer].model)
        return load_model(run_store(), self.meta.run_id, racer)


def start_race(racers: dict[str, ResNetConfig], data: Dataset, epochs: int, seconds: float) -> None:
    """Queue a race for this session. Its record follows it on disk (server/races.py), and the page's link names
    it: a reload, a shared link or a restart of the server finds the race, its twins and their analyses again."""
    cfg = RACE_RECIPES[data.name].with_(epochs=epochs, max_seconds=seconds)
    store, run_id = run_store(), new_run_id()
    meta = RaceMeta(run_id, tuple(racers), tuple(racers.values()), data.name, cfg.seed)
    record = RunRecord(run_id, "race: " + " vs ".join(racers), kind="race", epochs=epochs)

    def on_update(job: Job) -> None:
        if not job.state.finished:
            store.save(record.with_(state=job.state.value))

    def on_end(job: Job) -> None:
        results = job.result or {}
        save_end(store, meta, job.progress(), {name: to_safetensors(r.model) for name, r in results.items()})
        store.save(record.with_(state=job.state.value, error=job.error, has_weights=bool(results)))

    store.save(record)
    save_meta(store, meta)
    try:
        job = job_runner().submit(owner(), RaceJob(tuple(racers.items()), data.name, cfg), label=record.label,
                                  max_seconds=seconds, meta=meta, tag=run_id, on_update=on_update, on_end=on_end)
    except QueueFull:
        store.delete(run_id)
        raise
    st.session_state.setdefault(K.LAB_RACES, []).append((run_id, job.id))
    st.query_params[RUN_PARAM] = run_id


def lab_races() -> list[LabRace]:
    """This session's races, oldest first: those a queue still holds, and those only their records tell of."""
    runner, store, out = job_runner(), run_store(), []
    for run_id, job_id in st.session_state.get(K.LAB_RACES, []):
        job = runner.get(job_id) if job_id is not None else None
        if job is not None and isinstance(job.meta, RaceMeta):
            out.append(LabRace(job.meta, job))
        elif (meta := load_meta(store, run_id)) is not None:
            out.append(LabRace(meta, None, store.load(run_id)))
    return out


def linked_race() -> LinkedRun | None:
    """The race named by this page's link (?run=...) when this session does not hold it: taken into this session
    (its job, or its record once no queue holds it), or what the disk says of it when it cannot be shown."""
    run_id = st.query_params.get(RUN_PARAM)
    held = st.session_state.get(K.LAB_RACES, [])
    if not is_run_id(run_id) or any(r == run_id for r, _ in held):
        return None
    if (job := take_linked(run_id, RaceMeta)) is not None:
        st.session_state[K.LAB_RACES] = [*held, (run_id, job.id)]
        return None
    store = run_store()
    record = store.load(run_id)
    if record is not None and record.kind != "race":  # a training run's link, carried here from its page
        return None
    if record is None or record.state in UNFINISHED or load_meta(store, run_id) is None:
        return LinkedRun(run_id, record)
    st.session_state[K.LAB_RACES] = [*held, (run_id, None)]
    return None

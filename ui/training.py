"""The training page's plumbing: the shared job runner, the cached datasets, this session's runs."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import streamlit as st
import torch
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from resnet_core.config import ResNetConfig
from resnet_core.data import Dataset, load_dataset
from resnet_core.export import to_safetensors
from resnet_core.train import TrainConfig, training_flops
from resnet_core.train.estimate import RunPlan, device_flops_per_s, plan_run, probe_images_per_s
from server.jobs import Job, Jobs, QueueFull, connect, gpu_share
from server.runs import RunRecord, RunStore, new_run_id
from server.settings import ENGINE, LIMITS, RUNS_DIR
from server.work import TrainJob
from ui import state as K
from ui.janitor import session_alive

RUN_PARAM = "run"  # the query parameter that names this session's latest run


SHORTEST_RUN_S = 10  # the least a "stop after" control offers, unless the server's cap is lower


def seconds_control(widget: Callable[..., float], label: str, preferred: int, key: str) -> int:
    """A "stop after (seconds)" control (`widget`: a slider or number input, e.g. `cols[3].number_input`)
    from 10 s to the server's cap per job; with a cap of 10 s or less there is nothing to choose, so it says
    the cap instead."""
    cap = LIMITS.train_max_seconds
    if cap <= SHORTEST_RUN_S:
        st.caption(f"{label}: {cap} (the server's limit per run)")
        return cap
    return int(widget(label, SHORTEST_RUN_S, cap, min(preferred, cap), key=key))


def clock(t: float | None) -> str:
    """A job time (time.time()) as the server's wall clock, HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(t)) if t is not None else "–"


def seconds_between(a: float | None, b: float | None) -> float | None:
    return round(b - a, 1) if a is not None and b is not None else None


def timeline(job: Job) -> str:
    """When a job was queued, started and ended, and how long it waited and ran: a line under its result."""
    waited, ran = seconds_between(job.submitted_at, job.started_at), seconds_between(job.started_at, job.finished_at)
    if waited is None or ran is None:
        return f"Run {job.id} on this server: queued at {clock(job.submitted_at)}; it never started."
    return (f"Run {job.id} on this server: queued at {clock(job.submitted_at)}, waited {waited:.0f} s, started at "
            f"{clock(job.started_at)}, ran {ran:.0f} s, ended at {clock(job.finished_at)} (server time).")


@st.cache_resource
def job_runner() -> Jobs:
    """This server's handle on the queue that every session, and every replica on a cluster, shares: Ray is
    started here on first use (or joined, with RESNET_RAY_ADDRESS)."""
    connect(ENGINE.address, cpus=ENGINE.cpus, gpus=ENGINE.gpus)
    runner = Jobs(workers=LIMITS.train_workers, max_queue=LIMITS.train_queue, max_seconds=LIMITS.train_max_seconds,
                  ttl_seconds=LIMITS.job_ttl_seconds)
    threading.Thread(target=_watch_sessions, args=(runner,), name="train-sessions", daemon=True).start()
    return runner


@st.cache_resource
def run_store() -> RunStore:
    """Run records on disk: what a reload after a server restart can still tell."""
    return RunStore(RUNS_DIR, keep=LIMITS.runs_keep)


@st.cache_resource(max_entries=3, show_spinner=False)
def dataset(name: str) -> Dataset:
    """Datasets are read-only tensors, shared by every session (never keyed on user input)."""
    return load_dataset(name, download=False)


def owner() -> str:
    """This browser session's id: its jobs in the shared runner are filed under it."""
    if K.OWNER not in st.session_state:
        ctx = get_script_run_ctx()
        st.session_state[K.OWNER] = ctx.session_id if ctx is not None else uuid.uuid4().hex
    return str(st.session_state[K.OWNER])


def _watch_sessions(runner: Jobs, every_s: float = 1.0) -> None:
    """Stop and forget the jobs of sessions whose browser has been gone for LIMITS.abandon_seconds: a closed
    tab frees its place in the queue, and nothing of an ended session stays in memory. A short network
    blip (the browser reconnects to the same session) or a visit to another page costs nothing."""
    gone_since: dict[str, float] = {}
    while True:
        time.sleep(every_s)
        if not Runtime.exists():  # AppTest runs pages without a server: no sessions to watch
            continue
        now = time.monotonic()
        owners = runner.local_owners()
        for who in owners:
            if session_alive(who):
                gone_since.pop(who, None)
            elif now - gone_since.setdefault(who, now) >= LIMITS.abandon_seconds:
                runner.forget(who)
        for who in set(gone_since) - owners:
            del gone_since[who]


@dataclass(frozen=True)
class Run:
    """One of this session's training runs."""

    job_id: int
    run_id: str  # the run's record on disk, and its link (?run=...)
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

    @classmethod
    def of(cls, model: torch.nn.Module, data: Dataset, *, job_id: int, label: str) -> TrainedModel:
        """A trained model and the data it learned from, detached from the run (a copy of its weights)."""
        return cls(job_id=job_id, label=label, config=model.config,  # type: ignore[arg-type]
                   state={k: v.detach().clone() for k, v in model.state_dict().items()}, classes=data.classes,
                   mean=data.mean, std=data.std, input_size=data.input_size)


def run_key(model_cfg: ResNetConfig, data_name: str, train_cfg: TrainConfig) -> str:
    """What makes two runs the same run: model, data, recipe (limits included) and seed."""
    return repr((model_cfg, data_name, train_cfg))


def device_share(model_cfg: ResNetConfig, data: Dataset, train_cfg: TrainConfig) -> float | None:
    """The fraction of a GPU a run asks for, from its training memory at its batch size (None without a GPU here:
    every run takes one of the node's RESNET_TRAIN_WORKERS slots)."""
    if not torch.cuda.is_available():
        return None
    from resnet_core.analysis import analyze

    need = analyze(model_cfg, input_size=data.input_size, batch_size=train_cfg.batch_size).memory.total_bytes
    return gpu_share(need, torch.cuda.get_device_properties(0).total_memory, LIMITS.train_workers)


def start(model_cfg: ResNetConfig, data: Dataset, train_cfg: TrainConfig, label: str, *,
          forward_flops: int | None = None, expected_s: float | None = None) -> Run:
    """Queue a training run for this session, or follow the identical run already queued or running (a class
    pressing Start on the same defaults costs one run). Its record on disk follows it from "queued" to its end.
    `forward_flops`: the analysis's FLOPs per image at the data's size; `expected_s`: the plan's time."""
    store, run_id = run_store(), new_run_id()
    record = RunRecord(run_id, label, state="queued", epochs=train_cfg.epochs)
    run = Run(0, run_id, label, model_cfg, train_cfg, data.name)

    def on_update(job: Job) -> None:  # on this server's refresh thread: one small file write per epoch
        nonlocal record
        m = job.milestone or {}
        record = record.with_(state=job.state.value, epoch=m.get("epoch", record.epoch),
                              step=m.get("step", record.step), total_steps=m.get("total_steps", record.total_steps),
                              test_accuracy=m.get("test_acc", record.test_accuracy))
        if not job.state.finished:
            store.save(record)

    def on_end(job: Job) -> None:
        result = job.result
        if result is not None:
            store.save_weights(run_id, to_safetensors(result.model))  # first: a record that says so has them
        store.save(record.with_(state=job.state.value, error=job.error, has_weights=result is not None,
                                test_accuracy=result.test_accuracy if result is not None else record.test_accuracy))

    store.save(record)
    try:
        job = job_runner().submit(
            owner(), TrainJob(model_cfg, data.name, train_cfg, forward_flops), label=label, meta=run,
            key=run_key(model_cfg, data.name, train_cfg), tag=run_id, share=device_share(model_cfg, data, train_cfg),
            expected_s=expected_s, on_update=on_update, on_end=on_end)
    except QueueFull:
        store.delete(run_id)
        raise
    if job.tag != run_id:  # it follows an identical run: that run's record and link are the ones to keep
        store.delete(run_id)
    run = replace(job.meta, job_id=job.id)
    st.session_state.setdefault(K.TRAIN_JOBS, []).append(run)
    st.query_params[RUN_PARAM] = run.run_id  # a reload, even after a server restart, finds the run again
    return run


@dataclass(frozen=True)
class LinkedRun:
    """A run named by the page's link that this session does not hold."""

    run_id: str
    record: RunRecord | None  # None: this server knows no such run (never, or cleaned up since)


def linked_run() -> LinkedRun | None:
    """The training run named by this page's link (?run=...) when this session does not hold it. A run still in
    the queue or its results (on any replica of the app) is taken into this session and None is returned (see
    `take_linked`). A run that is no longer there is what the disk says of it."""
    run_id = st.query_params.get(RUN_PARAM)
    if not run_id or any(r.run_id == run_id for r in st.session_state.get(K.TRAIN_JOBS, [])):
        return None
    if (job := take_linked(run_id, Run)) is not None:
        st.session_state.setdefault(K.TRAIN_JOBS, []).append(replace(job.meta, job_id=job.id))
        return None
    record = run_store().load(run_id)
    if record is not None and record.kind != "train":  # the lab's race, its link carried here: not this page's
        return None
    return LinkedRun(run_id, record)


def take_linked(run_id: str, meta_type: type) -> Job | None:
    """The job a link names (its tag, on any replica of the app) when its meta is a `meta_type`, taken into this
    session: adopted when its owner was a session of this server that is gone (a reload), followed otherwise (a
    shared link). None when no queue holds it any more."""
    runner = job_runner()
    job = runner.find(run_id)
    if job is None or not isinstance(job.meta, meta_type):
        return None
    reload = job.owner in runner.local_owners() and not session_alive(job.owner)
    return runner.adopt(job.id, owner()) if reload else runner.follow(job.id, owner())


def rerun_page_once_finished(job: Job, shown_key: str) -> None:
    """For a live fragment: once `job` has finished, rerun the whole page, whose parts outside the fragment
    depend on it. The whole-page run that shows the finished job sets `st.session_state[shown_key] = job.id`;
    until then every poll asks again (under load a whole-page rerun asked for from a fragment can be lost).
    Asked from fragment reruns only: asked from the whole-page run itself, it would rerun in a loop."""
    ctx = get_script_run_ctx()
    in_fragment_rerun = ctx is not None and bool(ctx.fragment_ids_this_run)
    if job.state.finished and st.session_state.get(shown_key) != job.id and in_fragment_rerun:
        st.rerun(scope="app")


def forget_run(run: Run) -> None:
    """Take a run off this session's list (one it followed and left)."""
    st.session_state[K.TRAIN_JOBS] = [r for r in st.session_state.get(K.TRAIN_JOBS, []) if r != run]


def runs() -> list[tuple[Run, Job]]:
    """This session's runs whose jobs the runner still knows, oldest first."""
    r = job_runner()
    return [(run, job) for run in st.session_state.get(K.TRAIN_JOBS, []) if (job := r.get(run.job_id)) is not None]


# ----------------------------------------------------------------------------------------------
# What a run will do, before Start.

PROBE_MAX_STEP_S = 1.5  # a model whose step would take longer than this (from FLOPs) is planned from FLOPs alone


@st.cache_resource(show_spinner=False)
def device_rate(device: str) -> float:
    """FLOP/s this server's device reaches training ResNet-20: measured once per server."""
    return device_flops_per_s(device)


@st.cache_data(max_entries=64, show_spinner=False)
def measured_rate(model_cfg: ResNetConfig, data_name: str, train_cfg: TrainConfig, forward_flops: int) -> float:
    """Training images per second of this model with this recipe on this server's device: a short probe."""
    return probe_images_per_s(model_cfg, dataset(data_name), train_cfg, forward_flops_per_image=forward_flops)


def run_plan(model_cfg: ResNetConfig, data: Dataset, train_cfg: TrainConfig, forward_flops: int) -> RunPlan:
    """The plan of a run: from a probe of the model when a few steps are quick, from FLOPs otherwise."""
    flops = training_flops(forward_flops)
    rate = device_rate(train_cfg.device)
    measured = flops * train_cfg.batch_size / rate <= PROBE_MAX_STEP_S
    # The same speed whatever the epochs, learning rate, limits and seed: one probe for all of them.
    probe_cfg = train_cfg.with_(epochs=1, warmup_epochs=0.0, lr=1e-3, max_seconds=None, max_steps=None, seed=0)
    ips = measured_rate(model_cfg, data.name, probe_cfg, forward_flops) if measured else rate / flops
    return plan_run(n_train=len(data.y_train), input_size=data.input_size,
                    cfg=train_cfg, images_per_s=ips, measured=measured)

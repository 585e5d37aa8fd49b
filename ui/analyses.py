"""Why residuals work, part 2: the papers' analyses on the twins a finished race trained, each a job on the queue.

A finished race holds every racer's trained model (in its job, then in its record on disk); an analysis job gets a
plain/residual pair of one depth (weights as safetensors bytes), measures it in a worker (resnet_core.residuals)
and returns what it measured, which is kept with the race's record (server/races.py).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from resnet_core.residuals import (
    AnalysisProgress,
    say_erf,
    say_landscape,
    say_lesion,
    say_responses,
    say_shattered,
)
from resnet_core.train.device import resolve_device
from server.jobs import Job, QueueFull
from server.races import load_analysis, save_analysis
from server.work import AnalysisJob
from ui import charts
from ui import state as K
from ui.lab import LabRace
from ui.training import job_runner, owner, rerun_page_once_finished, run_store

# What each analysis shows, why, and where the paper shows it (the tab's title, then its why-text).
ABOUT = {
    "responses": ("Layer responses",
                  "He et al. (2015, §4.2 and Fig. 7) measured the standard deviation of each layer's output after "
                  "its BN: if a block learns a small correction to the identity, its branch responds less than the "
                  "same layer of a plain net, which must carry the whole signal."),
    "lesion": ("Lesion study",
               "Veit et al. (2016, Fig. 3 and 5) deleted blocks of a trained ResNet at test time, the branch set to "
               "zero and the shortcut kept: the error rises smoothly, because the net behaves like an ensemble of "
               "paths of many lengths. Deleting one layer of a plain net cuts its only path."),
    "landscape": ("Loss landscape",
                  "Li et al. (2018, Fig. 5) drew the loss around the trained weights along two random directions "
                  "scaled filter by filter to the weights' own norms, so that two nets compare: without shortcuts "
                  "a deep net's surface is chaotic, with them it looks like a bowl."),
    "erf": ("Effective receptive field",
            "Luo et al. (2016) measured how much each input pixel moves one output unit (its gradient), averaged "
            "over images: the effective receptive field is a fraction of the theoretical one the layer table "
            "gives (dashed), and grows with training."),
    "shattered": ("Shattered gradients",
                  "Balduzzi et al. (2017, Fig. 1-3) followed the gradient of a net's output with respect to its input "
                  "as the input moves a little at a time: in a deep plain net the gradients of neighbouring inputs are "
                  "almost unrelated, like white noise (they \"shatter\"), which makes gradient descent blind; the "
                  "shortcuts keep them correlated. Here the input moves along a line from one test image to another."),
}
STEPS = {"cpu": 11, "cuda": 21}  # the loss surface's points per side: each twin about a minute on a 2-core CPU


def pairs(racers: tuple[str, ...]) -> list[int]:
    """The depths at which the race trained both twins."""
    return sorted({int(n.split("-")[1]) for n in racers if f"plain-{n.split('-')[1]}" in racers
                   and f"ResNet-{n.split('-')[1]}" in racers})


def twins_of(depth: int) -> tuple[str, str]:
    return f"plain-{depth}", f"ResNet-{depth}"


def submit(analysis: str, race: LabRace, depth: int) -> None:
    """Queue one analysis of the pair of `depth` that `race` trained, on its data, from its seed; what it measures
    is kept with the race's record (its link shows it again)."""
    meta, names = race.meta, twins_of(depth)
    pair = tuple((name, cfg, race.weights(name)) for name, cfg in zip(meta.names, meta.configs) if name in names)
    if len(pair) != 2 or any(w is None for _, _, w in pair):
        raise FileNotFoundError("The trained twins of this race are no longer on this server.")
    store = run_store()

    def on_end(job: Job) -> None:
        if job.result is not None and set(names) <= set(job.result):
            save_analysis(store, meta.run_id, depth, analysis, job.result)

    steps = STEPS["cuda" if resolve_device("auto").type == "cuda" else "cpu"]
    job = job_runner().submit(owner(), AnalysisJob(analysis, pair, meta.data, meta.seed, steps=steps),  # type: ignore[arg-type]
                              label=f"{ABOUT[analysis][0]}: {names[0]} vs {names[1]}", on_end=on_end)
    st.session_state.setdefault(K.LAB_ANALYSES, {})[(meta.run_id, depth, analysis)] = job.id


def job_of(race: LabRace, depth: int, analysis: str) -> Job | None:
    job_id = st.session_state.get(K.LAB_ANALYSES, {}).get((race.meta.run_id, depth, analysis))
    return job_runner().get(job_id) if job_id is not None else None


@st.fragment(run_every=1.0)
def _progress(race: LabRace, depth: int, analysis: str, shown_key: str) -> None:
    """While the analysis waits or runs: its progress, once a second; once it has ended, the whole page again."""
    job = job_of(race, depth, analysis)
    if job is None:
        return
    rerun_page_once_finished(job, shown_key)
    reports: list[AnalysisProgress] = job.progress()
    if reports:
        last = reports[-1]
        st.progress(last.done / max(1, last.total),
                    text=f"{ABOUT[analysis][0]} of {last.model}: {last.done} of {last.total}")
    else:
        st.caption("Waiting for a worker…" if job.state.value == "queued" else "Starting…")


def show(analysis: str, race: LabRace, depth: int) -> None:
    """One analysis's tab: its why-text, a button that measures it, progress while it runs (a fragment polling once
    a second, which reruns the page when the job has ended), then the figure and the sentence its numbers make.
    What was measured on this race before (in this session or under its link) is shown until it is measured again."""
    st.caption(ABOUT[analysis][1])
    run_id = race.meta.run_id
    job = job_of(race, depth, analysis)
    kept = load_analysis(run_store(), run_id, depth, analysis) if job is None else None
    busy = job is not None and not job.state.finished
    label = "Measure again" if (job is not None and job.state.finished) or kept is not None else "Measure"
    if st.button(label, key=f"measure-{analysis}-{run_id}-{depth}", disabled=busy, icon=":material/science:"):
        try:
            submit(analysis, race, depth)
        except (QueueFull, FileNotFoundError) as e:
            st.session_state[f"{K.LAB_ERROR}.{analysis}"] = str(e)
        st.rerun()
    if error := st.session_state.pop(f"{K.LAB_ERROR}.{analysis}", None):
        st.error(error, icon=":material/block:")
    shown_key = f"{K.LAB_ANALYSIS_SHOWN}.{analysis}"
    if job is None:
        if kept is not None:
            st.caption("Measured earlier on this race and kept with it: its link shows it again.")
            draw(analysis, kept, depth, race.meta.classes)
        return
    if busy:
        _progress(race, depth, analysis, shown_key)
        return
    st.session_state[shown_key] = job.id  # this whole-page run shows it: its fragment stops asking for one
    if job.error:
        st.error(job.error, icon=":material/error:")
        return
    result: dict[str, Any] = job.result or {}
    if set(twins_of(depth)) - set(result):
        st.info("This analysis was stopped before it measured both twins.", icon=":material/stop_circle:")
        return
    draw(analysis, result, depth, race.meta.classes)


def draw(analysis: str, result: dict[str, Any], depth: int, classes: int) -> None:
    """The figure of what `analysis` measured on the twins of `depth`, and the sentence its numbers make."""
    names = twins_of(depth)
    plain, residual = result[names[0]], result[names[1]]
    if analysis == "responses":
        st.plotly_chart(charts.responses_chart(result), config={"displayModeBar": False})
        st.markdown(say_responses(plain, residual, names))
    elif analysis == "lesion":
        st.plotly_chart(charts.lesion_chart(result, 1 - 1 / classes), config={"displayModeBar": False})
        st.markdown(say_lesion(plain, residual, names, classes))
        st.plotly_chart(charts.path_length_chart(len(residual.blocks)), config={"displayModeBar": False})
        st.caption(f"Each of {names[1]}'s {len(residual.blocks)} blocks is passed or skipped, so it holds "
                   f"2^{len(residual.blocks)} paths, most of them half as deep as the net (Veit et al., Fig. 6).")
    elif analysis == "landscape":
        st.plotly_chart(charts.landscape_line_chart(result), config={"displayModeBar": False})
        three_d = st.toggle("3-D", key=f"landscape-3d-{depth}")
        st.plotly_chart(charts.landscape_surfaces(result, three_d=three_d), config={"displayModeBar": False})
        st.markdown(say_landscape(plain, residual, names))
    elif analysis == "erf":
        st.plotly_chart(charts.erf_chart(result), config={"displayModeBar": False})
        st.markdown(" ".join(say_erf(result[n], n) for n in names))
    else:
        st.plotly_chart(charts.shattered_chart(result), config={"displayModeBar": False})
        st.markdown(say_shattered(plain, residual, names))

"""Why residuals work, part 2: the papers' analyses on the twins a finished race trained, each a job on the queue.

The race's result holds every racer's trained model; an analysis job gets a plain/residual pair of one depth
(weights as safetensors bytes), measures it in a worker (resnet_core.residuals) and returns what it measured.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from safetensors.torch import save

from resnet_core.residuals import (
    AnalysisProgress,
    say_erf,
    say_landscape,
    say_lesion,
    say_responses,
)
from resnet_core.train.device import resolve_device
from server.jobs import Job, QueueFull
from server.work import AnalysisJob
from ui import charts
from ui import state as K
from ui.training import job_runner, owner, rerun_page_once_finished

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
}
STEPS = {"cpu": 11, "cuda": 21}  # the loss surface's points per side: each twin about a minute on a 2-core CPU


def pairs(racers: tuple[str, ...]) -> list[int]:
    """The depths at which the race trained both twins."""
    return sorted({int(n.split("-")[1]) for n in racers if f"plain-{n.split('-')[1]}" in racers
                   and f"ResNet-{n.split('-')[1]}" in racers})


def submit(analysis: str, race: Job, depth: int) -> None:
    """Queue one analysis of the pair of `depth` that `race` trained, on its data, from its seed."""
    pair = tuple((name, result.model.config, save(result.model.state_dict()))
                 for name, result in race.result.items() if name in (f"plain-{depth}", f"ResNet-{depth}"))
    steps = STEPS["cuda" if resolve_device("auto").type == "cuda" else "cpu"]
    job = job_runner().submit(owner(), AnalysisJob(analysis, pair, race.meta["data"], race.meta["seed"], steps=steps),
                              label=f"{ABOUT[analysis][0]}: plain-{depth} vs ResNet-{depth}")
    st.session_state.setdefault(K.LAB_ANALYSES, {})[(race.id, depth, analysis)] = job.id


def job_of(race: Job, depth: int, analysis: str) -> Job | None:
    job_id = st.session_state.get(K.LAB_ANALYSES, {}).get((race.id, depth, analysis))
    return job_runner().get(job_id) if job_id is not None else None


@st.fragment(run_every=1.0)
def _progress(race: Job, depth: int, analysis: str, shown_key: str) -> None:
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


def show(analysis: str, race: Job, depth: int, classes: int) -> None:
    """One analysis's tab: its why-text, a button that measures it, progress while it runs (a fragment polling once
    a second, which reruns the page when the job has ended), then the figure and the sentence its numbers make."""
    why = ABOUT[analysis][1]
    st.caption(why)
    job = job_of(race, depth, analysis)
    busy = job is not None and not job.state.finished
    label = "Measure again" if job is not None and job.state.finished else "Measure"
    if st.button(label, key=f"measure-{analysis}-{race.id}-{depth}", disabled=busy, icon=":material/science:"):
        try:
            submit(analysis, race, depth)
        except QueueFull as e:
            st.error(str(e), icon=":material/block:")
        st.rerun()
    shown_key = f"{K.LAB_ANALYSIS_SHOWN}.{analysis}"
    if job is None:
        return
    if busy:
        _progress(race, depth, analysis, shown_key)
        return
    st.session_state[shown_key] = job.id  # this whole-page run shows it: its fragment stops asking for one
    if job.error:
        st.error(job.error, icon=":material/error:")
        return
    result: dict[str, Any] = job.result or {}
    names = (f"plain-{depth}", f"ResNet-{depth}")
    if set(names) - set(result):
        st.info("This analysis was stopped before it measured both twins.", icon=":material/stop_circle:")
        return
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
        three_d = st.toggle("3-D", key=f"landscape-3d-{race.id}-{depth}")
        st.plotly_chart(charts.landscape_surfaces(result, three_d=three_d), config={"displayModeBar": False})
        st.markdown(say_landscape(plain, residual, names))
    else:
        st.plotly_chart(charts.erf_chart(result), config={"displayModeBar": False})
        st.markdown(" ".join(say_erf(result[n], n) for n in names))

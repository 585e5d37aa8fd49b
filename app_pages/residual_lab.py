"""Why residuals work: the degradation problem and its cure, measured live."""

from __future__ import annotations

import streamlit as st

from resnet_core.analysis import analyze
from resnet_core.data import DatasetUnavailable
from resnet_core.lab import CIFAR_DEPTHS, IMAGENET_DEPTHS, RaceReport, race_verdict, scaled, twins
from resnet_core.residuals import ANALYSES
from server.jobs import QueueFull
from server.settings import LIMITS
from ui import state as K
from ui.analyses import ABOUT, pairs, show
from ui.charts import race_chart, signal_chart
from ui.lab import (
    RACE_DATA_LABELS,
    RACE_RECIPES,
    describe_gradient,
    lab_races,
    linked_race,
    signal_profiles,
    start_race,
)
from ui.offline import NOT_HERE, datasets_note, missing_datasets, offer_dataset
from ui.training import clock, dataset, job_runner, rerun_page_once_finished, seconds_control

st.title("Why residuals work")
st.caption(
    "He et al. (2015) found that a deeper *plain* network trains worse than a shallower one, even on its own "
    "training set (the degradation problem, §4.1, Fig. 1), and that the same network with shortcuts does not. "
    "Measure it here."
)
ss = st.session_state

depth = st.segmented_control(
    "Depth", [*CIFAR_DEPTHS, *IMAGENET_DEPTHS], key=K.LAB_DEPTH, default=56, required=True,
    format_func=lambda d: f"{d} (CIFAR)" if d in CIFAR_DEPTHS else f"{d} (ImageNet)",
)
plain_cfg, res_cfg = twins(depth)
side = 32 if plain_cfg.stem == "cifar" else 224
p_rep = analyze(plain_cfg, input_size=(3, side, side))
r_rep = analyze(res_cfg, input_size=(3, side, side))
m = st.columns(3)
m[0].metric(f"plain-{depth} parameters", f"{p_rep.total_params:,}")
m[1].metric(f"ResNet-{depth} parameters", f"{r_rep.total_params:,}")
m[2].metric("Difference", f"{r_rep.total_params - p_rep.total_params:,}",
            help="Exactly the projection shortcuts' parameters; option A (zero-padding, the CIFAR nets) adds none")
st.caption(f"Same {p_rep.weighted_layers} weighted layers in both; the residual net adds only the shortcuts "
           f"(option {res_cfg.shortcut}).")

# --- signal at initialisation ---------------------------------------------------------------------
st.subheader("1 · The signal at initialisation")
bn = st.toggle("Batch normalisation", value=True, key=K.LAB_BN)
with st.spinner("Measuring a forward and a backward pass of both networks…"):
    profiles = signal_profiles(depth, bn)


st.plotly_chart(signal_chart(profiles, depth), config={"displayModeBar": False}, key="lab_signal")
st.markdown(describe_gradient(depth, bn, profiles))

# --- the race -------------------------------------------------------------------------------------
st.subheader("2 · The training race")
st.markdown(
    "Both networks train with the same recipe, data and seed, in turns, so their curves grow together. "
    "The paper's Fig. 1 and Fig. 6 show the shape to look for: the deeper **plain** net ends with the *higher* "
    "training loss, and the residual net of the same depth trains well."
)
c = st.columns(4)
width = c[0].select_slider("Width", [0.25, 0.5, 1.0], value=0.5, key=K.LAB_WIDTH,
                           format_func=lambda w: f"{w:g}× (16·{w:g} channels first)",
                           help="The paper's widths are 1×; smaller widths make the race fit a CPU")
with_shallow = c[1].toggle("With the 20-layer pair", value=True, key=K.LAB_SHALLOW,
                           help="plain-20 and ResNet-20 race too: the deeper plain net is worse than the shallow one")
epochs = c[2].number_input("Epochs", 1, LIMITS.train_max_epochs, 3, key=K.LAB_EPOCHS)
with c[3]:
    seconds = seconds_control(st.number_input, "Stop after (s)", 240, K.LAB_SECONDS)
missing = missing_datasets(tuple(RACE_RECIPES))
data_name = st.radio("Race on", tuple(RACE_RECIPES), key=K.LAB_DATA, horizontal=True, format_func=RACE_DATA_LABELS.get,
                     captions=[NOT_HERE if n in missing else "" for n in RACE_RECIPES],
                     help=datasets_note(missing) if missing else None)
try:
    data = dataset(data_name)
except DatasetUnavailable:  # not here (or a broken file there): the student's words, not the library's
    data = None
    offer_dataset(data_name, choice_key=K.LAB_DATA)
if (linked := linked_race()) is not None:  # a race's link that this page cannot show
    rec = linked.record
    if rec is None:
        st.warning("The race in this link is not on this server: races are kept for a while, then removed. "
                   "Start a new one below.", icon=":material/link_off:")
    elif rec.interrupted:
        st.warning(f"The {rec.label} was interrupted: the server restarted while it was {rec.state}. "
                   "No partial race is kept; start it again below.", icon=":material/restart_alt:")
    else:
        st.info(f"The {rec.label} is going on in another browser tab ({rec.state}). Reload this page when it has "
                "ended to see it and measure its twins.", icon=":material/group:")
races = lab_races()
running = any(not r.finished for r in races)
if races and not running and races[-1].job is not None:
    ss[K.LAB_SHOWN] = races[-1].job.id  # this run shows the latest race's end: Start is enabled again
if data is None:
    pass  # the message above says what to do; the built-in shapes are one click away
elif depth not in CIFAR_DEPTHS:
    st.info("The race runs the CIFAR-size nets on 32×32 images; pick 20–110 for it.", icon=":material/info:")
else:
    racers = {f"plain-{depth}": scaled(plain_cfg, width), f"ResNet-{depth}": scaled(res_cfg, width)}
    if with_shallow and depth != 20:
        p20, r20 = twins(20)
        racers = {"plain-20": scaled(p20, width), "ResNet-20": scaled(r20, width), **racers}
    b = st.columns([1, 1, 3])
    if b[0].button("Start the race", type="primary", disabled=running, icon=":material/flag:"):
        try:
            start_race(racers, data, int(epochs), float(seconds))
            ss.pop(K.LAB_ERROR, None)
        except QueueFull as e:
            ss[K.LAB_ERROR] = str(e)
        st.rerun()
    if ss.get(K.LAB_ERROR):
        st.error(ss[K.LAB_ERROR], icon=":material/block:")


# Once a second (a race reports about that often) while it is queued or running; a finished race's page stays still.
@st.fragment(run_every=1.0 if running else None)
def race_view() -> None:
    runs = lab_races()
    if not runs:
        return
    race = runs[-1]
    job, names = race.job, race.meta.names
    if job is not None:
        rerun_page_once_finished(job, K.LAB_SHOWN)  # "Start the race" is outside this fragment: enable it again
    reports: list[RaceReport] = race.reports()
    if job is not None and not job.state.finished:
        cols = st.columns([4, 1])
        place = job_runner().position(job.id)
        cols[0].markdown(f"**Waiting in the queue: place {place}**" if place else f"**Racing** {' vs '.join(names)}")
        if cols[1].button("Stop", icon=":material/stop:", key=f"stop-race-{job.id}"):
            job.stop()
    elif race.error:
        st.error(race.error, icon=":material/error:")
    elif job is None and race.record is not None:
        ended = {"done": "finished", "stopped": "was stopped"}.get(race.record.state, race.record.state)
        st.caption(f"From this page's link: the {race.record.label}, which {ended} at {clock(race.record.updated_at)} "
                   "(server time), read back with its curves and trained twins.")
    fig, final = race_chart(names, reports, race.meta.classes)
    st.plotly_chart(fig, config={"displayModeBar": False}, key="lab_race")
    if race.finished and final:
        said = "What you just measured." if job is not None else "What this race measured."
        st.markdown(f"**{said}** {race_verdict(final, race.meta.classes)}")


race_view()

# --- why: the papers' analyses on the twins the race trained ---------------------------------------------
st.subheader("3 · Why: what the papers measured, on your twins")
finished = [r for r in races if r.finished and r.trained]
if not finished or not (depths := pairs(finished[-1].trained)):
    st.info("Finish a race with a plain net and its residual twin first: these analyses measure the two models it "
            "trained.", icon=":material/science:")
else:
    race = finished[-1]
    depth_ = st.segmented_control("Twins", depths, key=K.LAB_PAIR, default=depths[-1], required=True,
                                  format_func=lambda d: f"plain-{d} | ResNet-{d}")
    tabs = st.tabs([ABOUT[a][0] for a in ANALYSES])
    for tab, analysis in zip(tabs, ANALYSES):
        with tab:
            show(analysis, race, depth_)

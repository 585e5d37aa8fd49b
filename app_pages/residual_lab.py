"""Why residuals work: the degradation problem and its cure, measured live."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from resnet_core.analysis import analyze
from resnet_core.data import DatasetUnavailable
from resnet_core.lab import CIFAR_DEPTHS, IMAGENET_DEPTHS, RaceReport, SignalProfile, scaled, twins
from server.jobs import QueueFull
from server.settings import LIMITS
from ui import state as K
from ui.lab import RACE_RECIPES, describe_gradient, race_runs, signal_profiles, start_race
from ui.training import dataset, download_with_progress, job_runner, rerun_page_once_finished, seconds_control, smooth

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


def profile_figure(profiles: dict[str, SignalProfile]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Forward: RMS of each conv's output",
                                                        "Backward: RMS of the loss gradient at each conv"))
    colours = {"plain": "#ea580c", "residual": "#2563eb"}
    for name, prof in profiles.items():
        label = f"plain-{depth}" if name == "plain" else f"ResNet-{depth}"
        x = list(range(1, len(prof.layers) + 1))
        for col, ys in ((1, prof.forward_rms), (2, prof.grad_rms)):
            fig.add_scatter(x=x, y=ys, customdata=prof.layers, mode="lines", name=label, legendgroup=name,
                            showlegend=col == 1, line=dict(color=colours[name]),
                            hovertemplate="%{customdata}: %{y:.3g}<extra>" + label + "</extra>", row=1, col=col)
    fig.update_yaxes(type="log")
    fig.update_xaxes(title_text="conv layer (input → output)")
    fig.update_layout(height=340, margin=dict(t=40, b=10, l=10, r=10), legend=dict(orientation="h", y=1.18))
    return fig


st.plotly_chart(profile_figure(profiles), config={"displayModeBar": False}, key="lab_signal")
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
with_shallow = c[1].toggle("Also plain-20 and ResNet-20", value=False, key=K.LAB_SHALLOW)
epochs = c[2].number_input("Epochs", 1, LIMITS.train_max_epochs, 3, key=K.LAB_EPOCHS)
with c[3]:
    seconds = seconds_control(st.number_input, "Stop after (s)", 240, K.LAB_SECONDS)
data_name = st.radio("Race on", tuple(RACE_RECIPES), key=K.LAB_DATA, horizontal=True,
                     format_func=lambda n: {"builtin": "the built-in shapes (offline, minutes on a CPU)",
                                            "cifar10": "CIFAR-10 (the paper's data and recipe; a GPU)"}[n])
try:
    data = dataset(data_name)
except DatasetUnavailable as e:
    data = None
    st.warning(str(e), icon=":material/wifi_off:")
    if st.button("Download CIFAR-10 (163 MB)", icon=":material/download:"):
        try:
            download_with_progress(data_name)
            st.rerun()
        except DatasetUnavailable as e2:
            st.error(str(e2), icon=":material/wifi_off:")
races = race_runs()
running = any(not job.state.finished for _, job in races)
if races and not running:
    ss[K.LAB_SHOWN] = races[-1][1].id  # this run shows the latest race's end: Start is enabled again
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


# Twice a second while a race is queued or running; a finished race's page stays still.
@st.fragment(run_every=0.5 if running else None)
def race_view() -> None:
    runs = race_runs()
    if not runs:
        return
    run, job = runs[-1]
    rerun_page_once_finished(job, K.LAB_SHOWN)  # "Start the race" is outside this fragment: enable it again
    reports: list[RaceReport] = job.progress()
    if not job.state.finished:
        cols = st.columns([4, 1])
        place = job_runner().position(job.id)
        cols[0].markdown(f"**Waiting in the queue: place {place}**" if place else f"**Racing** {' vs '.join(run)}")
        if cols[1].button("Stop", icon=":material/stop:", key=f"stop-race-{job.id}"):
            job.stop()
    elif job.error:
        st.error(job.error, icon=":material/error:")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss (smoothed)", "Test accuracy per epoch"))
    palette = ["#fdba74", "#93c5fd", "#ea580c", "#2563eb"]
    final: dict[str, float] = {}
    for i, name in enumerate(run):
        mine = [r.progress for r in reports if r.racer == name]
        steps = [p for p in mine if p.kind == "step" and p.loss is not None]
        epochs_ = [p for p in mine if p.kind == "epoch"]
        dash = "dot" if name.startswith("plain") else "solid"
        colour = palette[(i + (4 - len(run))) % 4]
        if steps:
            losses = smooth([float(p.loss) for p in steps])
            final[name] = losses[-1]
            fig.add_scatter(x=[p.step for p in steps], y=losses, mode="lines" if len(steps) > 1 else "markers",
                            name=name, legendgroup=name,
                            line=dict(color=colour, dash=dash), row=1, col=1)
        if epochs_:
            fig.add_scatter(x=[p.epoch for p in epochs_], y=[p.test_acc for p in epochs_], mode="lines+markers",
                            name=name, legendgroup=name, showlegend=False, line=dict(color=colour, dash=dash),
                            row=1, col=2)
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=2)
    fig.update_xaxes(title_text="step", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_layout(height=340, margin=dict(t=40, b=10, l=10, r=10), legend=dict(orientation="h", y=1.18))
    st.plotly_chart(fig, config={"displayModeBar": False}, key="lab_race")
    deepest = max(int(n.split("-")[1]) for n in run)
    plain, res = f"plain-{deepest}", f"ResNet-{deepest}"
    if job.state.finished and plain in final and res in final:
        worse = final[plain] > final[res]
        st.markdown(
            f"**What you just measured:** {plain} ended with a smoothed training loss of {final[plain]:.3f}, "
            f"{res} with {final[res]:.3f}. "
            + ("The plain network trains worse on its own training data, with the same layers: that is the "
               "degradation problem, and the shortcuts cure it (compare the paper's Fig. 6)." if worse else
               "This time the plain network was not behind; short, narrow races are noisy — train longer, "
               "or at full width on a GPU, to see the paper's gap.")
        )


race_view()

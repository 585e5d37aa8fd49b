"""Training demo: train the chosen ResNet for a few minutes, with live curves."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st

from resnet_core.analysis import analyze
from resnet_core.config import PRESETS
from resnet_core.data import DATASETS, DatasetUnavailable
from resnet_core.export import to_safetensors
from resnet_core.train import (
    default_recipe,
    expected_accuracy,
    expected_accuracy_at,
    resolve_device,
    scaled_lr,
    training_flops,
)
from resnet_core.train.verdict import describe_end, explain_accuracy
from resnet_core.units import fmt_count
from server.jobs import QueueFull
from server.runs import UNFINISHED
from server.settings import LIMITS
from ui import state as K
from ui.charts import accuracy_points, confusion_chart, curves
from ui.offline import DATASET_MEGABYTES, DATASET_TITLES, NOT_HERE, datasets_note, missing_datasets, offer_dataset
from ui.sidebar import choose_preset, current_selection
from ui.training import (
    TrainedModel,
    clock,
    dataset,
    forget_run,
    job_runner,
    linked_run,
    owner,
    rerun_page_once_finished,
    run_plan,
    run_store,
    runs,
    seconds_between,
    seconds_control,
    start,
    timeline,
)

OPTIMIZER_NAMES = {"sgd": "SGD with momentum", "adamw": "AdamW"}
DATA_LABELS = {
    "builtin": "Built-in shapes (offline, 10 classes, 32×32)",
    "cifar10": "CIFAR-10 (10 classes of photos, 32×32)",
    "mnist": "MNIST digits (28×28, grey)",
    "fashion_mnist": "Fashion-MNIST (clothes, 28×28, grey)",
}

sel = current_selection()
ss = st.session_state
st.title("Training")
device = resolve_device("auto")
st.caption(
    f"Train {sel.label} on a small dataset and watch it learn. Runs go through a queue shared by everyone on "
    f"this server; device: {device}."
)

# --- what to train --------------------------------------------------------------------------------
c1, c2 = st.columns([1, 1], gap="large")
with c1:
    missing = missing_datasets(DATASETS)
    data_name = st.selectbox(
        "Dataset", DATASETS, key=K.TRAIN_DATA, help=datasets_note(missing) if missing else None,
        format_func=lambda n: f"{DATASET_TITLES[n]} · {NOT_HERE} ({DATASET_MEGABYTES[n]} MB download)"
        if n in missing else DATA_LABELS[n],
    )
    try:
        data = dataset(data_name)
    except DatasetUnavailable:  # not here (or a broken file there): the student's words, not the library's
        offer_dataset(data_name, choice_key=K.TRAIN_DATA)
        st.stop()
    if missing:
        st.caption(datasets_note(missing))
    model_cfg = sel.config.with_(in_channels=data.input_size[0], num_classes=len(data.classes))
    recipe = default_recipe(model_cfg, data_name)
    changed = [f"{theirs:,} {what} instead of the model's {mine:,}" for what, mine, theirs in (
        ("input channels", sel.config.in_channels, model_cfg.in_channels),
        ("classes", sel.config.num_classes, model_cfg.num_classes)) if mine != theirs]
    if changed:  # said, never done silently: the first conv and the last layer follow the data
        st.info(f"Trained as this dataset needs: {' and '.join(changed)}; every other layer is as in the sidebar.",
                icon=":material/tune:")
    st.caption(
        f"{len(data.y_train):,} training and {len(data.y_test):,} test images of "
        f"{'×'.join(map(str, data.input_size))}; classes: {', '.join(data.classes)}."
    )
with c2:
    cols = st.columns(2)
    epochs = cols[0].number_input("Epochs", 1, LIMITS.train_max_epochs, min(recipe.epochs, LIMITS.train_max_epochs),
                                  key=K.TRAIN_EPOCHS)
    batch = int(cols[1].select_slider("Batch size", [32, 64, 128, 256, 512], recipe.batch_size, key=K.TRAIN_BATCH))
    # The learning rate follows the batch size until the student sets one: one widget per batch size.
    lr = cols[0].number_input("Learning rate", 0.0001, 2.0, scaled_lr(recipe, batch), format="%.4f",
                              key=f"{K.TRAIN_LR}.{batch}",
                              help=f"{OPTIMIZER_NAMES[recipe.optimizer]}; the default follows the batch size")
    seed = cols[1].number_input("Seed", 0, 2**31 - 1, 0, key=K.TRAIN_SEED)
    seconds = seconds_control(st.slider, "Stop after (seconds)", 120, K.TRAIN_SECONDS)
    report = analyze(model_cfg, input_size=data.input_size)
    st.caption(
        f"{sel.label} on {'×'.join(map(str, data.input_size))}: {fmt_count(report.total_params, 'parameters')}, "
        f"{fmt_count(training_flops(report.total_flops), 'FLOPs')} per training image "
        "(forward + backward ≈ 3 × forward). "
        f"Recipe: {OPTIMIZER_NAMES[recipe.optimizer]} with a {recipe.warmup_epochs:g}-epoch warm-up and a cosine decay"
        + (", each residual branch's last BN starting at zero" if recipe.zero_init_residual and model_cfg.residual
           else "")
        + (f". Expected on CIFAR-10 with this recipe: {expected_accuracy(int(epochs))}."
           if data_name == "cifar10" and recipe.optimizer == "sgd" else ".")
    )

# --- a run named by the link that this session does not hold (a reload, a restart) -------------------
if (linked := linked_run()) is not None:
    rec = linked.record
    if rec is None:
        st.warning("The run in this link is not on this server: runs are kept for a while, then removed. "
                   "Start a new one above.", icon=":material/link_off:")
    elif rec.interrupted:
        at = f", after epoch {rec.epoch} of {rec.epochs}" if rec.epoch else ""
        st.warning(f"The run {rec.label} was interrupted: the server restarted while it was {rec.state}{at}. "
                   "No partial checkpoint is kept; start it again.", icon=":material/restart_alt:")
    elif rec.state in UNFINISHED:  # a shared link to a run that its owner's open tab is following
        st.info(f"The run {rec.label} is going on in another browser tab ({rec.state}, {rec.epoch} of {rec.epochs} "
                "epochs done). Reload this page when it has ended to see how it did.", icon=":material/group:")
    else:
        acc = f", test accuracy {rec.test_accuracy:.1%}" if rec.test_accuracy is not None else ""
        st.info(f"The run {rec.label} has ended ({rec.state}{acc}); its curves are no longer on this server."
                + (f" {rec.error}" if rec.error else ""), icon=":material/history:")
        if rec.has_weights and (weights := run_store().weights(rec.id)) is not None:
            st.download_button("Download its trained weights (safetensors)", weights, file_name="trained.safetensors",
                               mime="application/octet-stream", on_click="ignore", icon=":material/download:")

train_cfg = recipe.with_(epochs=int(epochs), batch_size=batch, lr=float(lr), seed=int(seed),
                         max_seconds=float(seconds))
mine = runs()
busy = any(not job.state.finished for _, job in mine)
plan = run_plan(model_cfg, data, train_cfg, report.total_flops)
start_col, plan_col = st.columns([1, 3], gap="large")
if start_col.button("Start training", type="primary", disabled=busy, icon=":material/play_arrow:"):
    try:
        start(model_cfg, data, train_cfg, f"{sel.label} · {data_name} · {epochs} ep · seed {seed}",
              forward_flops=report.total_flops, expected_s=min(plan.seconds, float(seconds)))
        ss.pop(K.TRAIN_ERROR, None)
    except QueueFull as e:
        ss[K.TRAIN_ERROR] = str(e)
    except ValueError as e:  # a setting the trainer refuses (e.g. a batch larger than the dataset)
        ss[K.TRAIN_ERROR] = str(e)
    st.rerun()
with plan_col:
    size = "×".join(map(str, data.input_size[1:]))
    sidebar = "×".join(map(str, sel.input_size[1:]))
    how = "measured: a few training steps of this model just now" if plan.measured else (
        "from its FLOPs at the rate this device trains ResNet-20; too large to time quickly")
    reach = (f"all {plan.epochs} epochs ({plan.total_steps:,} steps) take about {plan.seconds:,.0f} s"
             if not plan.capped else
             f"the {seconds} s limit reaches about {plan.reach_epochs:.2g} of {plan.epochs} epochs "
             f"(step {plan.reach_steps:,} of {plan.total_steps:,})")
    expect = expected_accuracy_at(data_name, plan.reach_epochs, preset=sel.preset)
    st.markdown(
        f"**Before you start.** Training uses the dataset's own {size} images"
        + (f" (the sidebar's {sidebar} input is not used here)" if sidebar != size else "")
        + f". About **{plan.images_per_s:,.0f} images/s** on {device} ({how}): **{plan.seconds_per_epoch:,.0f} s "
        f"per epoch** of {plan.steps_per_epoch:,} steps; {reach}."
        + (f" Expect **{expect}** test accuracy there (measured on this recipe; a rough guide)." if expect
           else "")
    )
if plan.capped:  # the time limit cuts the run short: say what that costs, and what would learn in the budget
    alternative = "resnet20"
    alt_cfg = PRESETS[alternative].with_(in_channels=data.input_size[0], num_classes=len(data.classes))
    alt_recipe = default_recipe(alt_cfg, data_name).with_(max_seconds=float(seconds))
    alt = run_plan(alt_cfg, data, alt_recipe, analyze(alt_cfg, input_size=data.input_size).total_flops)
    alt_expect = expected_accuracy_at(data_name, alt.reach_epochs, preset=alternative)
    if plan.reach_epochs < 1:
        cost = (f"In {seconds} s {sel.label} gets through only {plan.reach_epochs:.2g} of an epoch on {device}: "
                + (f"it will most likely end near chance ({1 / len(data.classes):.0%}), still finding the signal."
                   if plan.reach_epochs < 0.5 else "it stops before its first full pass over the data."))
    else:
        cost = (f"The {seconds} s limit stops {sel.label} at about {plan.reach_epochs:.2g} of {plan.epochs} epochs "
                f"on {device}" + (f": expect {expect}." if expect else "."))
    offer = (f" ResNet-20 trains at about {alt.images_per_s:,.0f} images/s here: "
             + (f"all {alt.epochs} epochs in about {alt.seconds:,.0f} s" if not alt.capped else
                f"{alt.reach_epochs:.2g} epochs in {seconds} s")
             + (f", {alt_expect} test accuracy." if alt_expect else "."))
    warn = st.container()
    warn.warning(cost + (offer if sel.preset != alternative else ""), icon=":material/hourglass_bottom:")
    if sel.preset != alternative:
        warn.button("Train ResNet-20 instead", icon=":material/swap_horiz:", on_click=choose_preset,
                    args=(alternative,), disabled=busy)
if ss.get(K.TRAIN_ERROR):
    st.error(ss[K.TRAIN_ERROR], icon=":material/block:")


# --- the live run ---------------------------------------------------------------------------------
# Once a second (a run reports about that often) while it is queued or running; a finished run's page stays still.
@st.fragment(run_every=1.0 if busy else None)
def live() -> None:
    mine = runs()
    if not mine:
        st.info("No run yet: choose the settings above and start one.", icon=":material/info:")
        return
    run, job = mine[-1]
    progress = job.progress()
    reports = job.reports  # read after the progress: they match
    last = progress[-1] if progress else None
    me = owner()
    status = st.container()
    if job.state.value == "queued":
        when = ""
        if job.estimated_start is not None:
            wait_s = max(0.0, job.estimated_start - time.time())
            when = f" It should start at about {clock(job.estimated_start)} (in about {wait_s:,.0f} s)."
        cols = status.columns([4, 1])
        n = LIMITS.train_workers
        cols[0].info(f"Waiting in the queue: place {job.position}. Runs go {'one' if n == 1 else n} at a time per "
                     f"device, first come, first served; this one was queued at {clock(job.submitted_at)} (server "
                     f"time).{when}", icon=":material/schedule:")
        if cols[1].button("Leave the queue", icon=":material/logout:", key=f"leave-{job.id}"):
            job_runner().leave(job.id, me)
            if job.owner != me:
                forget_run(run)
            st.rerun(scope="app")
        return  # nothing to draw until it runs: no empty axes, no earlier result
    if job.state.value == "running":
        cols = status.columns([4, 1])
        if last is not None:
            mfu = f" · MFU {last.mfu:.0%}" if last.mfu is not None else ""
            ips = f"{last.images_per_s:,.0f} img/s" if last.images_per_s else "warming up"
            cols[0].markdown(
                f"**Running** {run.label} · epoch {last.epoch}/{run.train_cfg.epochs} · step "
                f"{last.step}/{last.total_steps} · {ips}{mfu} · {last.device} · {last.elapsed_s:.0f} s"
            )
        else:
            cols[0].markdown(f"**Starting** {run.label}…")
        if job.owner == me:
            if cols[1].button("Stop", icon=":material/stop:", key=f"stop-{job.id}"):
                job.stop(me)
        else:
            others = len(job.followers)
            status.caption(f"Another student started this run; you and {others - 1:,} other(s) follow it live. "
                           "Only they can stop it." if others > 1 else
                           "Another student started this run and you follow it live. Only they can stop it.")
            if cols[1].button("Leave", icon=":material/logout:", key=f"leave-{job.id}"):
                job_runner().leave(job.id, me)
                forget_run(run)
                st.rerun(scope="app")
    earlier = [(r.label, j.progress()) for r, j in mine[:-1] if j.state.finished]
    shows = (job.id, reports, len(earlier))
    if ss.get(K.TRAIN_CURVES, (None,))[0] != shows:  # half the polls find no new report: skip the redraw
        ss[K.TRAIN_CURVES] = (shows, curves(progress, earlier))
    st.plotly_chart(ss[K.TRAIN_CURVES][1], config={"displayModeBar": False}, key="train_curves")
    if not accuracy_points(progress) and last is not None:
        st.caption(f"Accuracy is measured on the test set at the end of each epoch: the first at step "
                   f"{last.steps_per_epoch:,}, or where the run stops.")
    rerun_page_once_finished(job, K.TRAIN_SHOWN)  # the results below


live()

# --- results of the latest finished run -----------------------------------------------------------
everything = runs()
done = [(r, j) for r, j in everything if j.state.finished]
if done and everything[-1][1].state.finished:  # while the latest waits or runs, no earlier result stands here
    run, job = done[-1]
    ss[K.TRAIN_SHOWN] = job.id
    st.subheader("Result of the latest run")
    st.caption(timeline(job))
    if job.error:
        st.error(job.error, icon=":material/error:")
    elif job.result is not None:
        result = job.result
        who = "you" if job.owner == owner() else "the student who started it"
        st.markdown(f"**The run {describe_end(result.last, max_seconds=run.train_cfg.max_seconds, by=who)}.**")
        data = dataset(run.data_name)
        if (why := explain_accuracy(result, len(data.classes))) is not None:
            st.warning(why, icon=":material/trending_flat:")
        elif result.stopped:
            st.info("The numbers below are for the model as it was when the run stopped.",
                    icon=":material/stop_circle:")
        m = st.columns(4)
        m[0].metric("Final test accuracy", f"{result.test_accuracy:.1%}")
        m[1].metric("Images per second", f"{result.images_per_s:,.0f}")
        m[2].metric("Device", result.device)
        m[3].metric("Training time", f"{result.last.elapsed_s:.0f} s")
        r1, r2 = st.columns(2)
        with r1:
            conf = result.confusion.numpy()
            fig = confusion_chart(conf, data.classes)
            st.plotly_chart(fig, config={"displayModeBar": False}, key="train_confusion")
        with r2:
            st.markdown("**Test images: predicted / true**")
            preds = result.test_predictions
            n = min(16, len(preds.indices))
            cols = st.columns(4)
            for i in range(n):
                img = data.x_test[int(preds.indices[i])].permute(1, 2, 0).numpy()
                if img.shape[2] == 1:
                    img = np.repeat(img, 3, axis=2)
                ok = int(preds.predicted[i]) == int(preds.true[i])
                cols[i % 4].image(img, width=72)
                cols[i % 4].caption(
                    f"{'✓' if ok else '✗'} {data.classes[int(preds.predicted[i])]} / {data.classes[int(preds.true[i])]}"
                )
        if getattr(ss.get(K.TRAINED), "job_id", None) != job.id:
            ss[K.TRAINED] = TrainedModel.of(result.model, data, job_id=job.id, label=run.label)
        d1, d2 = st.columns(2)
        d1.download_button("Download the trained weights (safetensors)", lambda: to_safetensors(result.model),
                           file_name="trained.safetensors", mime="application/octet-stream", on_click="ignore",
                           icon=":material/download:")
        d2.markdown("Look inside it: open **Feature maps** and choose *Trained in this session*.")
    if len(done) > 1:
        with st.expander("Earlier runs of this session"):
            st.dataframe(
                pd.DataFrame(
                    [{"run": r.label, "state": j.state.value,
                      "test accuracy": f"{j.result.test_accuracy:.1%}" if j.result is not None else "–",
                      "ended": describe_end(j.result.last, max_seconds=r.train_cfg.max_seconds)
                      if j.result is not None else (j.error or j.state.value),
                      "queued": clock(j.submitted_at), "waited (s)": seconds_between(j.submitted_at, j.started_at),
                      "ran (s)": seconds_between(j.started_at, j.finished_at)}
                     for r, j in done]
                ),
                hide_index=True, width="stretch",
            )

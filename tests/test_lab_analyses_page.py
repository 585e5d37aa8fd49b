"""The lab's third part in AppTest: a finished race's twins measured by a job, the figure and the words from it, and
the race and its analyses kept on disk, shown again and measured again from the race's link."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch
from safetensors.torch import load

from resnet_core.export import to_safetensors
from resnet_core.lab import RaceReport, race_verdict, scaled, twins
from resnet_core.model import build_model
from resnet_core.residuals import ANALYSES, run_analysis, say_responses
from resnet_core.train.trainer import Progress
from server.races import (
    RaceMeta,
    load_analysis,
    load_curves,
    load_meta,
    load_model,
    save_analysis,
    save_end,
    save_meta,
)
from server.runs import UNFINISHED, RunRecord, new_run_id
from server.work import worker_dataset
from tests.conftest import until
from tests.test_pages import run_app
from ui.charts import race_chart
from ui.training import job_runner, run_store


def _wait(job_id: int, timeout_s: float = 300) -> None:
    job = job_runner().get(job_id)
    assert job is not None and job.wait(timeout_s), "the job did not end in time"


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_race_starts_reports_stops_and_its_twins_are_measured_and_the_words_are_their_numbers() -> None:
    at = run_app(page="residual_lab")
    assert any("Finish a race" in i.value for i in at.info)  # nothing to measure yet, and it says why
    at.segmented_control(key="lab.depth").set_value(20)
    at.select_slider(key="lab.width").set_value(0.25)
    at.button[0].click().run()
    assert not at.exception and not at.error
    run_id, race_id = at.session_state["lab.races"][-1]
    race = job_runner().get(race_id)
    assert race.meta.names == ("plain-20", "ResNet-20")
    assert at.query_params["run"] in (run_id, [run_id])  # the page's link names the race
    until(lambda: {r.racer for r in race.progress()} == set(race.meta.names), 120)  # both racers report
    race.stop()
    assert race.wait(60) and race.state.value == "stopped"
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 2  # signal chart and race chart

    # Kept on disk as it ended: what raced, the curves the chart is drawn from, each twin's trained weights.
    store = run_store()
    until(lambda: (r := store.load(run_id)) is not None and r.state not in UNFINISHED)
    assert store.load(run_id).kind == "race" and load_meta(store, run_id) == race.meta
    assert load_curves(store, run_id) == race.progress()
    for name, result in race.result.items():
        kept = load(load_model(store, run_id, name))
        assert all(kept[k].equal(v) for k, v in result.model.state_dict().items()), name

    at.button(key=f"measure-responses-{run_id}-20").click().run()
    job_id = at.session_state["lab.analyses"][(run_id, 20, "responses")]
    _wait(job_id)
    at.run()
    assert not at.exception and not at.error
    trained = {name: result.model for name, result in race.result.items()}
    measured = run_analysis("responses", trained, worker_dataset("builtin"), seed=race.meta.seed)
    said = say_responses(measured["plain-20"], measured["ResNet-20"], ("plain-20", "ResNet-20"))
    assert said in [m.value for m in at.markdown]
    until(lambda: load_analysis(store, run_id, 20, "responses") is not None)
    assert load_analysis(store, run_id, 20, "responses") == job_runner().get(job_id).result == measured


@pytest.mark.parametrize("analysis", ANALYSES)
def test_what_an_analysis_measured_reads_back_from_the_race_s_record_as_it_was(analysis: str) -> None:
    data = worker_dataset("builtin")
    configs = tuple(scaled(c, 0.25) for c in twins(20))
    models = {name: build_model(cfg, seed=1).eval() for name, cfg in zip(("plain-20", "ResNet-20"), configs)}
    measured = run_analysis(analysis, models, data, seed=0, images=24, steps=3)  # type: ignore[arg-type]
    store, run_id = run_store(), new_run_id()
    store.save(RunRecord(run_id, "race: plain-20 vs ResNet-20", state="done", kind="race"))
    save_analysis(store, run_id, 20, analysis, measured)
    kept = load_analysis(store, run_id, 20, analysis)
    assert kept is not None and kept.keys() == measured.keys()
    for name, value in measured.items():
        for f in fields(value):  # type: ignore[arg-type]
            a, b = getattr(value, f.name), getattr(kept[name], f.name)
            assert (torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b), (name, f.name)
    assert load_analysis(store, run_id, 56, analysis) is None  # another pair's: not measured


def _progress(step: int, loss: float, kind: str = "step") -> Progress:
    return Progress(kind=kind, step=step, epoch=1, total_steps=4, loss=loss, train_acc=None, test_acc=0.25,  # type: ignore[arg-type]
                    lr=0.1, images_per_s=100.0, mfu=None, elapsed_s=float(step), train_s=float(step), device="cpu")


def _kept_race() -> tuple[RaceMeta, dict[str, object], list[RaceReport]]:
    """A race as its record keeps it once no queue holds its job (dropped, or the server restarted)."""
    configs = tuple(scaled(c, 0.25) for c in twins(20))
    meta = RaceMeta(new_run_id(), ("plain-20", "ResNet-20"), configs, "builtin", seed=3)
    models = {name: build_model(cfg, seed=i).eval() for i, (name, cfg) in enumerate(zip(meta.names, configs))}
    reports = [RaceReport(name, _progress(s, 2.3 - 0.1 * s - 0.05 * i))
               for s in (1, 2, 3, 4) for i, name in enumerate(meta.names)]
    store = run_store()
    store.save(RunRecord(meta.run_id, "race: plain-20 vs ResNet-20", state="done", kind="race", has_weights=True))
    save_meta(store, meta)
    save_end(store, meta, reports, {name: to_safetensors(m) for name, m in models.items()})  # type: ignore[arg-type]
    return meta, models, reports


def test_a_race_s_link_shows_it_and_measures_its_twins_from_its_record() -> None:
    meta, models, reports = _kept_race()
    at = run_app(page="residual_lab", query={"run": meta.run_id})
    assert not at.exception and not at.warning
    final = race_chart(meta.names, reports, meta.classes)[1]
    assert f"**What this race measured.** {race_verdict(final, meta.classes)}" in [m.value for m in at.markdown]

    at.button(key=f"measure-responses-{meta.run_id}-20").click().run()  # from the weights on disk
    job_id = at.session_state["lab.analyses"][(meta.run_id, 20, "responses")]
    _wait(job_id, 120)
    at.run()
    measured = run_analysis("responses", models, worker_dataset("builtin"), seed=meta.seed)  # type: ignore[arg-type]
    said = say_responses(measured["plain-20"], measured["ResNet-20"], meta.names)  # type: ignore[arg-type]
    assert said in [m.value for m in at.markdown]

    # Kept with the race: another session opening its link sees it at once, and may measure it again.
    until(lambda: load_analysis(run_store(), meta.run_id, 20, "responses") is not None)
    again = run_app(page="residual_lab", query={"run": meta.run_id})
    assert said in [m.value for m in again.markdown]
    assert again.button(key=f"measure-responses-{meta.run_id}-20").label == "Measure again"


def test_a_race_s_link_that_cannot_be_shown_says_why() -> None:
    store = run_store()
    gone = run_app(page="residual_lab", query={"run": new_run_id()})
    assert any("not on this server" in w.value for w in gone.warning)
    meta, _, _ = _kept_race()
    store.save(store.load(meta.run_id).with_(state="running", instance="a-server-gone"))  # type: ignore[union-attr]
    cut = run_app(page="residual_lab", query={"run": meta.run_id})
    assert any("was interrupted: the server restarted" in w.value for w in cut.warning)
    assert any("Finish a race" in i.value for i in cut.info)  # no twins to measure from an interrupted race
    trained = new_run_id()  # the Training page's run, its link carried to the lab: not the lab's to speak of
    store.save(RunRecord(trained, "resnet20 · builtin", state="done"))
    assert not run_app(page="residual_lab", query={"run": trained}).warning


def test_the_default_race_has_both_depths_of_both_kinds() -> None:
    at = run_app(page="residual_lab")
    # What "Start the race" races as the page opens: the 56-layer twins and, with them, the 20-layer pair.
    assert at.segmented_control(key="lab.depth").value == 56 and at.toggle(key="lab.shallow").value is True
    assert any(t.label == "With the 20-layer pair" for t in at.toggle)

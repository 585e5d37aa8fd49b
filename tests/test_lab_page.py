"""The residual lab page in AppTest: both charts, words that match the numbers, a race that starts and stops."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.test_pages import run_app
from ui.lab import signal_profiles
from ui.training import job_runner


def test_signal_charts_and_words_follow_the_measurement() -> None:
    at = run_app(page="residual_lab")
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 1
    words = "\n".join(m.value for m in at.markdown)
    for bn in (True, False):
        if not bn:
            at.toggle(key="lab.bn").set_value(False).run()
            words = "\n".join(m.value for m in at.markdown)
        prof = signal_profiles(56, bn)["plain"]
        expected = "vanishes" if prof.grad_ratio < 0.01 else "shrinks" if prof.grad_ratio < 0.1 else (
            "grows" if prof.grad_ratio > 10 else "stays level")
        assert f"plain-56's gradient **{expected}**" in words


def test_a_race_starts_reports_and_stops() -> None:
    at = run_app(page="residual_lab")
    at.select_slider(key="lab.width").set_value(0.25)
    at.button[0].click().run()
    assert not at.exception and not at.error
    names, job_id = at.session_state["lab.races"][-1]
    job = job_runner().get(job_id)
    deadline = time.monotonic() + 120
    while len(job.progress()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {r.racer for r in job.progress()} == set(names)  # both racers report
    job.stop()
    assert job.wait(60) and job.state.value == "stopped"
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) >= 2  # signal chart and race chart


def test_cifar10_races_with_the_papers_recipe_and_says_where_its_files_go_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ui.lab import RACE_RECIPES
    from ui.training import dataset

    # The paper's CIFAR-10 recipe (§4.2) against the built-in shapes' CPU recipe.
    paper = RACE_RECIPES["cifar10"]
    recipe = (paper.batch_size, paper.lr, paper.momentum, paper.weight_decay, paper.augment)
    assert recipe == (128, 0.1, 0.9, 1e-4, True)

    monkeypatch.setenv("RESNET_DATA_DIR", str(tmp_path))  # an empty data folder: no CIFAR-10 here, no network
    dataset.clear()
    at = run_app(page="residual_lab")
    at.radio(key="lab.data").set_value("cifar10").run()
    assert not at.exception
    assert any(str(tmp_path) in w.value for w in at.warning), [w.value for w in at.warning]
    labels = [b.label for b in at.button]
    assert "Download CIFAR-10 (163 MB)" in labels and "Start the race" not in labels
    at.radio(key="lab.data").set_value("builtin").run()  # one click back to the built-in shapes
    assert not at.exception and "Start the race" in [b.label for b in at.button]

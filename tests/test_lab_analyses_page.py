"""The lab's third part in AppTest: a finished race's twins measured by a job, the figure and the words from it."""

from __future__ import annotations

import pytest

from resnet_core.residuals import run_analysis, say_responses
from server.work import worker_dataset
from tests.test_pages import run_app
from ui.training import job_runner


def _wait(job_id: int, timeout_s: float = 300) -> None:
    job = job_runner().get(job_id)
    assert job is not None and job.wait(timeout_s), "the job did not end in time"


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_a_finished_race_s_twins_are_measured_and_the_words_are_their_numbers() -> None:
    at = run_app(page="residual_lab")
    assert any("Finish a race" in i.value for i in at.info)  # nothing to measure yet, and it says why
    at.segmented_control(key="lab.depth").set_value(20)
    at.select_slider(key="lab.width").set_value(0.25)
    at.number_input(key="lab.seconds").set_value(10)
    at.button[0].click().run()
    names, race_id = at.session_state["lab.races"][-1]
    assert set(names) == {"plain-20", "ResNet-20"}
    _wait(race_id)
    at.run()
    assert not at.exception
    at.button(key=f"measure-responses-{race_id}-20").click().run()
    job_id = at.session_state["lab.analyses"][(race_id, 20, "responses")]
    _wait(job_id)
    at.run()
    assert not at.exception and not at.error
    race = job_runner().get(race_id)
    trained = {name: result.model for name, result in race.result.items()}
    measured = run_analysis("responses", trained, worker_dataset("builtin"), seed=race.meta["seed"])
    said = say_responses(measured["plain-20"], measured["ResNet-20"], ("plain-20", "ResNet-20"))
    assert said in [m.value for m in at.markdown]


def test_the_default_race_has_both_depths_of_both_kinds() -> None:
    at = run_app(page="residual_lab")
    # What "Start the race" races as the page opens: the 56-layer twins and, with them, the 20-layer pair.
    assert at.segmented_control(key="lab.depth").value == 56 and at.toggle(key="lab.shallow").value is True
    assert any(t.label == "With the 20-layer pair" for t in at.toggle)

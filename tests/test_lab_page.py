"""The residual lab page in AppTest: both charts, words that match the numbers, a race that starts and stops."""

from __future__ import annotations

import time

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

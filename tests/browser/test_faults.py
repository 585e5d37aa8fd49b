"""Faults of a hosted server, injected for real against `streamlit run` and seen in Chromium:

- the server is killed mid-training and started again: a reload of the page says the run was
  interrupted, and its folder holds no half-written checkpoint;
- a student closes the tab mid-training: the job is cancelled and the next student's job, which was
  waiting behind it, starts.

Each test runs its own server (a restart, a short session TTL), on its own port and runs folder.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlparse

from server.runs import is_run_id
from tests.serving import free_port, serve
from tests.test_training_page import TINY  # a model that starts training within seconds on two cores

from .conftest import PAGE_TIMEOUT_MS, VIEWPORT
from .helpers import expect, screenshot, wait_for_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

LONG_RUN_EPOCHS = 50  # far more than any test waits for: the run is still going when the fault comes
STEP_MS = 60_000  # a step of the test on a busy 2-core machine


def _open(browser: Browser, url: str) -> Page:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    wait_for_app(page)
    return page


def _start_run(page: Page, epochs: int) -> None:
    """Set the epochs and press "Start training" on the training page."""
    field = page.get_by_label("Epochs", exact=True)
    field.fill(str(epochs))
    field.press("Enter")
    # The plan under the controls follows the epochs once the page has rerun (a quick rerun can end before a
    # watcher of the page's running state sees it).
    plan = page.get_by_text(re.compile(rf"^Before you start\..*(all {epochs} epochs|of {epochs} epochs)"))
    expect(plan).to_be_visible(timeout=STEP_MS)
    wait_for_app(page)
    page.get_by_role("button", name=re.compile("Start training")).click()


def _running(page: Page) -> None:
    expect(page.get_by_text(re.compile(r"^Running "))).to_be_visible(timeout=STEP_MS)


def _run_id(page: Page) -> str:
    """The run named in the page's link (the page puts it there when the run starts)."""
    page.wait_for_url(re.compile(r"[?&]run=[0-9a-f]{32}"), timeout=STEP_MS)
    run_id = parse_qs(urlparse(page.url).query)["run"][0]
    assert is_run_id(run_id)
    return run_id


def _status(runs_dir: Path, run_id: str) -> dict[str, Any]:
    return dict(json.loads((runs_dir / run_id / "status.json").read_text()))


def test_a_server_killed_mid_training_comes_back_saying_the_run_was_interrupted(
    browser: Browser, tmp_path: Path
) -> None:
    port, runs_dir, log = free_port(), tmp_path / "runs", tmp_path / "server.log"
    env = {"RESNET_RUNS_DIR": str(runs_dir)}
    url = f"http://127.0.0.1:{port}/training?{urlencode(TINY)}"

    with serve(port, log_path=log, env=env) as server:
        page = _open(browser, url)
        _start_run(page, LONG_RUN_EPOCHS)
        _running(page)
        run_id = _run_id(page)
        assert _status(runs_dir, run_id)["state"] == "running"
        screenshot(page, tmp_path / "before-kill.png")
        server.process.send_signal(signal.SIGKILL)  # no clean shutdown: the process just ends
        server.process.wait()

    with serve(port, log_path=log, env=env):
        page.goto(page.url)  # the student reloads the same link
        wait_for_app(page)
        notice = page.get_by_test_id("stAlert").filter(has_text="was interrupted")
        expect(notice).to_be_visible(timeout=STEP_MS)
        expect(notice).to_contain_text("the server restarted while it was running")
        screenshot(page, tmp_path / "after-restart.png")
        expect(page.get_by_test_id("stException")).to_have_count(0)

    # On disk: the record of a running run, and no checkpoint, whole or partial.
    assert _status(runs_dir, run_id)["state"] == "running"
    assert sorted(p.name for p in (runs_dir / run_id).iterdir()) == ["status.json"]


def test_a_tab_closed_mid_training_frees_its_place_for_the_next_student(browser: Browser, tmp_path: Path) -> None:
    port, runs_dir, log = free_port(), tmp_path / "runs", tmp_path / "server.log"
    # A job whose browser session has been gone for 2 s is stopped (the default is a minute, which rides out
    # a network blip).
    env = {"RESNET_RUNS_DIR": str(runs_dir), "RESNET_TRAIN_WORKERS": "1", "RESNET_ABANDON_SECONDS": "2"}
    url = f"http://127.0.0.1:{port}/training?{urlencode(TINY)}"

    with serve(port, log_path=log, env=env):
        first = _open(browser, url)
        _start_run(first, LONG_RUN_EPOCHS)
        _running(first)
        first_run = _run_id(first)

        second = _open(browser, url)
        _start_run(second, 1)
        expect(second.get_by_text("Waiting in the queue: place 1")).to_be_visible(timeout=STEP_MS)

        first.context.close()  # the first student closes the tab
        _running(second)  # ... and the second one's run starts
        screenshot(second, tmp_path / "second-running.png")
        record = _status(runs_dir, first_run)
        assert record["state"] == "stopped", record
        assert record["epoch"] < LONG_RUN_EPOCHS  # cancelled, not run to the end

        second.get_by_role("button", name=re.compile("Stop")).click()
        expect(second.get_by_text(re.compile(r"^The run stopped by you at step \d+ of \d+ \(epoch 1 of 1\)\.$")))\
            .to_be_visible(timeout=STEP_MS)
        second.context.close()

"""Two app replicas on one Ray cluster share one queue: a run started in Chromium on replica A is followed live
from replica B through its link, and only A's student can stop it.

The cluster is a real `ray start --head` on a free loopback port with token authentication; the test stops only
the head it started.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest

from tests.serving import free_port, serve
from tests.test_training_page import TINY

from .helpers import expect, screenshot
from .test_faults import LONG_RUN_EPOCHS, STEP_MS, _open, _run_id, _running, _start_run

if TYPE_CHECKING:
    from playwright.sync_api import Browser

RAY = Path(sys.executable).with_name("ray")


@pytest.fixture
def ray_head(tmp_path: Path) -> tuple[str, dict[str, str]]:
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    # This head's own folder (short: Ray's socket paths must fit in 107 bytes); stopping it touches nothing else.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    start = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
             "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"]
    out = subprocess.run(start, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    address = f"127.0.0.1:{port}"
    app_env = {k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    try:
        yield address, {**app_env, "RESNET_RAY_ADDRESS": address}
    finally:
        # Only this head: its processes are the ones whose command line names its session folder.
        subprocess.run(["pkill", "-f", str(temp)], check=False)
        time.sleep(2)
        subprocess.run(["pkill", "-9", "-f", str(temp)], check=False)  # the GCS outlives a SIGTERM
        shutil.rmtree(temp, ignore_errors=True)


def test_two_replicas_share_one_queue_and_a_link_follows_a_run_live(
    browser: Browser, ray_head: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    _, env = ray_head
    env = {**env, "RESNET_RUNS_DIR": str(tmp_path / "runs")}  # one folder: both replicas read the records
    with serve(log_path=tmp_path / "a.log", env=env) as server_a, \
            serve(log_path=tmp_path / "b.log", env=env) as server_b:
        a = _open(browser, f"{server_a.url}/training?{urlencode(TINY)}")
        _start_run(a, LONG_RUN_EPOCHS)
        _running(a)
        run_id = _run_id(a)

        b = _open(browser, f"{server_b.url}/training?{urlencode({**TINY, 'run': run_id})}")
        _running(b)  # B shows the run that A started, live
        expect(b.get_by_text("Another student started this run and you follow it live")).to_be_visible(
            timeout=STEP_MS)
        expect(b.get_by_role("button", name=re.compile("^Stop"))).to_have_count(0)  # only its owner may stop it
        screenshot(b, tmp_path / "replica-b-follows.png")

        a.get_by_role("button", name=re.compile("^Stop")).click()
        stopped = re.compile(r"^The run stopped by you at step \d+")
        expect(a.get_by_text(stopped)).to_be_visible(timeout=STEP_MS)
        expect(b.get_by_text(re.compile(r"^The run stopped by the student who started it at step \d+")))\
            .to_be_visible(timeout=STEP_MS)
        for page in (a, b):
            expect(page.get_by_test_id("stException")).to_have_count(0)
            page.context.close()

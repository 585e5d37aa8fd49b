"""The hosted profile: `deploy/serve` starts a server with deploy/hosted.env, Streamlit understands every
variable in it, the limits reach the app, and the environment a host sets wins over the file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from server.settings import Limits
from tests.serving import free_port, running

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "deploy" / "hosted.env"


def profile() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in PROFILE.read_text().splitlines() if line and not line.startswith("#"))
    return {name: value for name, value in pairs}


def streamlit_config(env: dict[str, str]) -> dict[str, str]:
    """`streamlit config show` under `env`: option name -> value as printed, for the options that were set."""
    out = subprocess.run([sys.executable, "-m", "streamlit", "config", "show"], env={**os.environ, **env},
                         capture_output=True, text=True, check=True, timeout=120).stdout
    found = {}
    section = ""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = m[1]
        elif (m := re.fullmatch(r"(\w+) = (.*)", line)) and "environment variable" in lines[i - 1]:
            found[f"{section}.{m[1]}"] = m[2].strip('"')
    return found


def test_streamlit_reads_every_streamlit_variable_of_the_profile() -> None:
    env = profile()
    wanted = {k for k in env if k.startswith("STREAMLIT_")}
    seen = streamlit_config(env)
    as_variable = {"STREAMLIT_" + re.sub(r"([a-z])([A-Z])", r"\1_\2", k).replace(".", "_").upper(): v
                   for k, v in seen.items()}
    assert wanted <= set(as_variable), f"variables Streamlit does not know: {wanted - set(as_variable)}"
    assert seen["client.showErrorDetails"] == "none"  # visitors never see a traceback
    assert seen["server.fileWatcherType"] == "none" and seen["server.runOnSave"] == "false"
    # The server refuses uploads above the app's own byte limit (Streamlit counts in MB of 2**20 bytes).
    assert int(seen["server.maxUploadSize"]) * 2**20 == int(env["RESNET_UPLOAD_MAX_BYTES"])


def test_every_limit_of_the_app_is_in_the_profile_and_valid() -> None:
    env = profile()
    limits = Limits.from_env(env)
    named = {k for k in env if k.startswith("RESNET_")}
    assert named == {f"RESNET_{name.upper()}" for name in Limits.__dataclass_fields__} - {
        "RESNET_MODEL_CACHE_ENTRIES", "RESNET_ANALYSIS_CACHE_ENTRIES", "RESNET_JOB_TTL_SECONDS", "RESNET_RUNS_KEEP"}
    assert limits.train_queue == int(env["RESNET_TRAIN_QUEUE"]) and limits.input_max_side == 1024


def test_limits_refuse_bad_values_by_name() -> None:
    with pytest.raises(ValueError, match="RESNET_TRAIN_QUEUE='many' must be a whole number"):
        Limits.from_env({"RESNET_TRAIN_QUEUE": "many"})
    with pytest.raises(ValueError, match="RESNET_TRAIN_WORKERS='0' must be at least 1"):
        Limits.from_env({"RESNET_TRAIN_WORKERS": "0"})
    assert Limits.from_env({}) == Limits()


def test_the_library_reads_no_setting_and_the_server_names_a_bad_one_before_it_starts() -> None:
    env = {**os.environ, "RESNET_INPUT_MAX_SIDE": "abc"}
    library = subprocess.run([sys.executable, "-c", "import resnet_core, resnet_core.images, resnet_core.train"],
                             env=env, capture_output=True, text=True, cwd=ROOT)
    assert library.returncode == 0, library.stderr
    check = subprocess.run([sys.executable, "-m", "server.settings"], env=env, capture_output=True, text=True,
                           cwd=ROOT)
    assert check.returncode != 0 and "RESNET_INPUT_MAX_SIDE='abc' must be a whole number" in check.stderr
    assert "Traceback" not in check.stderr  # one sentence, the one deploy/serve prints before it stops


def test_the_image_copies_no_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv/", "data/", "runs/", ".git/"} <= ignored  # no environment, datasets or run records of this host


def test_deploy_serve_starts_the_app_with_the_profile_and_the_host_environment_wins(tmp_path: Path) -> None:
    """deploy/serve serves the app on the port it is given, with the profile's settings and a host's own setting
    over the profile's."""
    port = free_port()
    env = {"PYTHON": sys.executable, "RESNET_TRAIN_QUEUE": "5"}  # a host's own choice
    command = [str(ROOT / "deploy" / "serve"), str(port), "127.0.0.1"]
    with running(command, port=port, log_path=tmp_path / "serve.log", env=env, timeout_s=90) as server:
        environ = Path(f"/proc/{server.pid}/environ").read_text().split("\0")
        served = dict(kv.split("=", 1) for kv in environ if "=" in kv)
    assert served["RESNET_TRAIN_QUEUE"] == "5"  # the host's value, not the profile's 30
    for name, value in profile().items():
        if name != "RESNET_TRAIN_QUEUE" and name not in os.environ:
            assert served[name] == value, name
    assert Limits.from_env(served).train_queue == 5

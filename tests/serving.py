"""The app served by `streamlit run` on a loopback port, for the browser and load tests and the benchmarks: the one
place that starts a server, waits for it to answer, and stops it with everything it started.

    with serve(log_path=tmp / "server.log", env={"RESNET_RUNS_DIR": ...}) as server:
        page.goto(server.url + "/training")
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]  # the directory that holds app.py
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0  # SIGTERM first, so that the server can shut its embedded Ray down; then SIGKILL
LOG_TAIL_CHARS = 6000

STREAMLIT = ("-m", "streamlit")  # what `python` runs with `run app.py ...` after it


class ServerDidNotStart(RuntimeError):
    """The server exited, or did not answer /_stcore/health in time; the message ends with its log's tail."""


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    port: int
    process: subprocess.Popen[bytes]  # the launcher: `python -m streamlit` (or `launcher`), leader of its group
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS picks it; another process could take it before the server does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def option_words(settings: Iterable[str]) -> list[str]:
    """Streamlit options written `section.name=value` (a benchmark's `--set`) as command-line words:
    `runner.postScriptGC=false` -> `--runner.postScriptGC false`."""
    words = []
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            raise ValueError(f"{setting!r} is not a Streamlit option written section.name=value")
        words += [f"--{name}", value]
    return words


def healthy(base_url: str) -> bool:
    """Streamlit's health endpoint answers `ok`."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: never via a proxy
    try:
        with opener.open(f"{base_url}/_stcore/health", timeout=2) as resp:
            return bool(resp.status == 200 and resp.read().decode().strip() == "ok")
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(base_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    """Return once `base_url` answers; raise ServerDidNotStart (with the log's tail) if `process` exits first or
    `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while not healthy(base_url):
        if process.poll() is not None:
            raise ServerDidNotStart(f"the server exited early (code {process.returncode})" + _tail(log_path))
        if time.monotonic() > deadline:
            raise ServerDidNotStart(f"the server did not answer {base_url}/_stcore/health within {timeout_s:.0f} s"
                                    + _tail(log_path))
        time.sleep(0.25)


def _tail(log_path: Path) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return f"; no log at {log_path}"
    cut = text[-LOG_TAIL_CHARS:]
    return f"; the end of its log ({log_path}):\n{'...' if len(cut) < len(text) else ''}{cut}"


def stop(process: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """End the process's group (the server, and the Ray processes it started): SIGTERM, then SIGKILL after
    `grace_s`. A group that has already ended is left alone."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.poll()
        return
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with suppress(ProcessLookupError):  # the leader may be gone while a process it started still runs
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def running(
    command: Sequence[str],
    *,
    port: int,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
    timeout_s: float = START_TIMEOUT_S,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """Run `command`, a server of the app on 127.0.0.1:`port`, in a process group of its own, with `env` over this
    process's environment and its output appended to `log_path`. Yields once /_stcore/health answers; on exit
    stops the group: the server and every process it started (its embedded Ray's among them)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(list(command), cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                                   stdout=log, stderr=subprocess.STDOUT, process_group=0, preexec_fn=preexec_fn)
    server = Server(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        wait_healthy(server.url, process, log_path, timeout_s)
        yield server
    finally:
        stop(process)


@contextmanager
def serve(
    port: int | None = None,
    *,
    log_path: Path,
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
    timeout_s: float = START_TIMEOUT_S,
    launcher: Sequence[str] = STREAMLIT,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """`python -m streamlit run app.py` headless on 127.0.0.1:`port` (a free one by default), with extra
    `options` (`--section.name value` words): see `running` for the rest.

    `launcher` replaces `-m streamlit` with a script that takes Streamlit's command line (the load tests'
    tests/load/serve.py); `preexec_fn` runs in the child before it starts (a benchmark pins it to a CPU)."""
    port = free_port() if port is None else port
    command = [
        sys.executable, *launcher, "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        *options,
    ]  # fmt: skip
    with running(command, port=port, log_path=log_path, env=env, cwd=cwd, timeout_s=timeout_s,
                 preexec_fn=preexec_fn) as server:
        yield server

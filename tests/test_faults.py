"""Faults a hosted server meets, injected for real: a process killed mid-write, a download cut off by the
server, a session that goes away while its job runs, a reload that comes back to a running job.

(The server restart and the closed tab in a real browser are in tests/browser/test_faults.py.)
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torchvision.datasets import CIFAR10

from resnet_core import runs as runs_mod
from resnet_core.data import DatasetUnavailable, load_dataset
from resnet_core.jobs import OOM_MESSAGE, Job, JobContext, JobRunner, JobState
from resnet_core.runs import RunRecord, RunStore, new_run_id, write_atomically
from tests.test_data import check_cifar, cifar_archive, leftovers, md5

ROOT = Path(__file__).resolve().parents[1]


# --- atomic writes ---------------------------------------------------------------------------------


def test_a_process_killed_mid_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"the old weights")
    writer = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from resnet_core.runs import write_atomically
        write_atomically(Path({str(target)!r}), b"n" * (1 << 30))  # 1 GiB: still writing when killed
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 1 << 20 for p in tmp_path.glob(".*.partial")):
            assert proc.poll() is None, "the writer ended before it could be killed"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert target.read_bytes() == b"the old weights"  # whole and old: never a prefix of the new one


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "status.json"
    with pytest.raises(TypeError):
        write_atomically(target, "not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


# --- run records -----------------------------------------------------------------------------------


def test_a_record_left_by_another_server_process_reads_as_interrupted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    running = RunRecord(new_run_id(), "resnet20 · builtin", state="running", epoch=2, epochs=5)
    store.save(running)
    assert store.load(running.id) == running and not store.load(running.id).interrupted  # type: ignore[union-attr]

    # The same file as a process that died would have left it: its instance id is not this process's.
    status = tmp_path / running.id / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "instance": "0123456789abcdef"}))
    left = store.load(running.id)
    assert left is not None and left.interrupted and left.epoch == 2
    # A finished run is never "interrupted", whoever wrote it.
    store.save(left.with_(state="done"))
    assert not store.load(running.id).interrupted  # type: ignore[union-attr]


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "/etc/passwd", "A" * 32, "0" * 31, "", "0" * 32 + "/x"])
def test_no_text_but_a_run_id_becomes_a_path(tmp_path: Path, run_id: str) -> None:
    store = RunStore(tmp_path / "runs")
    assert store.load(run_id) is None and store.weights(run_id) is None
    with pytest.raises(ValueError, match="not a run id"):
        store.save(RunRecord(run_id, "x"))
    assert not (tmp_path / "runs").exists()


def test_the_store_keeps_the_newest_runs_only(tmp_path: Path) -> None:
    store = RunStore(tmp_path, keep=3)
    ids = []
    for i in range(5):
        ids.append(new_run_id())
        store.save(RunRecord(ids[-1], f"run {i}"))
        os.utime(tmp_path / ids[-1], (i, i))  # distinct ages, whatever the file system's clock resolution
    store.prune()
    assert store.ids() == ids[2:]
    assert [store.load(i).label for i in ids[2:]] == ["run 2", "run 3", "run 4"]  # type: ignore[union-attr]


def test_unreadable_records_are_treated_as_missing(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run_id = new_run_id()
    (tmp_path / run_id).mkdir()
    (tmp_path / run_id / "status.json").write_text('{"id": "x", "label": ')  # cut off
    assert store.load(run_id) is None
    (tmp_path / run_id / "status.json").write_text('{"id": "x", "surprise": 1}')
    assert store.load(run_id) is None
    assert runs_mod.is_run_id(run_id) and not runs_mod.is_run_id(run_id.upper())


# --- a download the server cuts off halfway --------------------------------------------------------


class _CuttingServer(http.server.BaseHTTPRequestHandler):
    """Serves one file; while `cut` is set it promises the whole file and closes the connection halfway."""

    body = b""
    cut = True
    requests = 0

    def do_GET(self) -> None:  # the name http.server calls
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2] if self.cut else self.body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cutting_server() -> Iterator[tuple[str, type[_CuttingServer]]]:
    handler = type("Handler", (_CuttingServer,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz", handler
    finally:
        server.shutdown()
        server.server_close()


def test_a_download_cut_off_halfway_is_never_used_and_the_next_attempt_starts_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cutting_server: tuple[str, type[_CuttingServer]]
) -> None:
    url, handler = cutting_server
    archive, expected = cifar_archive(tmp_path)
    handler.body = archive.read_bytes()
    monkeypatch.setattr(CIFAR10, "url", url)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    root = tmp_path / "data"

    with pytest.raises(DatasetUnavailable):
        load_dataset("cifar10", root=root)
    assert handler.requests == 1
    assert list(root.iterdir()) == []  # no archive, no partial file, no half-extracted folder

    handler.cut = False  # the network is back
    check_cifar(load_dataset("cifar10", root=root), expected)
    assert handler.requests == 2 and leftovers(root) == []


# --- sessions that go away, sessions that come back ------------------------------------------------


def _steps(n: int, step_s: float = 0.01):  # type: ignore[no-untyped-def]
    def fn(ctx: JobContext) -> int:
        done = 0
        while done < n and not ctx.should_stop():
            time.sleep(step_s)
            done += 1
            ctx.report(done)
        return done
    return fn


def test_a_session_that_ends_mid_run_frees_its_place_and_leaves_nothing_behind() -> None:
    runner = JobRunner(workers=1, max_queue=4)
    try:
        gone = runner.submit("tab that closes", _steps(100_000))
        waiting = runner.submit("tab that closes", _steps(100_000))
        other = runner.submit("another student", _steps(5))
        deadline = time.monotonic() + 10
        while gone.state is not JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.01)

        runner.forget("tab that closes")
        assert other.wait(10), "the next student's job never ran"
        assert other.state is JobState.DONE and other.result == 5
        assert gone.state is JobState.STOPPED and gone.result < 100_000
        assert waiting.state is JobState.STOPPED and waiting.started_at is None  # it never started
        assert runner.jobs() == [other]  # the ended session's jobs are gone from memory
    finally:
        runner.shutdown()


def test_a_reloaded_session_takes_over_its_running_job() -> None:
    runner = JobRunner(workers=1, max_queue=4)
    try:
        job = runner.submit("first tab", _steps(100_000), meta="run 1")
        assert runner.adopt(job.id, "same student, new tab") is job
        runner.forget("first tab")  # the old tab's session is dropped later: it must not stop the job
        time.sleep(0.1)
        assert job.state is JobState.RUNNING and runner.jobs_of("same student, new tab") == [job]
        assert job.meta == "run 1"
        job.stop()
        assert job.wait(10)
    finally:
        runner.shutdown()


def test_finished_jobs_are_dropped_after_their_time_to_live() -> None:
    runner = JobRunner(workers=1, max_queue=4, ttl_seconds=0.2)
    try:
        first = runner.submit("a", _steps(1))
        assert first.wait(10)
        assert runner.jobs() == [first]  # kept for a while: the page shows its curves
        time.sleep(0.3)
        second = runner.submit("b", _steps(1))  # each submit drops what has expired
        assert runner.jobs() == [second]
        assert second.wait(10)
    finally:
        runner.shutdown()


def test_on_end_sees_every_way_a_job_ends_and_cannot_break_the_runner() -> None:
    runner = JobRunner(workers=1, max_queue=4)
    ended: list[tuple[str, JobState, str | None]] = []

    def note(job: Job) -> None:
        ended.append((job.label, job.state, job.error))
        if job.label == "fails":
            raise OSError("No space left on device")  # e.g. the record could not be written

    def boom(ctx: JobContext) -> None:
        raise RuntimeError("boom")

    try:
        blocker = runner.submit("a", _steps(100_000), label="stopped", on_end=note)
        never = runner.submit("a", _steps(1), label="never started", on_end=note)
        never.stop()
        fails = runner.submit("a", boom, label="fails", on_end=note)
        done = runner.submit("a", _steps(3), label="done", on_end=note)
        time.sleep(0.05)
        blocker.stop()
        assert done.wait(10) and fails.wait(10) and never.wait(10)
        assert ended == [
            ("stopped", JobState.STOPPED, None),
            ("never started", JobState.STOPPED, None),
            ("fails", JobState.FAILED, "The job failed: RuntimeError: boom"),
            ("done", JobState.DONE, None),
        ]
        assert done.result == 3  # the runner went on after on_end raised
    finally:
        runner.shutdown()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real CUDA out-of-memory error needs a CUDA GPU")
def test_a_real_cuda_out_of_memory_ends_only_its_job_and_frees_the_memory() -> None:
    runner = JobRunner(workers=1, max_queue=4)
    before = torch.cuda.memory_allocated()

    def hog(ctx: JobContext) -> None:
        held = [torch.empty(1 << 28, device="cuda")]  # 1 GiB that the job holds when it fails
        held.append(torch.empty(1 << 50, device="cuda"))  # 4 PiB: no GPU has it

    def small(ctx: JobContext) -> float:
        return float(torch.ones(1024, device="cuda").sum())

    try:
        failed = runner.submit("a", hog)
        after = runner.submit("b", small)
        assert failed.wait(60) and after.wait(60)
        assert failed.state is JobState.FAILED and failed.error == OOM_MESSAGE
        assert after.state is JobState.DONE and after.result == 1024.0
        assert torch.cuda.memory_allocated() == before  # the failed job's gigabyte went back
    finally:
        runner.shutdown()

"""Jobs on Ray: order, places, stop within one step, failures contained (an exception, an out-of-memory error, a
worker killed with SIGKILL), the bound, the time cap, identical runs that share one job, sessions that go away or
come back, fractions of a GPU. Every job here runs in a real Ray worker process of the test's embedded instance."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch
from ray import cloudpickle

from server.jobs import (
    OOM_MESSAGE,
    WORKER_LOST_MESSAGE,
    Job,
    JobContext,
    Jobs,
    JobState,
    NotYours,
    QueueFull,
    connect,
    gpu_share,
)
from tests.conftest import until

ROOT = Path(__file__).resolve().parents[1]
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
_names = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def engine() -> None:
    connect(cpus=int(os.environ.get("RESNET_RAY_CPUS", "1")))


def new_jobs(**kw: object) -> Jobs:
    return Jobs(name=f"test-jobs-{os.getpid()}-{next(_names)}", **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def jobs(engine: None) -> Iterator[Jobs]:
    """One queue for the tests that leave it empty (each starts a run actor: a few seconds on this machine)."""
    j = new_jobs(workers=1, max_queue=3)
    yield j
    j.shutdown()


class Steps:
    """A job of `n` steps of `step_s` seconds that reports each step and stops when asked."""

    def __init__(self, n: int, step_s: float = 0.01) -> None:
        self.n, self.step_s = n, step_s

    def __call__(self, ctx: JobContext) -> int:
        done = 0
        while done < self.n and not ctx.should_stop():
            time.sleep(self.step_s)
            done += 1
            ctx.report(done)
        return done


def fails(ctx: JobContext) -> None:
    raise ValueError("batch of wrong shape")


def runs_out_of_memory(ctx: JobContext) -> None:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")


def test_jobs_run_one_at_a_time_in_queue_order_and_show_their_places(jobs: Jobs) -> None:
    first = jobs.submit("a", Steps(100_000))
    until(lambda: first.state is JobState.RUNNING)
    b, c = jobs.submit("order b", Steps(3)), jobs.submit("order c", Steps(3))
    assert (b.position, c.position) == (1, 2) and b.state is JobState.QUEUED and jobs.jobs_of("order b") == [b]
    first.stop()
    assert b.wait(60) and c.wait(60)
    assert (b.state, c.state, b.result, c.result) == (JobState.DONE, JobState.DONE, 3, 3)
    assert b.finished_at <= c.started_at  # type: ignore[operator]  # never interleaved: one worker
    assert [p for p in c.progress()] == [1, 2, 3]


def test_stop_takes_effect_within_one_step(jobs: Jobs) -> None:
    job = jobs.submit("a", Steps(100_000, step_s=0.05))
    until(lambda: len(job.progress()) >= 5)
    seen = job.reports
    job.stop()
    assert job.wait(30)
    assert job.state is JobState.STOPPED and job.result <= seen + 2  # the step under way, and one in flight


def test_a_queued_job_that_is_stopped_never_starts(jobs: Jobs) -> None:
    blocker = jobs.submit("a", Steps(100_000))
    job = jobs.submit("b", Steps(1))
    job.stop()
    blocker.stop()
    assert job.wait(60) and job.state is JobState.STOPPED and job.started_at is None and job.result is None


def test_exceptions_and_out_of_memory_end_only_their_job(jobs: Jobs) -> None:
    bad, out, good = jobs.submit("a", fails), jobs.submit("b", runs_out_of_memory), jobs.submit("c", Steps(2))
    assert good.wait(90) and bad.wait(1) and out.wait(1)
    assert bad.state is JobState.FAILED and bad.error == "The job failed: ValueError: batch of wrong shape"
    assert out.state is JobState.FAILED and out.error == OOM_MESSAGE and "smaller batch" in OOM_MESSAGE
    assert good.state is JobState.DONE and good.result == 2


def test_a_worker_killed_mid_run_fails_only_its_job(jobs: Jobs) -> None:
    victim = jobs.submit("a", Steps(100_000))
    until(lambda: len(victim.progress()) >= 3)
    pid = ray.get(victim._actor.ready.remote())
    os.kill(pid, signal.SIGKILL)
    assert victim.wait(60)
    assert victim.state is JobState.FAILED and victim.error == WORKER_LOST_MESSAGE
    assert victim.error.startswith("The worker stopped")
    assert len(victim.progress()) >= 3  # what it reported before it died stays on the page
    after = jobs.submit("b", Steps(2))  # the queue goes on
    assert after.wait(60) and after.state is JobState.DONE and after.result == 2


def test_a_full_queue_says_busy(jobs: Jobs) -> None:
    first = jobs.submit("a", Steps(100_000))
    until(lambda: first.state is JobState.RUNNING)  # it has left the queue and runs
    waiting = [jobs.submit(o, Steps(1)) for o in "bcd"]
    with pytest.raises(QueueFull, match=r"busy.*try again later"):
        jobs.submit("e", Steps(1))
    for j in [*waiting, first]:
        j.stop()


def test_the_time_cap_stops_a_job() -> None:
    capped = new_jobs(max_seconds=0.5)
    try:
        job = capped.submit("a", Steps(100_000, step_s=0.005))
        assert job.wait(60)
        assert job.state is JobState.STOPPED and 0 < job.result < 100_000
    finally:
        capped.shutdown()


def test_progress_history_stays_bounded_and_keeps_the_newest(jobs: Jobs) -> None:
    job = jobs.submit("a", Steps(5000, step_s=0), max_progress=100)
    assert job.wait(60)
    kept = job.progress()
    assert len(kept) <= 101 and kept == sorted(kept) and kept[-1] == 5000  # the bound, and the latest report
    assert len({b - a for a, b in itertools.pairwise(kept[:-1])}) == 1  # thinned evenly
    assert job.reports == 5000  # every report is counted, kept or not: a page redraws when this changes


def test_identical_runs_share_one_job_that_only_its_owner_can_stop(jobs: Jobs) -> None:
    first = jobs.submit("teacher", Steps(100_000), key="resnet20 default", tag="run-1")
    again = jobs.submit("student", Steps(100_000), key="resnet20 default", tag="run-2")
    other = jobs.submit("student 2", Steps(3), key="another seed")
    assert again is first and first.followers == ["student"] and first.tag == "run-1" and other is not first
    with pytest.raises(NotYours, match="Only the student who started this run can stop it"):
        jobs.stop(first.id, "student")
    jobs.leave(first.id, "student")
    assert first.followers == [] and first.state in (JobState.QUEUED, JobState.RUNNING)
    assert jobs.find("run-1") is first
    jobs.stop(first.id, "teacher")
    assert first.wait(60) and first.state is JobState.STOPPED
    assert other.wait(60) and other.result == 3


def test_a_queued_run_can_leave_the_queue_and_says_when_it_should_start(jobs: Jobs) -> None:
    running = jobs.submit("a", Steps(100_000), expected_s=30)
    until(lambda: running.state is JobState.RUNNING)
    waiting = jobs.submit("b", Steps(1), expected_s=5)
    third = jobs.submit("c", Steps(1), expected_s=5)
    assert waiting.estimated_start is not None and third.estimated_start is not None
    assert abs(waiting.estimated_start - (running.started_at + 30)) < 1  # type: ignore[operator]
    assert abs(third.estimated_start - (waiting.estimated_start + 5)) < 1
    jobs.leave(waiting.id, "b")
    jobs.refresh()
    assert third.position == 1
    assert waiting.wait(10) and waiting.state is JobState.STOPPED and waiting.started_at is None
    running.stop()
    third.stop()


def test_a_session_that_ends_mid_run_frees_its_place_and_leaves_nothing_behind() -> None:
    jobs = new_jobs(workers=1, max_queue=4)
    try:
        gone = jobs.submit("tab that closes", Steps(100_000))
        waiting = jobs.submit("tab that closes", Steps(100_000))
        other = jobs.submit("another student", Steps(5))
        until(lambda: gone.state is JobState.RUNNING)
        jobs.forget("tab that closes")
        assert other.wait(60), "the next student's job never ran"
        assert other.state is JobState.DONE and other.result == 5
        assert waiting.state is JobState.STOPPED and waiting.started_at is None  # it never started
        until(lambda: jobs.jobs() == [other])  # the ended session's jobs are gone from memory
        assert len(jobs) == 1
    finally:
        jobs.shutdown()


def test_a_follower_takes_over_a_run_whose_owner_has_gone(jobs: Jobs) -> None:
    job = jobs.submit("first tab", Steps(100_000), key="same run")
    jobs.submit("second tab", Steps(100_000), key="same run")
    jobs.forget("first tab")
    time.sleep(0.3)
    assert job.state is not JobState.STOPPED and job.owner == "second tab" and job.followers == []
    job.stop("second tab")
    assert job.wait(60)


def test_a_reloaded_session_takes_over_its_running_job(jobs: Jobs) -> None:
    job = jobs.submit("first tab", Steps(100_000), meta="run 1")
    assert jobs.adopt(job.id, "same student, new tab") is job
    jobs.forget("first tab")  # the old tab's session is dropped later: it must not stop the job
    time.sleep(0.3)
    assert job.state is not JobState.STOPPED and jobs.jobs_of("same student, new tab") == [job]
    assert job.meta == "run 1"
    job.stop()
    assert job.wait(60)


def test_finished_jobs_are_dropped_after_their_time_to_live() -> None:
    jobs = new_jobs(workers=1, max_queue=4, ttl_seconds=1)
    try:
        first = jobs.submit("a", Steps(1))
        assert first.wait(60)
        assert jobs.get(first.id) is first  # kept for a while: the page shows its curves
        until(lambda: jobs.get(first.id) is None, timeout=10)
    finally:
        jobs.shutdown()


def test_on_end_sees_every_way_a_job_ends_and_cannot_break_the_client() -> None:
    jobs = new_jobs(workers=1, max_queue=4)
    ended: list[tuple[str, JobState, str | None]] = []

    def note(job: Job) -> None:
        ended.append((job.label, job.state, job.error))
        if job.label == "fails":
            raise OSError("No space left on device")  # e.g. the record could not be written

    try:
        blocker = jobs.submit("a", Steps(100_000), label="stopped", on_end=note)
        never = jobs.submit("a", Steps(1), label="never started", on_end=note)
        never.stop()
        failing = jobs.submit("a", fails, label="fails", on_end=note)
        done = jobs.submit("a", Steps(3), label="done", on_end=note)
        until(lambda: blocker.state is JobState.RUNNING)
        blocker.stop()
        assert done.wait(60) and failing.wait(1) and never.wait(1)
        until(lambda: len(ended) == 4)
        assert sorted(ended) == sorted([
            ("stopped", JobState.STOPPED, None),
            ("never started", JobState.STOPPED, None),
            ("fails", JobState.FAILED, "The job failed: ValueError: batch of wrong shape"),
            ("done", JobState.DONE, None),
        ])
        assert done.result == 3  # the client went on after on_end raised
    finally:
        jobs.shutdown()


def test_small_runs_share_a_gpu_and_a_large_one_waits(tmp_path: Path) -> None:
    """Logical GPUs (a Ray instance told it has one): four runs of a quarter go at once, a whole-GPU run waits."""
    gib = 2**30
    small, large = gpu_share(2 * gib, 80 * gib, workers=4), gpu_share(70 * gib, 80 * gib, workers=4)
    assert (small, large) == (0.25, 1.0)
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from ray import cloudpickle
        import tests.test_jobs as t
        cloudpickle.register_pickle_by_value(t)
        from server.jobs import Jobs, JobState, connect
        connect(cpus=8, gpus=1)
        jobs = Jobs(name="gpu-share", workers=4, max_queue=8, warm=0)
        smalls = [jobs.submit(f"s{{i}}", t.Steps(100_000), share={small}) for i in range(4)]
        big = jobs.submit("big", t.Steps(100_000), share={large})
        t.until(lambda: all(j.state is JobState.RUNNING for j in smalls), timeout=240)
        time.sleep(1)
        jobs.refresh()
        print("while four run:", [j.state.value for j in smalls], big.state.value, big.position)
        for j in smalls:
            j.stop()
        t.until(lambda: big.state is not JobState.QUEUED, timeout=240)
        print("then:", big.state.value, big.started_at >= max(j.finished_at for j in smalls))
        big.stop()
        big.wait(60)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=420, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "while four run: ['running', 'running', 'running', 'running'] queued 1" in out.stdout
    assert "then: running True" in out.stdout or "then: stopped True" in out.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a real CUDA out-of-memory error needs a CUDA GPU")
def test_a_real_cuda_out_of_memory_ends_only_its_job() -> None:
    jobs = new_jobs(workers=1, max_queue=4)
    try:
        failed, after = jobs.submit("a", cuda_hog), jobs.submit("b", cuda_small)
        assert failed.wait(120) and after.wait(120)
        assert failed.state is JobState.FAILED and failed.error == OOM_MESSAGE
        assert after.state is JobState.DONE and after.result == 1024.0
    finally:
        jobs.shutdown()


def cuda_hog(ctx: JobContext) -> None:
    held = [torch.empty(1 << 28, device="cuda")]  # 1 GiB that the job holds when it fails
    held.append(torch.empty(1 << 50, device="cuda"))  # 4 PiB: no GPU has it


def cuda_small(ctx: JobContext) -> float:
    return float(torch.ones(1024, device="cuda").sum())


def test_workers_read_the_built_in_shapes_from_one_file_drawn_once(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_core.data import load_dataset
    from server.work import _builtin_from_file

    monkeypatch.setenv("RESNET_DATA_DIR", str(tmp_path))
    drawn = _builtin_from_file()
    (cached,) = tmp_path.glob("builtin-*.safetensors")
    read = _builtin_from_file()  # a second worker: reads the file
    truth = load_dataset("builtin")
    for d in (drawn, read):
        assert all(torch.equal(getattr(d, k), getattr(truth, k)) for k in ("x_train", "y_train", "x_test", "y_test"))
        assert (d.classes, d.mean, d.std) == (truth.classes, truth.mean, truth.std)
    cached.write_bytes(b"not a safetensors file")  # a damaged file is drawn again, never trusted
    assert torch.equal(_builtin_from_file().x_test, truth.x_test)

"""The job runner: order, positions, stop within one step, failures and out-of-memory contained, bounded."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import torch

from resnet_core.jobs import OOM_MESSAGE, JobContext, JobRunner, JobState, QueueFull


@pytest.fixture
def runner() -> JobRunner:
    r = JobRunner(workers=1, max_queue=3)
    yield r
    r.shutdown()


def stepping(n: int, log: list[str], name: str, step_s: float = 0.001):  # type: ignore[no-untyped-def]
    def fn(ctx: JobContext) -> int:
        log.append(f"{name} start")
        done = 0
        for _ in range(n):
            if ctx.should_stop():
                break
            time.sleep(step_s)
            done += 1
            ctx.report(done)
        log.append(f"{name} end")
        return done
    return fn


def test_jobs_run_one_at_a_time_in_queue_order(runner: JobRunner) -> None:
    gate = threading.Event()
    log: list[str] = []
    first = runner.submit("a", lambda ctx: gate.wait(5))
    while first.state != JobState.RUNNING:
        time.sleep(0.001)
    jobs = [runner.submit(o, stepping(3, log, o)) for o in ("b", "c")]
    assert runner.position(jobs[0].id) == 1 and runner.position(jobs[1].id) == 2
    assert jobs[0].state == JobState.QUEUED and runner.jobs_of("b") == [jobs[0]]
    gate.set()
    assert all(j.wait(5) for j in jobs) and first.wait(1)
    assert log == ["b start", "b end", "c start", "c end"]  # never interleaved: one worker
    assert [j.state for j in jobs] == [JobState.DONE, JobState.DONE] and jobs[1].result == 3


def test_stop_takes_effect_within_one_step(runner: JobRunner) -> None:
    reached = threading.Event()
    steps: list[int] = []

    def fn(ctx: JobContext) -> None:
        i = 0
        while not ctx.should_stop():
            i += 1
            steps.append(i)
            if i == 5:
                reached.set()
            time.sleep(0.005)

    job = runner.submit("a", fn)
    assert reached.wait(5)
    runner.stop(job.id)
    stopped_at = len(steps)
    assert job.wait(5)
    assert job.state == JobState.STOPPED and len(steps) <= stopped_at + 1


def test_a_queued_job_that_is_stopped_never_starts(runner: JobRunner) -> None:
    gate = threading.Event()
    runner.submit("a", lambda ctx: gate.wait(5))
    started: list[bool] = []
    job = runner.submit("b", lambda ctx: started.append(True))
    runner.stop(job.id)
    gate.set()
    assert job.wait(5) and job.state == JobState.STOPPED and not started


def test_exceptions_and_out_of_memory_end_only_their_job(runner: JobRunner) -> None:
    def boom(ctx: JobContext) -> None:
        raise ValueError("batch of wrong shape")

    def oom(ctx: JobContext) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    bad = runner.submit("a", boom)
    out = runner.submit("b", oom)
    good = runner.submit("c", lambda ctx: 42)
    assert good.wait(5) and bad.wait(1) and out.wait(1)
    assert bad.state == JobState.FAILED and bad.error == "The job failed: ValueError: batch of wrong shape"
    assert out.state == JobState.FAILED and out.error == OOM_MESSAGE and "smaller batch" in OOM_MESSAGE
    assert good.state == JobState.DONE and good.result == 42


def test_a_full_queue_says_busy(runner: JobRunner) -> None:
    gate = threading.Event()
    first = runner.submit("a", lambda ctx: gate.wait(5))
    while first.state != JobState.RUNNING:  # the first job has left the queue and runs
        time.sleep(0.001)
    for o in "bcd":
        runner.submit(o, lambda ctx: None)
    with pytest.raises(QueueFull, match=r"busy.*try again later"):
        runner.submit("e", lambda ctx: None)
    gate.set()


def test_time_cap_stops_a_job() -> None:
    r = JobRunner(max_seconds=0.1)
    try:
        job = r.submit("a", stepping(10_000, [], "a", step_s=0.005))
        assert job.wait(5)
        assert job.state == JobState.STOPPED and job.result < 10_000
    finally:
        r.shutdown()


def test_progress_history_stays_bounded_and_keeps_the_newest(runner: JobRunner) -> None:
    job = runner.submit("a", stepping(5000, [], "a", step_s=0), max_progress=100)
    assert job.wait(10)
    kept = job.progress()
    assert len(kept) <= 101 and kept == sorted(kept)  # the bound, and the latest report
    assert kept[-1] == 5000 and len(set(kept)) == len(kept)  # the latest report is always kept
    gaps = {b - a for a, b in itertools.pairwise(kept[:-1])}
    assert len(gaps) == 1  # thinned evenly
    assert job.reports == 5000  # every report is counted, kept or not: a page redraws when this changes

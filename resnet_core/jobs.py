"""A job runner for long work (training) shared by every user of one server.

Many users, few devices: jobs wait in one bounded FIFO queue and `workers` threads (one per GPU by
default) run them one at a time each. A job's owner sees its state, its place in the queue and its
progress; a stop takes effect at the job's next check (each training step); a full queue refuses new
work with a message instead of growing. An exception ends only its own job: an out-of-memory error
frees the device's cached memory and says what to try, and the next job runs normally.

The runner knows nothing about training or Streamlit: a job is any `fn(ctx) -> result`.
"""

from __future__ import annotations

import gc
import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch

from .train.trainer import MAX_STEP_HISTORY, History


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"  # by its owner, or by the time cap
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.STOPPED, JobState.FAILED)


class QueueFull(RuntimeError):
    """Every place in the queue is taken."""


OOM_MESSAGE = (
    "The GPU ran out of memory. Try a smaller batch size or a smaller input (or a smaller model); "
    "the memory was freed and the next job runs normally."
)


@dataclass
class JobContext:
    """What a running job may ask of the runner."""

    job: Job
    deadline: float | None  # time.monotonic() after which should_stop() is True

    def should_stop(self) -> bool:
        return self.job._stop.is_set() or (self.deadline is not None and time.monotonic() > self.deadline)

    def report(self, item: Any) -> None:
        self.job._add_progress(item)


@dataclass
class Job:
    id: int
    owner: str
    label: str
    fn: Callable[[JobContext], Any] = field(repr=False)
    meta: Any = field(default=None, repr=False)  # the owner's own description of the job (the runner ignores it)
    on_end: Callable[[Job], None] | None = field(default=None, repr=False)  # called once it has ended, however
    max_seconds: float | None = None
    max_progress: int = MAX_STEP_HISTORY  # step reports kept (thinned evenly beyond); every epoch report is kept
    state: JobState = JobState.QUEUED
    result: Any = None
    error: str | None = None
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    _progress: History[Any] = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        self._progress = History(self.max_progress)

    def _add_progress(self, item: Any) -> None:
        with self._lock:
            self._progress.add(item)

    def progress(self) -> list[Any]:
        with self._lock:
            return self._progress.to_list()

    @property
    def reports(self) -> int:
        """Progress items reported so far, kept or thinned out: a view of the progress is current while this
        has not changed."""
        return len(self._progress)

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()


class JobRunner:
    def __init__(self, *, workers: int = 1, max_queue: int = 8, max_seconds: float | None = None,
                 ttl_seconds: float | None = None, name: str = "jobs") -> None:
        if workers < 1 or max_queue < 1:
            raise ValueError(f"workers={workers} and max_queue={max_queue} must both be at least 1")
        self.max_queue = max_queue
        self.max_seconds = max_seconds
        self.ttl_seconds = ttl_seconds  # finished jobs are dropped this long after they end
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: dict[int, Job] = {}
        self._gone: set[str] = set()  # owners forgotten while one of their jobs still ran
        self._waiting: list[int] = []  # ids in queue order, for positions
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # --- what users do ----------------------------------------------------------------------------

    def submit(self, owner: str, fn: Callable[[JobContext], Any], *, label: str = "",
               max_seconds: float | None = None, meta: Any = None,
               on_end: Callable[[Job], None] | None = None, max_progress: int = MAX_STEP_HISTORY) -> Job:
        """Queue `fn`; raises QueueFull ("busy, try again later") when every place is taken. `on_end(job)` runs
        on the worker once the job has ended in any way (done, stopped, failed, or stopped before it started)."""
        cap = min(filter(None, (max_seconds, self.max_seconds)), default=None)
        self.prune()
        with self._lock:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(
                    f"The server is busy: {len(self._waiting)} jobs are waiting. Please try again later."
                )
            job = Job(id=next(self._ids), owner=owner, label=label, fn=fn, meta=meta, on_end=on_end,
                      max_seconds=cap, max_progress=max_progress)
            self._jobs[job.id] = job
            self._waiting.append(job.id)
        self._queue.put(job)
        return job

    def get(self, job_id: int) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def jobs_of(self, owner: str) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if j.owner == owner]

    def position(self, job_id: int) -> int | None:
        """1 for the next job to start, 2 for the one after...; None once it has started."""
        with self._lock:
            return self._waiting.index(job_id) + 1 if job_id in self._waiting else None

    def stop(self, job_id: int) -> None:
        """Ask a job to stop: a queued job never starts, a running one ends at its next check."""
        job = self._jobs.get(job_id)
        if job is not None:
            job.stop()

    def adopt(self, job_id: int, owner: str) -> Job | None:
        """Hand a job to another owner (the same person in a new session, e.g. after a reload)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                job.owner = owner
            return job

    def forget(self, owner: str) -> None:
        """Stop and drop every job of an owner (a session that ended): a queued job never starts, a running
        one ends at its next check and is dropped when it has ended, so its place frees at once."""
        with self._lock:
            mine = [j for j in self._jobs.values() if j.owner == owner]
            if mine:
                self._gone.add(owner)  # until its last job is dropped
        for j in mine:
            j.stop()
        with self._lock:
            for j in mine:
                if j.state.finished:
                    self._drop(j)

    def _drop(self, job: Job) -> None:
        """Forget a finished job of an owner that is gone, and the owner with its last job (lock held)."""
        self._jobs.pop(job.id, None)
        if not any(j.owner == job.owner for j in self._jobs.values()):
            self._gone.discard(job.owner)

    def prune(self) -> None:
        """Drop jobs that finished more than `ttl_seconds` ago (their owners keep what they took from them)."""
        if self.ttl_seconds is None:
            return
        cutoff = time.time() - self.ttl_seconds
        with self._lock:
            for job_id in [j.id for j in self._jobs.values() if j.finished_at is not None and j.finished_at < cutoff]:
                del self._jobs[job_id]

    def __len__(self) -> int:
        """Jobs the runner holds: queued, running, and finished ones not yet dropped."""
        with self._lock:
            return len(self._jobs)

    def queued(self) -> int:
        with self._lock:
            return len(self._waiting)

    def shutdown(self, timeout: float = 10.0) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for j in jobs:
            j.stop()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)

    # --- the workers ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                self._waiting.remove(job.id)
            self._run(job)

    def _run(self, job: Job) -> None:
        ctx = JobContext(job, None)
        try:
            if job.stop_requested:  # stopped while it waited: it never starts
                job.state = JobState.STOPPED
                return
            job.state, job.started_at = JobState.RUNNING, time.time()
            ctx.deadline = time.monotonic() + job.max_seconds if job.max_seconds else None
            job.result = job.fn(ctx)
            # The state follows the result: a run that cut itself short (its own time or step limit) is stopped.
            cut = ctx.should_stop() or getattr(job.result, "stopped", False)
            job.state = JobState.STOPPED if cut else JobState.DONE
        except torch.OutOfMemoryError:
            job.error, job.state = OOM_MESSAGE, JobState.FAILED
        except Exception as e:  # one job's failure must never take the runner down
            job.error = f"The job failed: {type(e).__name__}: {e}"
            job.state = JobState.FAILED
            job._traceback = traceback.format_exc()  # type: ignore[attr-defined]  # for server logs only
        finally:
            job.finished_at = time.time()
            if job.on_end is not None:
                try:
                    job.on_end(job)
                except Exception:  # e.g. a full disk: the job's own result stands, the runner goes on
                    job._on_end_traceback = traceback.format_exc()  # type: ignore[attr-defined]  # for server logs
            job.fn, job.on_end = _done_fn, None  # let the closures (model, data) be collected
            with self._lock:
                if job.owner in self._gone:  # nobody is left to look at it
                    self._drop(job)
            _release_memory()
            job._done.set()


def _done_fn(ctx: JobContext) -> None:
    return None


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

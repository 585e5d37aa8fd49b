"""Training runs and races as Ray actors, behind one queue that every app replica on a cluster shares.

Three kinds of process take part:

- The **queue** (`JobQueue`), one named, detached actor per cluster: the order of the jobs, the bound on how many
  wait, who owns and who follows each job, and which run next. It starts each job on a `RunActor` when the
  job's share of a device is free, first come first served, and notices when a worker dies.
- A **run actor** per job, in a worker process of its own: it runs the job (any picklable `fn(ctx)`), keeps its
  progress for the pages to read, stops at the owner's request, and ends with its outcome, its progress and
  its result in Ray's object store. A crash, a CUDA or host out-of-memory or a killed process ends only that
  job. One run actor is kept warm (torch imported, the built-in data loaded) so a student's first report does
  not wait for an import.
- The **client** (`Jobs`), one per app process: handles on the jobs its sessions started or follow, refreshed
  from the queue four times a second by one thread, so a page reads a job's state without a remote call.

Nothing here imports Streamlit; the pages reach it through ui/training.py.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
import os
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from server.settings import ENGINE

# Ray decides at import whether this process may advertise a network address: on loopback only, unless the app
# joins a cluster on other machines (an embedded instance must never be reachable from the network).
if not ENGINE.address or ENGINE.address.split(":")[0] in ("127.0.0.1", "localhost"):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray
from ray import cloudpickle
from ray.exceptions import GetTimeoutError, RayActorError, RayError
from ray.exceptions import OutOfMemoryError as HostOutOfMemoryError

NAMESPACE = "resnet-explorer"
QUEUE_NAME = "jobs"
IDLE_REFRESH_S = 2.0  # the client's refresh while none of its jobs waits or runs
ORPHAN_GRACE_S = 3.0  # a finished job nobody looks at stays this long: its app sees it end, then it goes


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"  # by its owner, or by its time or step limit
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.STOPPED, JobState.FAILED)


class QueueFull(RuntimeError):
    """Every place in the queue is taken."""


class NotYours(PermissionError):
    """Only a job's owner may stop it; a follower may leave it."""


OOM_MESSAGE = (
    "The GPU ran out of memory. Try a smaller batch size or a smaller input (or a smaller model); "
    "the memory was freed and the next job runs normally."
)
HOST_OOM_MESSAGE = (
    "The run needed more memory than the machine had free, so its worker was stopped. Try a smaller batch size "
    "or a smaller model; the next job runs normally."
)
WORKER_LOST_MESSAGE = (
    "The worker stopped: its process ended in the middle of the run (killed, or a node lost). The server goes "
    "on; start the run again."
)


# ----------------------------------------------------------------------------------------------
# The engine: an embedded local instance, or a cluster.


def connect(address: str | None = None, *, cpus: int | None = None, gpus: int | None = None) -> None:
    """Join the Ray cluster at `address` (e.g. "10.0.0.5:6379"), or start an embedded local instance that listens
    on loopback only, with no dashboard. Idempotent: the first call of a process decides."""
    with _connect_lock:
        if ray.is_initialized():
            return
        # Ray's processes die with the *thread* that starts them (Linux's parent-death signal follows the thread),
        # and Streamlit runs each page in a short-lived thread: start them from one that lives as long as the app.
        failure: list[BaseException] = []
        started = threading.Event()

        def keeper() -> None:
            try:
                _init(address, cpus=cpus, gpus=gpus)
            except BaseException as e:  # said in the caller's thread
                failure.append(e)
            started.set()
            threading.Event().wait()  # forever: the parent of Ray's processes

        threading.Thread(target=keeper, name="ray-keeper", daemon=True).start()
        started.wait()
        if failure:
            raise failure[0]


_connect_lock = threading.Lock()


def _init(address: str | None, *, cpus: int | None, gpus: int | None) -> None:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: workers import server/
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}}
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING", "configure_logging": False}
    if address:
        ray.init(address=address, namespace=NAMESPACE, runtime_env=env, **quiet)
    else:
        # Workers at the server's own priority (Ray's default lowers them to nice 15): a run then shares the CPU
        # with the browser and the server as the in-process trainer did, instead of stalling behind both.
        # The server's OMP_WAIT_POLICY (app.py: idle threads sleep, for the browser's sake) is not the trainers':
        # its workers start from the environment as it was, as a bare trainer would.
        passive = os.environ.pop("OMP_WAIT_POLICY", None)
        try:
            ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, namespace=NAMESPACE,
                     _node_ip_address="127.0.0.1", runtime_env=env, _system_config={"worker_niceness": 0}, **quiet)
        finally:
            if passive is not None:
                os.environ["OMP_WAIT_POLICY"] = passive


def gpu_share(memory_bytes: int, gpu_memory_bytes: int, workers: int) -> float:
    """The fraction of a GPU a run asks for: one of `workers` equal slots when its training memory fits in one,
    more slots when it needs them, a whole GPU at most."""
    slot = 1 / workers
    slots = max(1, math.ceil(memory_bytes / gpu_memory_bytes / slot - 1e-9))
    return min(1.0, slots * slot)


# ----------------------------------------------------------------------------------------------
# What a run actor gives the job it runs.


class JobContext:
    """What a running job may ask: whether to stop, and where to report progress."""

    def __init__(self, actor: RunActor, deadline: float | None) -> None:
        self._actor, self.deadline = actor, deadline

    @property
    def stop_requested(self) -> bool:
        """The owner pressed Stop (or the queue stopped it for a session that is gone)."""
        return self._actor._stop.is_set()

    def should_stop(self) -> bool:
        """Stop requested, or the server's time cap for a job has passed."""
        return self.stop_requested or (self.deadline is not None and time.monotonic() > self.deadline)

    def report(self, item: Any) -> None:
        self._actor._report(item)


def _kind(item: Any) -> str:
    return str(getattr(item, "kind", "step"))


def _milestone(item: Any) -> dict[str, Any]:
    """The plain fields of an epoch report, for the queue (which never imports torch) and the run records."""
    return {k: v for k, v in vars(item).items() if isinstance(v, int | float | str | type(None))}


class _WarmUp(threading.Thread):
    """torch's import and the default path's data, in a thread of the lowest priority (Linux keeps a niceness per
    thread, so the threads that will train keep theirs): a spare made while a run trains beside it takes only the
    CPU that run leaves idle. When its job comes before it is done, `hurry` gives it back the process's priority,
    so that a busy machine cannot starve the job's start."""

    def __init__(self) -> None:
        super().__init__(name="warm-up", daemon=True)
        self.niceness = os.getpriority(os.PRIO_PROCESS, 0)
        self.tid: int | None = None
        self.hurried = False

    def run(self) -> None:
        self.tid = threading.get_native_id()
        if not self.hurried:  # a job already waits for it: no reason to yield
            with contextlib.suppress(OSError):  # not allowed: warm as it is
                os.setpriority(os.PRIO_PROCESS, self.tid, 19)
        import torch  # noqa: F401

        from server.work import worker_dataset

        worker_dataset("builtin")  # made once per worker process

    def hurry(self) -> None:
        self.hurried = True
        if self.is_alive() and self.tid is not None:
            with contextlib.suppress(OSError):  # lowering a niceness needs CAP_SYS_NICE: without it, it only waits
                os.setpriority(os.PRIO_PROCESS, self.tid, self.niceness)
        self.join()


@ray.remote(max_concurrency=8, max_restarts=0)
class RunActor:
    """One job in a worker process of its own. Created before its job arrives (warm), it runs one job and is
    then ended by the queue."""

    def __init__(self, threads: int, queue_name: str) -> None:
        from resnet_core.train.trainer import History

        self._threads = max(1, threads)
        self._warm = _WarmUp()
        self._warm.start()
        self._queue_name = queue_name
        self._history_type = History
        self._history: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._job_id: int | None = None

    def ready(self) -> int:
        return os.getpid()

    def _report(self, item: Any) -> None:
        with self._lock:
            self._history.add(item)
        if _kind(item) == "epoch":  # one small message per epoch: the queue keeps the latest for run records
            ray.get_actor(self._queue_name, namespace=NAMESPACE).note.remote(self._job_id, _milestone(item))

    @ray.method(num_returns=3)
    def run(self, job_id: int, fn: Callable[[JobContext], Any], max_seconds: float | None,
            max_progress: int | None) -> tuple[dict[str, Any], tuple[int, list[Any]], Any]:
        """(outcome, progress, result): outcome = {"state", "error", "log"}, small and torch-free for the queue;
        progress = (reports made, reports kept)."""
        self._warm.hurry()
        import torch

        # OpenMP's thread count belongs to the calling thread, and Ray sets OMP_NUM_THREADS=1 for its workers: set
        # it in the thread that trains (measured: resnet20 at 1 thread 406 img/s, at the slot's 2 threads 676).
        torch.set_num_threads(self._threads)
        self._job_id = job_id
        # Step reports kept (thinned evenly beyond; every epoch report is kept): the trainer's bound by default.
        self._history = self._history_type(max_progress) if max_progress else self._history_type()
        ctx = JobContext(self, time.monotonic() + max_seconds if max_seconds else None)
        result, outcome = None, {"state": JobState.DONE.value, "error": None, "log": None}
        try:
            result = fn(ctx)
            # The state follows the result: a run that cut itself short (its time or step limit) is stopped.
            if ctx.should_stop() or getattr(result, "stopped", False):
                outcome["state"] = JobState.STOPPED.value
        except torch.OutOfMemoryError:
            outcome.update(state=JobState.FAILED.value, error=OOM_MESSAGE)
        except Exception as e:  # one job's failure ends only that job
            outcome.update(state=JobState.FAILED.value, error=f"The job failed: {type(e).__name__}: {e}",
                           log=traceback.format_exc())
        finally:
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        with self._lock:
            progress = (len(self._history), self._history.to_list())
        return outcome, progress, result

    def progress(self, since: int) -> tuple[int, list[Any] | None]:
        """(reports so far, the kept reports), or (reports, None) while nothing came since `since`."""
        with self._lock:
            if self._history is None:
                return 0, None if since == 0 else []
            n = len(self._history)
            return n, (self._history.to_list() if n != since else None)

    def stop(self) -> None:
        self._stop.set()


# ----------------------------------------------------------------------------------------------
# The queue: one per cluster, named, shared by every replica of the app.


@dataclass
class _Entry:
    id: int
    owner: str
    label: str
    fn: bytes  # the pickled job: the queue never unpickles it (it would import torch)
    meta: bytes | None  # the submitting app's own description, opaque here
    key: str | None  # identical runs share a key: a second Start follows the first
    tag: str | None  # the app's name for it (a run id in a link)
    share: float
    expected_s: float | None
    max_seconds: float | None
    max_progress: int | None
    followers: list[str] = field(default_factory=list)
    state: JobState = JobState.QUEUED
    error: str | None = None
    log: str | None = None
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    stop_requested: bool = False
    milestone: dict[str, Any] | None = None
    orphaned_at: float | None = None  # when it was left finished, with nobody looking
    actor: Any = None
    refs: list[Any] | None = None  # [outcome, progress, result] while it runs and after

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "label": self.label, "key": self.key, "tag": self.tag,
                "followers": list(self.followers), "state": self.state.value, "error": self.error,
                "submitted_at": self.submitted_at, "started_at": self.started_at, "finished_at": self.finished_at,
                "stop_requested": self.stop_requested, "milestone": self.milestone, "share": self.share,
                "actor": self.actor if self.state is JobState.RUNNING else None}


@ray.remote(num_cpus=0, max_concurrency=64)
class JobQueue:
    """The jobs of a cluster in one place; see the module docstring."""

    def __init__(self, *, name: str, workers: int, max_queue: int, max_seconds: float | None,
                 ttl_seconds: float | None, warm: int = 1) -> None:
        if workers < 1 or max_queue < 1:
            raise ValueError(f"workers={workers} and max_queue={max_queue} must both be at least 1")
        self.name, self.workers, self.max_queue = name, workers, max_queue
        self.max_seconds, self.ttl_seconds, self.warm = max_seconds, ttl_seconds, warm
        self._jobs: dict[int, _Entry] = {}
        self._waiting: list[int] = []
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._spares: list[Any] = []  # warm run actors of the common share, created ahead of their job
        self._capacity_at: tuple[float, tuple[str, float, int]] | None = None
        threading.Thread(target=self._loop, name="dispatch", daemon=True).start()

    # --- the device slots --------------------------------------------------------------------------

    def _capacity(self) -> tuple[str, float, int]:
        """("gpu", GPUs in the cluster, CPUs per slot) or ("cpu", nodes, CPUs per slot) of the live nodes, read
        again every few seconds (a node that joins or leaves changes it)."""
        now = time.monotonic()
        if self._capacity_at is None or now - self._capacity_at[0] > 5:
            self._capacity_at = (now, self._read_capacity())
        return self._capacity_at[1]

    def _read_capacity(self) -> tuple[str, float, int]:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        cpus = min((n["Resources"].get("CPU", 1) for n in nodes), default=1)
        per_slot = max(1, int(cpus // self.workers))
        if gpus:
            return "gpu", gpus, per_slot
        return "cpu", float(len(nodes)), per_slot

    def default_share(self) -> float:
        return 1 / self.workers

    def _used(self) -> float:
        """Shares of the device slots taken: by running jobs, and on GPUs by the warm actors, which hold theirs."""
        running = sum(e.share for e in self._jobs.values() if e.state is JobState.RUNNING)
        held = self.default_share() * len(self._spares) if self._capacity()[0] == "gpu" else 0.0
        return running + held

    def _new_actor(self, share: float) -> Any:
        kind, _, per_slot = self._capacity()
        # A GPU actor asks Ray for its share (Ray then gives it its device). On CPU nodes this queue alone admits
        # jobs, so an actor asks for no CPU: a warm one starts while the slot is still busy, ready when it frees.
        # Either way torch uses the slot's CPUs (a node's CPUs / workers) as threads.
        opts = {"num_gpus": share, "num_cpus": 1} if kind == "gpu" else {"num_cpus": 0}
        return RunActor.options(**opts).remote(per_slot, self.name)  # type: ignore[attr-defined]

    def _take_actor(self, share: float) -> Any:
        if self._spares and math.isclose(share, self.default_share()):
            return self._spares.pop(0)
        for spare in self._spares:  # a larger job: the warm ones give back their slot first
            ray.kill(spare)
        self._spares.clear()
        return self._new_actor(share)

    def _top_up(self) -> None:
        kind, capacity, _ = self._capacity()
        while len(self._spares) < self.warm and (
                kind == "cpu" or self._used() + self.default_share() <= capacity + 1e-9):
            self._spares.append(self._new_actor(self.default_share()))

    # --- the dispatcher ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                self._tick()
            except Exception:  # the queue must outlive any one bad tick
                traceback.print_exc()
            time.sleep(0.1)

    def _tick(self) -> None:
        with self._lock:
            running = {e.refs[0]: e for e in self._jobs.values() if e.state is JobState.RUNNING and e.refs}
        if running:
            ready, _ = ray.wait(list(running), num_returns=len(running), timeout=0)
            for ref in ready:
                self._end(running[ref], ref)
        with self._lock:
            self._start_next()
            self._top_up()
            self._prune()

    def _end(self, e: _Entry, ref: Any) -> None:
        try:
            outcome = ray.get(ref)
            state, error, log = JobState(outcome["state"]), outcome["error"], outcome["log"]
        except HostOutOfMemoryError:
            state, error, log = JobState.FAILED, HOST_OOM_MESSAGE, None
        except RayActorError:  # killed (SIGKILL), crashed, or its node went away
            state, error, log = JobState.FAILED, WORKER_LOST_MESSAGE, None
        with self._lock:
            e.state, e.error, e.log, e.finished_at = state, error, log, time.time()
            ray.kill(e.actor)  # its outcome, progress and result stay in the object store, owned by this queue
            e.actor = None
            self._drop_if_nobody_looks(e)

    def _start_next(self) -> None:
        _, capacity, _ = self._capacity()
        while self._waiting:
            e = self._jobs[self._waiting[0]]
            spare = (self.default_share() if self._capacity()[0] == "gpu" and self._spares
                     and math.isclose(e.share, self.default_share()) else 0)
            if self._used() - spare + e.share > capacity + 1e-9:
                return  # first come, first served: nothing overtakes the head of the queue
            self._waiting.pop(0)
            e.actor = self._take_actor(e.share)
            e.refs = e.actor.run.remote(e.id, _Pickled(e.fn), e.max_seconds, e.max_progress)
            e.state, e.started_at = JobState.RUNNING, time.time()

    def _request_stop(self, e: _Entry) -> Any:
        """A job that waits leaves the queue at once and never starts; one that runs is asked to stop (its actor,
        to call outside the lock, is returned)."""
        e.stop_requested = True
        if e.id in self._waiting:
            self._waiting.remove(e.id)
            e.state, e.finished_at = JobState.STOPPED, time.time()
            self._drop_if_nobody_looks(e)
        return e.actor

    def _drop_if_nobody_looks(self, e: _Entry) -> None:
        """A finished job of a session that is gone, with nobody following: dropped a few seconds later, once the
        app that started it has seen it end (and written its record)."""
        if e.owner == "" and not e.followers and e.state.finished:
            e.orphaned_at = time.time()

    def _prune(self) -> None:
        now = time.time()
        for e in list(self._jobs.values()):
            ttl = self.ttl_seconds
            expired = ttl is not None and e.finished_at is not None and e.finished_at < now - ttl
            if expired or (e.orphaned_at is not None and e.orphaned_at < now - ORPHAN_GRACE_S):
                del self._jobs[e.id]

    # --- what the app asks -------------------------------------------------------------------------

    def submit(self, owner: str, fn: bytes, *, label: str, meta: bytes | None, key: str | None, tag: str | None,
               share: float | None, expected_s: float | None, max_seconds: float | None,
               max_progress: int | None) -> tuple[int, bool]:
        """(job id, whether it follows an identical job already queued or running); raises QueueFull."""
        with self._lock:
            self._prune()
            if key is not None:
                for e in self._jobs.values():
                    if e.key == key and not e.state.finished and not e.stop_requested:
                        if owner != e.owner and owner not in e.followers:
                            e.followers.append(owner)
                        return e.id, True
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"The server is busy: {len(self._waiting)} jobs are waiting. "
                                "Please try again later.")
            cap = min(filter(None, (max_seconds, self.max_seconds)), default=None)
            e = _Entry(next(self._ids), owner, label, fn, meta, key, tag, share or self.default_share(), expected_s,
                       cap, max_progress)
            self._jobs[e.id] = e
            self._waiting.append(e.id)
            return e.id, False

    def snapshot(self, ids: list[int] | None = None) -> dict[int, dict[str, Any]]:
        """The state of the jobs `ids` (all when None), with each queued one's place and estimated start."""
        with self._lock:
            starts = self._estimated_starts()
            chosen = self._jobs.values() if ids is None else [self._jobs[i] for i in ids if i in self._jobs]
            out = {}
            for e in chosen:
                snap = e.snapshot()
                if e.id in self._waiting:
                    snap["position"] = self._waiting.index(e.id) + 1
                    snap["estimated_start"] = starts.get(e.id)
                out[e.id] = snap
            return out

    def _estimated_starts(self) -> dict[int, float | None]:
        """When each queued job should start, if every job runs for its expected time (None: not known)."""
        _, capacity, _ = self._capacity()
        now = time.time()
        ends: list[tuple[float, float]] = []  # (expected end, share) of what runs
        for e in self._jobs.values():
            if e.state is JobState.RUNNING:
                if e.expected_s is None:
                    return {}
                ends.append((max(now, (e.started_at or now) + e.expected_s), e.share))
        starts: dict[int, float | None] = {}
        used, t = sum(s for _, s in ends), now
        for job_id in self._waiting:
            e = self._jobs[job_id]
            ends.sort()
            while used + e.share > capacity + 1e-9 and ends:
                t, share = ends.pop(0)
                used -= share
            if e.expected_s is None:
                break
            starts[job_id] = t
            ends.append((t + e.expected_s, e.share))
            used += e.share
        return starts

    def find(self, tag: str) -> int | None:
        with self._lock:
            return next((e.id for e in self._jobs.values() if e.tag == tag), None)

    def meta(self, job_id: int) -> bytes | None:
        with self._lock:
            e = self._jobs.get(job_id)
            return e.meta if e is not None else None

    def final(self, job_id: int) -> list[Any] | None:
        """[progress, result] refs of a finished job (wrapped in a list, so Ray hands over the refs)."""
        with self._lock:
            e = self._jobs.get(job_id)
            if e is None or not e.state.finished or e.refs is None:
                return None
            return [e.refs[1], e.refs[2]]

    def log(self, job_id: int) -> str | None:
        """The traceback of a job that failed, for the server's log."""
        e = self._jobs.get(job_id)
        return e.log if e is not None else None

    def note(self, job_id: int, milestone: dict[str, Any]) -> None:
        with self._lock:
            if (e := self._jobs.get(job_id)) is not None:
                e.milestone = milestone

    def stop(self, job_id: int, owner: str | None = None) -> None:
        """Stop a job: one that waits never starts, one that runs ends at its next step. Only its owner may
        (`owner` None: the server itself, e.g. for a session that is gone)."""
        with self._lock:
            e = self._jobs.get(job_id)
            if e is None or e.state.finished:
                return
            if owner is not None and owner != e.owner:
                raise NotYours("Only the student who started this run can stop it; you can leave it.")
            actor = self._request_stop(e)
        if actor is not None:
            actor.stop.remote()

    def leave(self, job_id: int, who: str) -> None:
        """A follower stops following; the owner of a job that waits takes it out of the queue."""
        with self._lock:
            e = self._jobs.get(job_id)
            if e is None:
                return
            if who in e.followers:
                e.followers.remove(who)
            elif who == e.owner:
                if e.state is JobState.QUEUED:
                    self._request_stop(e)
                elif e.followers:
                    e.owner = e.followers.pop(0)

    def follow(self, job_id: int, who: str) -> bool:
        """`who` follows a job someone else owns (a shared link): it sees it live and may leave it."""
        with self._lock:
            e = self._jobs.get(job_id)
            if e is None:
                return False
            if who != e.owner and who not in e.followers:
                e.followers.append(who)
            return True

    def adopt(self, job_id: int, owner: str) -> bool:
        """Hand a job to another owner (the same person in a new session: a reload)."""
        with self._lock:
            e = self._jobs.get(job_id)
            if e is None:
                return False
            if owner in e.followers:
                e.followers.remove(owner)
            e.owner = owner
            return True

    def forget(self, owner: str) -> None:
        """A session that is gone: it stops following; a job it owns passes to its first follower, or stops
        (one that waits never starts) and is dropped once it has ended."""
        stops = []
        with self._lock:
            for e in list(self._jobs.values()):
                if owner in e.followers:
                    e.followers.remove(owner)
                if e.owner != owner:
                    continue
                if e.followers and not e.state.finished:
                    e.owner = e.followers.pop(0)
                    continue
                e.owner = ""
                if e.state.finished:
                    self._drop_if_nobody_looks(e)
                else:
                    stops.append(self._request_stop(e))
        for actor in stops:
            if actor is not None:
                actor.stop.remote()

    def queued(self) -> int:
        with self._lock:
            return len(self._waiting)

    def size(self) -> int:
        with self._lock:
            return len(self._jobs)

    def shutdown(self) -> None:
        with self._lock:
            for e in self._jobs.values():
                e.stop_requested = True
                if e.actor is not None:
                    ray.kill(e.actor)
            for spare in self._spares:
                ray.kill(spare)
            self._spares.clear()


class _Pickled:
    """A job pickled by the app and unpickled only in its run actor."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __call__(self, ctx: JobContext) -> Any:
        return pickle.loads(self.data)(ctx)


# ----------------------------------------------------------------------------------------------
# The app's side: handles on jobs, refreshed by one thread.


class Job:
    """A job as one app process sees it. State fields are refreshed from the queue; `progress()` asks the run
    actor (or, once it has ended, the object store) and `result` is fetched once when it is first read."""

    def __init__(self, jobs: Jobs, snap: dict[str, Any], meta: Any = None) -> None:
        self._jobs = jobs
        self.id: int = snap["id"]
        self.meta = meta
        self.reports = 0  # progress reports so far, kept or thinned out: a view is current while this holds
        self._progress: list[Any] = []
        self._final: tuple[tuple[int, list[Any]], Any] | None = None
        self.on_update: Callable[[Job], None] | None = None
        self.on_end: Callable[[Job], None] | None = None
        self._update(snap)

    def _update(self, snap: dict[str, Any]) -> bool:
        """Take the queue's snapshot; True when something a watcher cares about changed."""
        before = (getattr(self, "state", None), getattr(self, "milestone", None))
        self.owner: str = snap["owner"]
        self.label: str = snap["label"]
        self.key: str | None = snap["key"]
        self.tag: str | None = snap["tag"]
        self.followers: list[str] = snap["followers"]
        self.state = JobState(snap["state"])
        self.error: str | None = snap["error"]
        self.submitted_at: float = snap["submitted_at"]
        self.started_at: float | None = snap["started_at"]
        self.finished_at: float | None = snap["finished_at"]
        self.stop_requested: bool = snap["stop_requested"]
        self.milestone: dict[str, Any] | None = snap["milestone"]
        self.share: float = snap["share"]
        self.position: int | None = snap.get("position")
        self.estimated_start: float | None = snap.get("estimated_start")
        self._actor = snap["actor"]
        return (self.state, self.milestone) != before

    def progress(self) -> list[Any]:
        """The kept progress reports, oldest first; sets `reports` to match."""
        if self.state.finished:
            (self.reports, progress), _ = self._fetch_final()
            return progress
        if self._actor is not None:
            try:
                n, items = ray.get(self._actor.progress.remote(self.reports), timeout=5)
            except (RayActorError, GetTimeoutError):  # it ended meanwhile, or is busy: the last view stands
                return self._progress
            if items is not None:
                self.reports, self._progress = n, items
        return self._progress

    def _fetch_final(self) -> tuple[tuple[int, list[Any]], Any]:
        if self._final is None:
            refs = ray.get(self._jobs.queue.final.remote(self.id))
            seen = ((self.reports, self._progress), None)
            try:
                self._final = (ray.get(refs[0]), ray.get(refs[1])) if refs is not None else seen
            except RayError:  # its worker died: what this page saw last is all there is
                self._final = seen
        return self._final

    @property
    def result(self) -> Any:
        return self._fetch_final()[1] if self.state.finished else None

    def stop(self, owner: str | None = None) -> None:
        self._jobs.stop(self.id, owner)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the job has ended; False if `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.state.finished:
            if deadline is not None and time.monotonic() > deadline:
                return False
            self._jobs.refresh()
            time.sleep(0.05)
        return True

    def __repr__(self) -> str:
        return f"Job(id={self.id}, label={self.label!r}, state={self.state.value})"


class Jobs:
    """The app process's handle on the cluster's queue (created by the first replica that asks, with its
    settings; joined by the others)."""

    def __init__(self, *, workers: int = 1, max_queue: int = 8, max_seconds: float | None = None,
                 ttl_seconds: float | None = None, name: str = QUEUE_NAME, warm: int = 1,
                 refresh_s: float = 0.25) -> None:
        if not ray.is_initialized():
            connect()
        self.name = name
        self.queue = JobQueue.options(  # type: ignore[attr-defined]
            name=name, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
        ).remote(name=name, workers=workers, max_queue=max_queue, max_seconds=max_seconds,
                 ttl_seconds=ttl_seconds, warm=warm)
        self._jobs: dict[int, Job] = {}
        self._local: set[str] = set()  # owners and followers of this process's sessions
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._wake = threading.Event()  # a job to follow: refresh now
        threading.Thread(target=self._refresh_forever, args=(refresh_s,), name=f"{name}-refresh",
                         daemon=True).start()

    # --- what the pages do ---------------------------------------------------------------------------

    def submit(self, owner: str, fn: Callable[[JobContext], Any], *, label: str = "", meta: Any = None,
               key: str | None = None, tag: str | None = None, share: float | None = None,
               expected_s: float | None = None, max_seconds: float | None = None,
               max_progress: int | None = None, on_update: Callable[[Job], None] | None = None,
               on_end: Callable[[Job], None] | None = None) -> Job:
        """Queue `fn` (run as `fn(ctx)` in a worker; it must pickle); raises QueueFull. With `key`, a job
        identical to one already queued or running is not queued again: the returned job is that one, and
        `owner` follows it. `on_update(job)` runs here when its state or latest epoch changes, `on_end(job)`
        once when it has ended; neither may break the client."""
        packed_meta = cloudpickle.dumps(meta) if meta is not None else None
        job_id, _ = ray.get(self.queue.submit.remote(
            owner, cloudpickle.dumps(fn), label=label, meta=packed_meta, key=key, tag=tag, share=share,
            expected_s=expected_s, max_seconds=max_seconds, max_progress=max_progress))
        with self._lock:
            self._local.add(owner)
        job = self._track(job_id)
        if job.meta is None:
            job.meta = meta
        if job.owner == owner and job.on_end is None:  # callbacks belong to the app that started the job
            job.on_update, job.on_end = on_update, on_end
            if job.state is not JobState.QUEUED:  # it started (or ended) before this line
                _call(on_update, job)
            if job.state.finished:
                _call(on_end, job)
                job.on_update = job.on_end = None
        return job

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None else self._track(job_id, missing_ok=True)

    def find(self, tag: str) -> Job | None:
        """The job the app named `tag` (e.g. a run id from a link), on any replica."""
        job_id = ray.get(self.queue.find.remote(tag))
        return self.get(job_id) if job_id is not None else None

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def jobs_of(self, owner: str) -> list[Job]:
        return [j for j in self.jobs() if j.owner == owner]

    def position(self, job_id: int) -> int | None:
        job = self.get(job_id)
        return job.position if job is not None else None

    def stop(self, job_id: int, owner: str | None = None) -> None:
        ray.get(self.queue.stop.remote(job_id, owner))
        self.refresh([job_id])

    def leave(self, job_id: int, who: str) -> None:
        ray.get(self.queue.leave.remote(job_id, who))
        self.refresh([job_id])

    def adopt(self, job_id: int, owner: str) -> Job | None:
        """`owner`, a session of this process, takes the job over (a reload)."""
        return self._join(self.queue.adopt, job_id, owner)

    def follow(self, job_id: int, who: str) -> Job | None:
        """`who`, a session of this process, follows a job someone else owns."""
        return self._join(self.queue.follow, job_id, who)

    def _join(self, method: Any, job_id: int, who: str) -> Job | None:
        if not ray.get(method.remote(job_id, who)):
            return None
        with self._lock:
            self._local.add(who)
        return self._track(job_id)

    def forget(self, owner: str) -> None:
        ray.get(self.queue.forget.remote(owner))
        with self._lock:
            self._local.discard(owner)
        self.refresh()

    def local_owners(self) -> set[str]:
        """The sessions of this process that own or follow a job."""
        with self._lock:
            return set(self._local)

    def queued(self) -> int:
        return int(ray.get(self.queue.queued.remote()))

    def __len__(self) -> int:
        return int(ray.get(self.queue.size.remote()))

    def shutdown(self) -> None:
        """Stop this client; with a queue of its own (tests, benchmarks), end it and its jobs too."""
        self._closed.set()
        self._wake.set()
        if self.name != QUEUE_NAME:
            ray.get(self.queue.shutdown.remote())
            ray.kill(self.queue)

    # --- the refresh thread ------------------------------------------------------------------------

    def _track(self, job_id: int, *, missing_ok: bool = False) -> Job:
        snap = ray.get(self.queue.snapshot.remote([job_id])).get(job_id)
        if snap is None:
            if missing_ok:
                return None  # type: ignore[return-value]
            raise KeyError(job_id)
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                meta_bytes = ray.get(self.queue.meta.remote(job_id))
                job = self._jobs[job_id] = Job(self, snap, pickle.loads(meta_bytes) if meta_bytes else None)
                if not job.state.finished:
                    self._wake.set()
                return job
        job._update(snap)
        return job

    def refresh(self, ids: list[int] | None = None) -> None:
        with self._lock:
            known = list(self._jobs) if ids is None else ids
        if not known:
            return
        snaps = ray.get(self.queue.snapshot.remote(known))
        for job_id in known:
            with self._lock:
                job = self._jobs.get(job_id)
                if job is not None and job_id not in snaps and ids is None:
                    del self._jobs[job_id]  # dropped by the queue (its time to live, or nobody looks)
                    if not job.state.finished:  # stopped and dropped at once (its session is gone)
                        job.state = JobState.STOPPED
            if job is None or job_id not in snaps:
                continue
            was_finished = job.state.finished
            if job._update(snaps[job_id]):
                _call(job.on_update, job)
            if job.state.finished and not was_finished:
                failed_here = job.state is JobState.FAILED and job.on_end is not None  # its app logs why, once
                if failed_here and (log := ray.get(self.queue.log.remote(job_id))) is not None:
                    print(f"job {job_id} ({job.label}) failed:\n{log}", file=sys.stderr)
                _call(job.on_end, job)
                job.on_update = job.on_end = None

    def _refresh_forever(self, every_s: float) -> None:
        """Every `every_s` while a job of this process waits or runs; with all of them ended, only every
        IDLE_REFRESH_S (to see them dropped): an open page with nothing running costs the server next to nothing.
        A new job wakes it at once."""
        while not self._closed.is_set():
            with self._lock:
                busy = any(not job.state.finished for job in self._jobs.values())
            self._wake.wait(every_s if busy else max(every_s, IDLE_REFRESH_S))
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self.refresh()
            except Exception:  # a lost connection: the next tick tries again
                traceback.print_exc()


def _call(fn: Callable[[Job], None] | None, job: Job) -> None:
    if fn is None:
        return
    try:
        fn(job)
    except Exception:  # e.g. a full disk while writing a run record: the job's own result stands
        traceback.print_exc()

"""A class presses Start: training jobs on Ray (this tree) against the in-process thread runner they replaced.

`--students` students (default 30) each start a resnet20 run on the built-in shapes at the same moment: the
built-in recipe, `default_recipe(PRESETS["resnet20"], "builtin")`, cut to one epoch and `--steps` optimiser steps
(default 40) of batch 32. A fraction `--same` of them (default half, every other student from the first) start
the identical default (same seed); each of the others starts a seed of its own. Two engines, one worker each
(runs one at a time, as the default server has), each with a queue bound that admits every student:

  - threads (previous): `resnet_core.jobs.JobRunner(workers=1, max_queue=N)` from a git worktree of the newest
    commit that still has it (HEAD while the move is uncommitted; `--rev` picks another), run in a child
    process with that worktree as its directory and PYTHONPATH. A job is `Trainer(...).run()` on a thread of
    the submitting process, on the dataset that process loaded; every student gets a run of their own (that
    runner could not attach a student to an identical run);
  - Ray (this tree): `server.jobs.connect(cpus=os.cpu_count())` (an embedded local Ray) and
    `Jobs(name="bench-jobs", workers=1, max_queue=N)` in a child process from this checkout. A job is
    `server.work.TrainJob(cfg, "builtin", train_cfg)`, run in a worker process; identical students pass the
    same `key` (`repr((cfg, "builtin", train_cfg))`), so they follow one run.

Before the clock starts each engine is as a server that has been up a while: torch imported, the data loaded,
one short warm-up run done, and (Ray) its warm worker ready again. Then every student is submitted, and one loop
stands in for the students' open pages: every `--poll` seconds (0.1) it calls `job.progress()` for each student
whose run has not ended and reads its state. Per student: seconds from its submit to the first progress report
the loop sees, and to its result; p50, p95 and max over the class. Per engine: the wall time from the first
submit to the last result, how many runs trained, the CPU seconds of the submitting process over that window
(`time.process_time()`: every thread of the process that stands in for Streamlit, training included where it
trains in-process) and that as % of one core, and how long one round of polls took (p95).

    .venv/bin/python bench/bench_jobs.py                        # 30 students, 40 steps each; about 5 min on 2 cores
    .venv/bin/python bench/bench_jobs.py --quick                # 6 students, 10 steps: a smoke check
    .venv/bin/python bench/bench_jobs.py --students 60 --steps 20 --same 0.8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
OLD_RUNNER = "resnet_core/jobs.py"  # the thread runner, as the commits before the move have it
PRESET = "resnet20"
DATA = "builtin"
MARK = "BENCH_JOBS "  # the child's result line on stdout, whatever else Ray prints there


# --- the class ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Student:
    name: str
    seed: int
    same: bool  # starts the identical default run


def the_class(students: int, same: float, default_seed: int) -> list[Student]:
    """`students` students; a fraction `same` of them, spread evenly from the first, start the default seed."""
    out = []
    for i in range(students):
        identical = math.ceil((i + 1) * same - 1e-9) > math.ceil(i * same - 1e-9)
        out.append(Student(f"student-{i + 1:02d}", default_seed if identical else default_seed + 1 + i, identical))
    return out


def settings(steps: int, seed: int | None = None) -> tuple[Any, Any]:
    """(model config, train config) of one student's run (imports resnet_core: in a child only)."""
    from resnet_core import PRESETS
    from resnet_core.train import default_recipe

    cfg = PRESETS[PRESET]
    train_cfg = default_recipe(cfg, DATA).with_(epochs=1, max_steps=steps, batch_size=32)
    return cfg, train_cfg if seed is None else train_cfg.with_(seed=seed)


# --- the simulation, the same for both engines (in the child) ---------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the closest ranks."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def simulate(students: list[Student], submit: Callable[[Student], Any], identity: Callable[[Any], object],
             poll_s: float, timeout_s: float) -> dict[str, Any]:
    """Submit every student, then poll their jobs as their pages would, until every one has its result."""
    jobs: dict[str, tuple[Any, float]] = {}
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    runs: dict[object, tuple[str, bool]] = {}  # one entry per run that trained: (state, has a result)
    rounds: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    for s in students:
        submitted = time.perf_counter()
        jobs[s.name] = (submit(s), submitted)
    submit_s = time.perf_counter() - t0
    deadline = t0 + timeout_s
    while len(done) < len(students):
        start = time.perf_counter()
        for name, (job, submitted) in jobs.items():
            if name in done:
                continue
            items = job.progress()
            now = time.perf_counter()
            if items and name not in first:
                first[name] = now - submitted
            if job.state.finished:
                result = job.result
                done[name] = time.perf_counter() - submitted
                first.setdefault(name, done[name])
                runs[identity(job)] = (job.state.value, result is not None)
        end = time.perf_counter()
        rounds.append(end - start)
        if end > deadline:
            raise SystemExit(f"{len(students) - len(done)} students still wait after {timeout_s:.0f} s")
        time.sleep(max(0.0, poll_s - (end - start)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "students": len(students),
        "same": sum(s.same for s in students),
        "first": [first[s.name] for s in students],
        "result": [done[s.name] for s in students],
        "wall": wall,
        "cpu": cpu,
        "submit_s": submit_s,
        "runs": sum(1 for state, ok in runs.values() if ok and state != "failed"),
        "failed": sum(1 for state, ok in runs.values() if not ok or state == "failed"),
        "poll_round_p95_ms": pct(rounds, 95) * 1e3,
    }


def threads_child(args: argparse.Namespace, students: list[Student]) -> dict[str, Any]:
    """The previous engine: the old JobRunner, a training thread in this process."""
    import torch

    import resnet_core
    from resnet_core import jobs as old_jobs  # the old runner: this process runs from the worktree
    from resnet_core.data import load_dataset
    from resnet_core.train import Trainer

    root = Path(os.environ["PYTHONPATH"]).resolve()
    if not Path(resnet_core.__file__).resolve().is_relative_to(root):
        raise SystemExit(f"resnet_core comes from {resnet_core.__file__}, not from the worktree {root}")
    data = load_dataset(DATA)  # as the page had it cached

    def train_fn(cfg: Any, train_cfg: Any) -> Callable[[Any], Any]:
        return lambda ctx: Trainer(cfg, data, train_cfg, on_progress=ctx.report,
                                   should_stop=lambda: ctx.job.stop_requested).run()

    runner = old_jobs.JobRunner(workers=1, max_queue=len(students))
    try:
        cfg, warm_cfg = settings(1, seed=10**6)
        warm = runner.submit("warm-up", train_fn(cfg, warm_cfg), label="warm-up")
        if not warm.wait(600) or warm.state.value == "failed":
            raise SystemExit(f"the warm-up run did not end well: {warm.state} {warm.error}")

        def submit(s: Student) -> Any:
            cfg, train_cfg = settings(args.steps, s.seed)
            return runner.submit(s.name, train_fn(cfg, train_cfg), label=f"{PRESET} seed {s.seed}")

        out = simulate(students, submit, id, args.poll, args.timeout)
    finally:
        runner.shutdown()
    return out | {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                  "runner": str(Path(old_jobs.__file__ or "").resolve().relative_to(root))}


def wait_for_warm_worker(timeout_s: float = 180.0) -> None:
    """Until the queue's warm run actor is up (torch imported, data made) and no other is starting."""
    try:
        from ray._private import state  # the actor table, without the dashboard
    except ImportError:
        time.sleep(15)
        return
    deadline, steady = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline and steady < 2:
        try:
            states = [a["State"] for a in state.actors().values() if str(a.get("ActorClassName")).endswith("RunActor")]
        except Exception:  # a private API that moved: wait as long as a start takes
            time.sleep(15)
            return
        alive = states.count("ALIVE")
        starting = sum(st not in ("ALIVE", "DEAD") for st in states)
        steady = steady + 1 if alive == 1 and not starting else 0
        time.sleep(0.5)


def ray_child(args: argparse.Namespace, students: list[Student]) -> dict[str, Any]:
    """This tree's engine: the Ray queue, a run actor per job in a process of its own."""
    import ray
    import torch

    from server.jobs import Jobs, connect
    from server.work import TrainJob

    connect(cpus=os.cpu_count())
    jobs = Jobs(name="bench-jobs", workers=1, max_queue=len(students))
    try:
        cfg, warm_cfg = settings(1, seed=10**6)
        warm = jobs.submit("warm-up", TrainJob(cfg, DATA, warm_cfg), label="warm-up",
                           key=repr((cfg, DATA, warm_cfg)))
        if not warm.wait(600) or warm.state.value == "failed":
            raise SystemExit(f"the warm-up run did not end well: {warm.state} {warm.error}")
        wait_for_warm_worker()

        def submit(s: Student) -> Any:
            cfg, train_cfg = settings(args.steps, s.seed)
            return jobs.submit(s.name, TrainJob(cfg, DATA, train_cfg), label=f"{PRESET} seed {s.seed}",
                               key=repr((cfg, DATA, train_cfg)))

        out = simulate(students, submit, lambda job: job.id, args.poll, args.timeout)
    finally:
        jobs.shutdown()
        ray.shutdown()
    # A run actor of a 1-worker queue on a CPU node holds every CPU of the node, and torch uses as many threads.
    return out | {"torch": torch.__version__, "torch_threads": os.cpu_count(), "ray": ray.__version__}


# --- the parent: the worktree, the children, the table -------------------------------------------------------


def git(*argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()


def old_commit(rev: str | None) -> str:
    """The commit whose thread runner to run: `rev`, else HEAD if it still has it, else the one before its removal."""
    if rev is None:
        has = subprocess.run(["git", "cat-file", "-e", f"HEAD:{OLD_RUNNER}"], cwd=REPO_ROOT, capture_output=True)
        if has.returncode == 0:
            rev = "HEAD"
        else:
            removed = git("rev-list", "-1", "HEAD", "--", OLD_RUNNER)
            if not removed:
                raise SystemExit(f"no commit before HEAD has {OLD_RUNNER}; name one with --rev")
            rev = f"{removed}^"
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    if subprocess.run(["git", "cat-file", "-e", f"{sha}:{OLD_RUNNER}"], cwd=REPO_ROOT, capture_output=True).returncode:
        raise SystemExit(f"{rev} ({sha[:10]}) has no {OLD_RUNNER}")
    return sha


def run_child(engine: str, args: argparse.Namespace, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", engine, "--students", str(args.students),
           "--steps", str(args.steps), "--same", str(args.same), "--poll", str(args.poll),
           "--timeout", str(args.timeout)]
    print(f"  {engine}: {args.students} students, {args.steps} steps each ...", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=args.timeout + 900)
    lines = [line[len(MARK):] for line in out.stdout.splitlines() if line.startswith(MARK)]
    if out.returncode or not lines:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-8000:])
        raise SystemExit(f"the {engine} engine failed (exit {out.returncode})")
    info: dict[str, Any] = json.loads(lines[-1])
    print(f"  {engine}: {info['wall']:.1f} s, {info['runs']} runs trained", file=sys.stderr, flush=True)
    return info


def table(threads: dict[str, Any], ray_: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, Callable[[dict[str, Any]], float], str]] = [
        ("first progress report p50 (s)", lambda d: pct(d["first"], 50), "{:.1f}"),
        ("first progress report p95 (s)", lambda d: pct(d["first"], 95), "{:.1f}"),
        ("first progress report max (s)", lambda d: max(d["first"]), "{:.1f}"),
        ("result p50 (s)", lambda d: pct(d["result"], 50), "{:.1f}"),
        ("result p95 (s)", lambda d: pct(d["result"], 95), "{:.1f}"),
        ("result max (s)", lambda d: max(d["result"]), "{:.1f}"),
        ("total wall time (s)", lambda d: d["wall"], "{:.1f}"),
        ("runs trained", lambda d: d["runs"], "{:.0f}"),
        ("runs failed", lambda d: d["failed"], "{:.0f}"),
        ("submitting process CPU (s)", lambda d: d["cpu"], "{:.1f}"),
        ("submitting process CPU (% of one core)", lambda d: 100 * d["cpu"] / d["wall"], "{:.0f}%"),
        ("one round of polls p95 (ms)", lambda d: d["poll_round_p95_ms"], "{:.1f}"),
        ("submitting every student (s)", lambda d: d["submit_s"], "{:.2f}"),
    ]
    lines = ["| metric | threads (previous) | Ray (this tree) | Ray / threads |", "|---|---:|---:|---:|"]
    for name, get, fmt in rows:
        a, b = get(threads), get(ray_)
        ratio = f"{b / a:.2f}" if a else "n/a"
        lines.append(f"| {name} | {fmt.format(a)} | {fmt.format(b)} | {ratio} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30, help="students who press Start (default 30)")
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps of each run (default 40)")
    parser.add_argument("--same", type=float, default=0.5,
                        help="fraction of the students who start the identical default run (default 0.5)")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between a page's polls (default 0.1)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds an engine may take for the whole class (default: 120 + 60 per student)")
    parser.add_argument("--rev", help="the commit whose thread runner to run (default: HEAD, or the newest "
                                      f"commit that still has {OLD_RUNNER})")
    parser.add_argument("--quick", action="store_true", help="6 students, 10 steps: a smoke check")
    parser.add_argument("--child", choices=("threads", "ray"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.students, args.steps = 6, 10
    if args.students < 1 or args.steps < 1 or not 0 <= args.same <= 1 or args.poll <= 0:
        parser.error("--students and --steps must be at least 1, --same in [0, 1], --poll > 0")
    if args.timeout is None:
        args.timeout = 120.0 + 60.0 * args.students

    if args.child:  # in a child: run one engine, print one JSON line
        if args.child == "ray":
            sys.path.insert(0, str(REPO_ROOT))  # run from a checkout, no install needed
        _, default = settings(args.steps)
        students = the_class(args.students, args.same, default.seed)
        info = (threads_child if args.child == "threads" else ray_child)(args, students)
        print(MARK + json.dumps(info | {"default_seed": default.seed}), flush=True)
        return 0

    sys.path.insert(0, str(REPO_ROOT))
    from bench.machine import describe

    for sig in (signal.SIGTERM, signal.SIGHUP):  # -> SystemExit, so the `finally` below removes the worktree
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    print(describe() + "\n", flush=True)
    sha = old_commit(args.rev)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONUNBUFFERED": "1"}
    tmp = Path(tempfile.mkdtemp(prefix="bench_jobs_"))
    worktree = tmp / "old"
    try:
        git("worktree", "add", "--detach", str(worktree), sha)
        threads = run_child("threads", args, worktree, env | {"PYTHONPATH": str(worktree)})
    finally:
        if subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO_ROOT,
                          capture_output=True).returncode:
            shutil.rmtree(worktree, ignore_errors=True)
            subprocess.run(["git", "worktree", "prune"], cwd=REPO_ROOT, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    ray_ = run_child("ray", args, REPO_ROOT, env)

    print("## A class presses Start: Ray jobs against the thread runner\n")
    print(f"Run: torch threads {threads['torch_threads']} in the threads engine's process, "
          f"{ray_['torch_threads']} per Ray run actor\n")
    print(f"{args.students} students press Start at once: {PRESET} on the built-in shapes, the built-in recipe cut "
          f"to 1 epoch and {args.steps} steps of batch 32; {threads['same']} start the identical default (seed "
          f"{threads['default_seed']}), "
          f"{args.students - threads['same']} a seed of their own. One worker per engine, queue bound "
          f"{args.students}; each page polls `job.progress()` every {args.poll:g} s. Threads: "
          f"`{threads['runner']}` at {sha[:10]}; Ray: this tree (identical runs share a key).\n")
    print("\n".join(table(threads, ray_)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared test settings: deterministic CPU torch, a small thread count on this 2-core machine."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

# Run records of the tests' training jobs (and of the servers they start) go to a temporary folder, removed at the end.
_RUNS_DIR = None if "RESNET_RUNS_DIR" in os.environ else tempfile.mkdtemp(prefix="resnet-runs-")
if _RUNS_DIR is not None:
    os.environ["RESNET_RUNS_DIR"] = _RUNS_DIR

# The embedded Ray instances of the tests (this process's, and each server's the tests start) offer one CPU: a run
# trains on one thread, which this 2-core machine, shared with browsers and servers, keeps at full speed.
os.environ.setdefault("RESNET_RAY_CPUS", "1")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _RUNS_DIR is not None:
        shutil.rmtree(_RUNS_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    import torch

    torch.manual_seed(0)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on `n` intra-op threads inside the block, then restore the count. On this 2-core machine, shared
    with other jobs, two OpenMP threads that wait for each other at every op run 10-30x slower whenever another
    process takes a core: tests that train use one thread unless they need the speed of two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the test, the previous count restored after it. A job on Ray takes its
    count from its slot instead (server/jobs.py: the instance's CPUs over its workers), which RESNET_RAY_CPUS=1
    above makes one."""
    with torch_threads(1):
        yield


def until(cond: Callable[[], object], timeout: float = 60.0) -> None:
    """Wait until `cond()` is true (a job's state, a file the server writes), failing the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)

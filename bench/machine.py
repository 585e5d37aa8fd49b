"""The machine a benchmark ran on, in one line: every bench/*.py prints it first, so that two outputs compare only
when their lines match, and a number measured on a busy machine says so (the load average).

    .venv/bin/python bench/machine.py
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, where platform.processor() is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def memory_gib() -> float | None:
    """Physical memory in GiB, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _version(package: str) -> str:
    # Read from the installed metadata, so that describing the machine imports none of the heavy packages.
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def gpu_name() -> str | None:
    """The first CUDA device's name, or None when torch sees no GPU."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def load_1min() -> str:
    """The 1-minute load average, as printed: above the CPU count, other work competed with the benchmark."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def describe() -> str:
    """`Machine: <CPU> x N CPUs (M usable), G GiB · Python · torch · streamlit · ray · GPU · load`."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory, gpu = memory_gib(), gpu_name()
    parts = [
        f"{cpu_name()}, {os.cpu_count()} CPUs ({usable} usable by this process)",
        f"{memory:.1f} GiB memory" if memory is not None else "memory unknown",
        f"{platform.platform()}",
        f"Python {platform.python_version()}",
        f"torch {_version('torch')}",
        f"streamlit {_version('streamlit')}",
        f"ray {_version('ray')}",
        f"GPU {gpu}" if gpu else "no GPU",
        f"load average (1 min) {load_1min()}",
    ]
    return "Machine: " + " · ".join(parts)


if __name__ == "__main__":
    print(describe())

"""Which device a run trains on, and how fast that device can go at best (for model FLOP utilisation)."""

from __future__ import annotations

import re

import torch


def resolve_device(name: str, *, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA (this rank's GPU), else Apple MPS, else CPU; a named device must be there."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"TrainConfig.device={name!r} is not allowed: 'auto' or 'cpu' here: this machine has "
                             "no CUDA device")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"TrainConfig.device={name!r} is not allowed: 'auto' or 'cpu' here: Apple MPS is not "
                         "available")
    return device


# Peak dense throughput in FLOP/s, from the vendors' datasheets (no sparsity): (bf16, tf32, fp32).
# The first pattern that matches the GPU's name wins, so the PCIe/NVL variants come before "H100".
GPU_PEAK_FLOPS: tuple[tuple[str, float, float, float], ...] = (
    (r"H100.*PCIe", 756e12, 378e12, 51.2e12),
    (r"H100 NVL", 835e12, 418e12, 60e12),
    (r"H100|GH200", 989e12, 495e12, 67e12),  # SXM
    (r"H200", 989e12, 495e12, 67e12),
    (r"A100", 312e12, 156e12, 19.5e12),
    (r"\bL4\b", 121e12, 60e12, 30.3e12),
    (r"RTX 4090", 165e12, 82.6e12, 82.6e12),
)


def peak_flops(gpu_name: str, *, bf16: bool, tf32: bool) -> float | None:
    """The GPU's peak dense FLOP/s for the precision the convolutions run in; None for an unknown GPU."""
    for pattern, bf16_peak, tf32_peak, fp32_peak in GPU_PEAK_FLOPS:
        if re.search(pattern, gpu_name):
            return bf16_peak if bf16 else tf32_peak if tf32 else fp32_peak
    return None

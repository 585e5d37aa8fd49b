"""torchrun: who this process is, the process group around a run, and a digest to check ranks agree.

The trainer itself only asks torch.distributed whether a group is running (`rank_and_world`)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int  # global rank, 0 .. world_size - 1
    world_size: int  # processes in all
    local_rank: int  # rank on this machine: the GPU index on CUDA


def dist_from_env(env: Mapping[str, str] = os.environ) -> DistInfo | None:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK), or None outside torchrun or with one process."""
    world = int(env.get("WORLD_SIZE", "1") or "1")
    if world <= 1:
        return None
    return DistInfo(rank=int(env.get("RANK", "0")), world_size=world, local_rank=int(env.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(info: DistInfo, device: str = "auto") -> Iterator[None]:
    """Initialise torch.distributed for this torchrun process (NCCL on CUDA, gloo on CPU), destroy it after."""
    import torch.distributed as dist

    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=info.rank, world_size=info.world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the running process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_rank(world_size: int, env: Mapping[str, str] = os.environ) -> int:
    """This process's GPU index on its machine under torchrun (LOCAL_RANK), 0 alone."""
    return int(env.get("LOCAL_RANK", "0")) if world_size > 1 else 0


def state_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, dtypes, shapes and bytes, in order): equal iff bit-identical."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def all_mean(value: torch.Tensor, stop: bool, world_size: int, device: torch.device) -> tuple[float, bool]:
    """Mean of a scalar over the ranks and whether any rank wants to stop: one collective, one sync."""
    if world_size == 1:
        return float(value.item()), stop
    import torch.distributed as dist

    both = torch.stack([value.float(), torch.tensor(float(stop), device=device)])
    dist.all_reduce(both)
    return float(both[0].item()) / world_size, bool(both[1].item() > 0)


def all_sum(count: torch.Tensor, world_size: int) -> int:
    """A count summed over the ranks."""
    if world_size == 1:
        return int(count.item())
    import torch.distributed as dist

    total = count.clone()
    dist.all_reduce(total)
    return int(total.item())


def broadcast_buffers(model: nn.Module, world_size: int) -> None:
    """Every rank takes rank 0's buffers (BN statistics of each rank's last batches differ)."""
    if world_size == 1:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)

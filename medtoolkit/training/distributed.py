"""Process-group helpers for data-parallel training under ``torchrun`` (PyTorch DDP).

Every function works in a single process too (no process group, or a group of one):
then :func:`reduce_sum` and :func:`gather_rows` return their input, :func:`rank` is 0 and
:func:`world_size` is 1, so the components that call them (gating losses deciding from
global statistics) need no separate single-process path.

Under data parallelism the trainer cuts the *global* batch identically on every rank and
gives each rank a contiguous part of it (rank 0 the first patients), so the concatenation
of the ranks' visits in rank order is the single-process batch's visit order.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

#: the environment variables ``torchrun`` sets for every worker
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class PeerFailed(RuntimeError):
    """Another rank failed and reported why; this rank stops without repeating the message."""


def launch_rank() -> int | None:
    """This process's rank as torchrun set it (``RANK``), or None when not launched by torchrun."""
    return int(os.environ["RANK"]) if launched_by_torchrun() else None


def launched_by_torchrun() -> bool:
    """Whether this process was started by ``torchrun`` with more than one worker."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES) and int(os.environ["WORLD_SIZE"]) > 1


def is_distributed() -> bool:
    """Whether a process group of more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process writes files (rank 0, or the only process)."""
    return rank() == 0


def local_rank() -> int:
    """This process's index on its node (``LOCAL_RANK``; 0 when not set)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def device_for_rank(device: torch.device) -> torch.device:
    """The device this rank trains on: ``cuda:<LOCAL_RANK>`` for a CUDA run, ``device`` otherwise."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank())
    return device


@contextmanager
def process_group(device: torch.device, timeout_minutes: float = 30.0) -> Iterator[torch.device]:
    """Initialise the process group from torchrun's environment for the block, then destroy it.

    Without torchrun (or with one worker) nothing is initialised and ``device`` is yielded.

    Args:
        device: the run's device (its type picks the backend).
        timeout_minutes: how long a collective may wait for the other ranks.

    Yields:
        the device this rank trains on (:func:`device_for_rank`).
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield device
        return
    device = device_for_rank(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), timeout=datetime.timedelta(minutes=timeout_minutes))
    try:
        yield device
    finally:
        dist.destroy_process_group()


def reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over all ranks (a new tensor; ``values`` itself without a group).

    Args:
        values: any shape, the same on every rank; on the rank's device (CUDA under NCCL).
    """
    if not is_distributed():
        return values
    summed = values.detach().clone()
    dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed


def gather_rows(values: torch.Tensor) -> tuple[torch.Tensor, slice]:
    """Concatenate every rank's ``values`` along dim 0 in rank order; also where this rank's rows are.

    Args:
        values: ``[n_r, ...]``; ``n_r`` may differ between ranks, the trailing shape may not.

    Returns:
        ``(all_rows [sum n_r, ...], slice of this rank's rows in all_rows)``; without a group,
        ``(values, slice(0, n))``.
    """
    if not is_distributed():
        return values, slice(0, values.shape[0])
    count = torch.tensor([values.shape[0]], dtype=torch.int64, device=values.device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    widest = max(sizes)
    padded = values.new_zeros((widest, *values.shape[1:]))
    padded[: values.shape[0]] = values
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    rows = torch.cat([part[:size] for part, size in zip(parts, sizes)], dim=0)
    start = sum(sizes[: rank()])
    return rows, slice(start, start + values.shape[0])


def gather_objects(value: Any) -> list[Any] | None:
    """Every rank's ``value`` (picklable, trusted: produced by this run) at rank 0, in rank order.

    Returns:
        the list on rank 0, None on the other ranks; ``[value]`` without a group.
    """
    if not is_distributed():
        return [value]
    gathered: list[Any] | None = [None] * world_size() if is_main() else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself without a group)."""
    if not is_distributed():
        return value
    holder = [value if is_main() else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier() -> None:
    """Wait for every rank (nothing without a group)."""
    if is_distributed():
        dist.barrier()

"""torch.distributed helpers for ``torchrun --nproc-per-node N -m sdekit sample ...``.

Ranks take chunks round-robin (chunk k goes to rank k mod N); every chunk is seeded by
``(seed, k)`` alone, so the result is bit-identical to a one-process run. The backend is
gloo on CPU and NCCL on GPU; each rank uses ``cuda:LOCAL_RANK`` when sampling on CUDA.
Without torchrun's environment (``WORLD_SIZE`` unset or 1) everything runs in-process.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Context", "PeerError", "init", "my_chunks", "barrier", "shutdown"]

#: How long a rank waits at a barrier for the others.
BARRIER_TIMEOUT = datetime.timedelta(days=7)


class PeerError(RuntimeError):
    """Another process of this run failed (and printed why): this one stops at the next barrier."""


@dataclass(frozen=True)
class Context:
    """This process's ``rank`` among ``world`` processes, and its ``local_rank`` on the node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str) -> Context:
    """Join the process group that torchrun set up (gloo for CPU, NCCL for CUDA); a no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and torch.cuda.is_available() else "gloo"
        # A rank whose chunks are done (a resume) waits at the barrier for the others' remaining work:
        # the default timeout (30 min gloo, 10 min NCCL) would end a long imbalanced resume.
        dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def device_for(ctx: Context, device: str) -> torch.device:
    """The device this rank samples on: ``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
    if device == "cuda" and ctx.world > 1:
        return torch.device("cuda", ctx.local_rank)
    return torch.device(device)


def my_chunks(ctx: Context, num_chunks: int) -> range:
    """The chunks this rank computes: k = rank, rank + world, …"""
    return range(ctx.rank, num_chunks, ctx.world)


def barrier(ctx: Context) -> None:
    """Wait for every rank (no-op for one process)."""
    if ctx.world > 1:
        try:
            dist.barrier()
        except RuntimeError as error:  # gloo/NCCL: the connection to a rank that exited was closed
            raise PeerError(
                f"rank {ctx.rank}: another process of this run failed (its message is above); "
                "rerun the same command to resume"
            ) from error


def shutdown(ctx: Context) -> None:
    """Leave the process group (no-op for one process)."""
    if ctx.world > 1 and dist.is_initialized():
        dist.destroy_process_group()

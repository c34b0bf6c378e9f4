"""Multi-process training through PyTorch's own ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m voldefense.cli run CONFIG.yaml`` starts N processes; each reads RANK, WORLD_SIZE
and LOCAL_RANK from the environment. Every rank trains on its strided share of each epoch's (curriculum) order,
gradients are averaged by DDP, and rank 0 alone validates, writes checkpoints and metrics, evaluates and reports.
Without those variables everything runs in one process, unchanged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum floats over ranks (identity in one process)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return [float(v) for v in tensor.tolist()]


def init_distributed(device_type: str) -> DistContext:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); a single-process context otherwise.

    The backend is NCCL on CUDA and gloo on CPU (what the tests use).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        logger.info("joined process group: rank %d of %d (%s)", rank, world_size, backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


class RankSlice(Sampler[int]):
    """This rank's strided share of another sampler's epoch order.

    Rank r takes positions r, r + W, r + 2W, ... of the epoch's order, so every rank sees the same curriculum
    stage (simple samples first on every rank) and together the ranks cover the epoch once. The order is padded by
    repeating its start so all ranks run the same number of batches (DDP needs matching collective calls).
    `set_epoch` is forwarded to the wrapped sampler.
    """

    def __init__(self, sampler: Sampler[int], rank: int, world_size: int):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.sampler = sampler
        self.rank = rank
        self.world_size = world_size

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _order(self) -> list[int]:
        order = list(self.sampler)
        if not order:
            return order
        remainder = len(order) % self.world_size
        if remainder:
            pad = self.world_size - remainder
            order = order + (order * (pad // len(order) + 1))[:pad]
        return order

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.rank :: self.world_size])

    def __len__(self) -> int:
        total = len(self.sampler)  # type: ignore[arg-type]
        return -(-total // self.world_size)

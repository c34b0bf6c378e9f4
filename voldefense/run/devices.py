"""Which device a run uses and whether it trains in mixed precision."""

from __future__ import annotations

import logging
from typing import Literal

import torch

from voldefense.config.schema import Config
from voldefense.distributed import DistContext
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)

DeviceChoice = Literal["auto", "cpu", "cuda"]


def resolve_device(
    choice: DeviceChoice, config: Config, context: DistContext | None = None
) -> tuple[torch.device, bool]:
    """The device and whether to use mixed precision (on CUDA only; `training.amp` may force it off)."""
    if choice not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device: invalid value {choice!r}; allowed: auto, cpu, cuda")
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise ConfigError("--device cuda: no CUDA device is available; use --device cpu or auto")
    use_cuda = cuda if choice == "auto" else choice == "cuda"
    if use_cuda:
        index = context.local_rank if context is not None else 0
        device = torch.device("cuda", index)
    else:
        device = torch.device("cpu")
    amp = use_cuda and config.training.amp is not False
    if config.training.amp is True and not use_cuda:
        logger.warning("training.amp: true needs CUDA; training in full precision on the CPU")
    return device, amp

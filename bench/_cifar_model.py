"""The CIFAR-10 model the few-pixel attack bench attacks: given as a checkpoint, or trained once and cached.

`bench/attacks.py --checkpoint PATH` loads either a TorchScript archive (any architecture; ``torch.jit.save``)
or a checkpoint this module wrote. Without one, a small batch-normalised CNN is trained on CIFAR-10's training
split under a wall-clock limit (airbench-style: data held as uint8, flips and translations done on the tensor,
SGD with Nesterov momentum, a linear warm-up / decay schedule, label smoothing) and cached *outside the
repository* (default ``~/.cache/voldefense/bench``), keyed by its settings, so later runs reuse it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger("bench.cifar_model")

DEFAULT_CACHE = Path.home() / ".cache" / "voldefense" / "bench"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


class Normalize(nn.Module):
    """Per-channel standardisation inside the model, so attacks work on [0, 1] images."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def bench_cnn(width: int = 16, num_classes: int = 10) -> nn.Module:
    """Four 3x3 convolutions with batch norm (widths w, 2w, 4w, 4w; three max-pools), global max-pool, linear:
    cheap enough (about 3.4 M multiply-adds at w = 16) that ART's PixelAttack at its defaults stays affordable
    on a CPU."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.MaxPool2d(2), nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    w = width
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(3, w, 3, padding=1, bias=False),
        nn.BatchNorm2d(w),
        nn.ReLU(),
        *block(w, 2 * w),
        *block(2 * w, 4 * w),
        *block(4 * w, 4 * w),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, num_classes),
    )


def load_split(data_dir: Path, split: str, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images (N, 3, 32, 32), int64 labels) of `split` ("train" or "test") from ``data_dir/split.npz``."""
    path = data_dir / f"{split}.npz"
    if not path.exists():
        raise SystemExit(f"CIFAR-10 {split} split not found at {path}; pass --data-dir (see its README)")
    data = np.load(path)
    x, y = data["x"][:count], data["y"][:count]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y).long()


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and translations by up to 2 pixels (reflect padding), on a uint8 batch."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = nn.functional.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    dr, dc = torch.randint(0, 5, (2,), generator=generator).tolist()  # one shift per batch: cheap, enough here
    return padded[:, :, dr : dr + 32, dc : dc + 32] / 255.0


def train(
    data_dir: Path,
    *,
    width: int,
    epochs: float,
    seconds: float,
    seed: int,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Train `bench_cnn(width)` on `device` for `epochs` over the training split or until `seconds` have passed
    (the random draws stay on the CPU, so a seed gives the same batches everywhere)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    x, y = load_split(data_dir, "train")
    x, y = x.to(device), y.to(device)
    model = bench_cnn(width).to(device)
    steps = max(1, int(epochs * x.shape[0] / batch_size))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    start, step, seen, progress = time.perf_counter(), 0, 0, 0.0
    while progress < 1.0:
        order = torch.randperm(x.shape[0], generator=generator)
        for i in range(0, x.shape[0] - batch_size + 1, batch_size):
            # Progress is the larger of the step and time fractions, so the learning rate decays to zero
            # by the end even when the wall-clock limit stops training early.
            progress = max(step / steps, (time.perf_counter() - start) / seconds)
            if progress >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = 0.1 * min(progress / 0.1, (1.0 - progress) / 0.9)
            idx = order[i : i + batch_size].to(device)
            loss = nn.functional.cross_entropy(model(_augment(x[idx], generator)), y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step, seen = step + 1, seen + batch_size
            if step % 100 == 0:
                logger.info("training: step %d, %.0f%% done, loss %.3f", step, 100 * progress, float(loss))
    model.cpu().eval()
    info = {"width": width, "steps": step, "images_seen": seen, "epochs": seen / x.shape[0],
            "train_seconds": time.perf_counter() - start, "seed": seed}
    return model, info


def load_or_train(
    checkpoint: Path | None,
    cache_dir: Path,
    data_dir: Path,
    *,
    width: int,
    epochs: float,
    seconds: float,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The model to attack and facts about it (where it came from, how it was trained)."""
    if checkpoint is not None:
        return _load(checkpoint), {"source": str(checkpoint)}
    settings = {"width": width, "epochs": epochs, "seconds": seconds, "seed": seed, "version": 1}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir / f"bench_cnn-{key}.pt"
    if path.exists():
        logger.info("model: cached %s", path)
        return _load(path), {"source": str(path), **torch.load(path, weights_only=True)["info"]}
    model, info = train(data_dir, width=width, epochs=epochs, seconds=seconds, seed=seed, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "bench_cnn", "info": info, "state_dict": model.state_dict()}, path)
    logger.info("model: trained in %.0f s, cached at %s", info["train_seconds"], path)
    return model, {"source": str(path), **info}


def _load(path: Path) -> nn.Module:
    if not path.exists():
        raise SystemExit(f"--checkpoint {path}: no such file")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError:
        pass  # not a TorchScript archive: try this module's own format
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = bench_cnn(int(state["info"]["width"]))
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        raise SystemExit(
            f"--checkpoint {path}: neither a TorchScript archive nor a bench_cnn checkpoint ({err}); "
            "save your model with torch.jit.save(torch.jit.script(model), path)"
        ) from None
    return model.eval()

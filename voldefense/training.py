"""Training one model (f or g) from built objects: data, sampler, loss, optimizer settings, checkpoint path.

The loop is resumable to the bit on CPU: a checkpoint after an epoch holds the model, optimizer, scheduler and
grad-scaler state, every RNG state and the per-epoch history, and the samplers derive each epoch's order from
(seed, epoch) alone — so continuing from epoch k replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm

from voldefense.checkpoint import load_checkpoint, load_into, rng_state, save_checkpoint, set_rng_state
from voldefense.config.schema import OptimizerConfig, ScheduleConfig, TrainingConfig
from voldefense.distributed import DistContext, RankSlice
from voldefense.errors import CheckpointError, TrainingError
from voldefense.train_data import batches

logger = logging.getLogger(__name__)

LossTarget = Literal["image", "patch"]
EpochRecord = dict[str, Any]
Validator = Callable[[nn.Module, int], dict[str, float]]
EpochCallback = Callable[[str, int, EpochRecord], None]


class ShuffleSampler(Sampler[int]):
    """A random permutation per epoch drawn from (seed, epoch) alone, so a resumed run replays the same order."""

    def __init__(self, size: int, seed: int = 0):
        self.size = int(size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class TrainView(nn.Module):
    """What the loss sees: image logits `(B, K)` or, for patch losses, per-patch logits `(B, N, K)`.

    A module of its own so DistributedDataParallel wraps exactly the computation the loss differentiates.
    """

    def __init__(self, model: nn.Module, target: LossTarget):
        super().__init__()
        self.model = model
        self.target = target

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.target == "patch":
            return self.model.patch_logits(images)
        return self.model(images)


@dataclass
class TrainJob:
    """Everything needed to train one model; built by the runner, free of registry names."""

    name: str
    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_target: LossTarget
    dataset: Dataset
    sampler: Sampler[int]
    checkpoint: Path
    signature: str = ""
    history: list[EpochRecord] = field(default_factory=list)
    # ``transform(model, images, labels, generator) -> inputs``: what the model is trained on for each batch
    # (a baseline defense's ablation or adversarial perturbation; `voldefense.defenses.BatchTransform`).
    transform: Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor] | None = None
    # One class index per dataset sample (`voldefense.train_data.dataset_labels`): when given, each epoch's record
    # says which share of every class the model actually saw (a paced curriculum admits only part of the set).
    labels: torch.Tensor | None = None


def build_optimizer(params: Sequence[nn.Parameter] | Any, config: OptimizerConfig) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
        )
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(epoch: int, epochs: int, config: ScheduleConfig) -> float:
    """Learning-rate multiplier for `epoch` (0-based): linear warm-up, then constant, cosine or step decay."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    done = epoch - config.warmup_epochs
    span = max(1, epochs - config.warmup_epochs)
    if config.name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * done / span))
    if config.name == "step":
        return config.gamma ** (done // config.step_size)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: ScheduleConfig, epochs: int) -> Any:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, epochs, config))


def augment(images: torch.Tensor, mode: str) -> torch.Tensor:
    """Training augmentation on a batch `(B, C, H, W)`, drawing from the global (checkpointed) RNG."""
    if mode == "none":
        return images
    b, _, h, w = images.shape
    if mode == "crop_flip":
        pad = 4
        padded = nn.functional.pad(images, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (b,))
        dx = torch.randint(0, 2 * pad + 1, (b,))
        rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).to(images.device)
        cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).to(images.device)
        batch = torch.arange(b, device=images.device).view(b, 1, 1)
        images = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
    flip = (torch.rand(b) < 0.5).to(images.device)
    return torch.where(flip.view(b, 1, 1, 1), images.flip(-1), images)


def seen_share(per_class: Sequence[float], class_sizes: torch.Tensor, count: float) -> dict[str, float]:
    """What an epoch actually trained on: the share of the training set seen and the smallest and largest share of
    any one class's images (equal when the curriculum is stratified or absent; unequal = a skewed class mix)."""
    shares = torch.tensor(per_class, dtype=torch.float64) / class_sizes.clamp(min=1)
    present = class_sizes > 0
    return {
        "train_fraction": float(count) / max(float(class_sizes.sum()), 1.0),
        "train_class_share_min": float(shares[present].min()),
        "train_class_share_max": float(shares[present].max()),
    }


def _accuracy_count(outputs: torch.Tensor, labels: torch.Tensor) -> int:
    logits = outputs.float().mean(1) if outputs.dim() == 3 else outputs.float()
    return int((logits.argmax(-1) == labels).sum())


def _diverged(job: TrainJob, what: str, epoch: int, step: int, steps: int, lr: float) -> TrainingError:
    """The one-line error of a run whose loss or weights stopped being finite: where, and what was kept."""
    kept = (
        f"the last good checkpoint {job.checkpoint} is kept"
        if job.checkpoint.is_file()
        else "no checkpoint was written before it"
    )
    return TrainingError(
        f"training {job.name} stopped: {what} at epoch {epoch}, step {step} of {steps} (lr {lr:.3g}); {kept}; "
        "lower optimizer.lr (or use a warm-up, schedule.warmup_epochs) and rerun"
    )


def _finite_weights(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point())


def _restore(job: TrainJob, optimizer: Any, scheduler: Any, scaler: Any) -> int:
    """Load the job's checkpoint into the objects; returns the number of finished epochs."""
    state = load_checkpoint(job.checkpoint)
    load_into(job.model, state, job.checkpoint, job.signature)
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    except (KeyError, ValueError, RuntimeError, TypeError) as err:
        raise CheckpointError(
            f"checkpoint {job.checkpoint} is incomplete or mismatched ({err}); start a new run"
        ) from None
    job.history = list(state.get("history", []))
    return int(state["epoch"])


def train(
    job: TrainJob,
    config: TrainingConfig,
    optimizer_config: OptimizerConfig,
    schedule_config: ScheduleConfig,
    *,
    device: torch.device,
    amp: bool,
    context: DistContext,
    validate: Validator | None = None,
    resume: bool = False,
    on_epoch_end: Sequence[EpochCallback] = (),
) -> list[EpochRecord]:
    """Train `job.model` for `config.epochs` epochs (continuing from its checkpoint when `resume`).

    Returns the per-epoch records (loss, train accuracy, lr, seconds, plus what `validate(model, epoch)` returns
    on rank 0). The model is left on `device` in eval mode with its final weights.
    """
    model = job.model.to(device)
    cuda = device.type == "cuda"
    if cuda:  # NHWC convolutions are faster on tensor cores; 5D (3D) weights are left as they are
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model.parameters(), optimizer_config)
    scheduler = build_scheduler(optimizer, schedule_config, config.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    start = 0
    if resume and job.checkpoint.is_file():
        start = _restore(job, optimizer, scheduler, scaler)
        logger.info("%s: resuming after epoch %d of %d", job.name, start, config.epochs)
    view: nn.Module = TrainView(model, job.loss_target)
    if context.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        view = nn.parallel.DistributedDataParallel(view, device_ids=device_ids)
    sampler: Sampler[int] = RankSlice(job.sampler, context.rank, context.world_size) if context.enabled else job.sampler
    loader = batches(
        job.dataset,
        sampler,
        batch_size=config.batch_size,
        device=device,
        on_device=config.data_on_device,
        num_workers=config.num_workers,
    )
    class_sizes = torch.bincount(job.labels).double() if job.labels is not None else None
    for epoch in range(start, config.epochs):
        started = time.perf_counter()
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        model.train()
        totals = [0.0, 0.0, 0.0]  # loss sum, correct, count
        seen = torch.zeros(len(class_sizes) if class_sizes is not None else 0, dtype=torch.long, device=device)
        bar = tqdm(
            loader,
            desc=f"{job.name} epoch {epoch + 1}/{config.epochs}",
            leave=False,
            disable=None if context.is_main else True,
        )
        # The transform's randomness comes from (seed, epoch) alone, like the data order, so resume replays it.
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        lr = optimizer.param_groups[0]["lr"]
        for step, (images, labels) in enumerate(bar, start=1):
            images = augment(images.to(device, non_blocking=True), config.augment)
            labels = labels.to(device, non_blocking=True)
            if cuda:
                images = images.contiguous(memory_format=torch.channels_last)
            if class_sizes is not None:
                seen += torch.bincount(labels, minlength=seen.numel())[: seen.numel()]
            if job.transform is not None:
                images = job.transform(model, images, labels, generator)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                outputs = view(images)
                loss = job.loss(outputs.float(), labels)
            value = float(loss.detach())
            # Stop before a non-finite loss reaches the weights: nothing is saved, so the last checkpoint stays
            # good. Under DDP every rank must stop together, so the flag is summed over ranks.
            bad = not math.isfinite(value)
            if context.enabled and context.all_reduce_sum([float(bad)], device)[0] > 0:
                what = f"the loss is {value}" if bad else "the loss is non-finite on another process"
                raise _diverged(job, what, epoch + 1, step, len(loader), lr)
            if bad:
                raise _diverged(job, f"the loss is {value}", epoch + 1, step, len(loader), lr)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            totals[0] += value * len(labels)
            totals[1] += _accuracy_count(outputs.detach(), labels)
            totals[2] += len(labels)
            bar.set_postfix(loss=f"{totals[0] / totals[2]:.3f}")
        scheduler.step()
        loss_sum, correct, count, *per_class = context.all_reduce_sum(totals + seen.tolist(), device)
        record: EpochRecord = {
            "model": job.name,
            "epoch": epoch + 1,
            "loss": loss_sum / max(count, 1),
            "train_accuracy": correct / max(count, 1),
            "lr": lr,
            "train_images": int(count),
        }
        if class_sizes is not None:
            record.update(seen_share(per_class, class_sizes, count))
        model.eval()
        last = epoch + 1 == config.epochs
        if context.is_main and validate is not None and ((epoch + 1) % config.validate_every == 0 or last):
            # Validation must not move the training RNG, or a resumed run would diverge from an uninterrupted one.
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                record.update(validate(model, epoch + 1))
        record["seconds"] = time.perf_counter() - started
        job.history.append(record)
        saving = (epoch + 1) % config.checkpoint_every == 0 or last
        # The epoch's last step may have made the weights non-finite (a finite loss, then a huge step): never
        # overwrite the last good checkpoint with them. Every rank checks (DDP keeps the weights identical), so
        # all stop together.
        if saving and not _finite_weights(model):
            raise _diverged(job, "the weights became non-finite", epoch + 1, len(loader), len(loader), lr)
        if context.is_main and saving:
            save_checkpoint(
                job.checkpoint,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng_state(),
                    "epoch": epoch + 1,
                    "complete": last,
                    "history": job.history,
                    "signature": job.signature,
                },
            )
        logger.info(
            "%s epoch %d/%d: %s",
            job.name,
            epoch + 1,
            config.epochs,
            ", ".join(f"{k} {v:.4g}" for k, v in record.items() if isinstance(v, float)),
        )
        for callback in on_epoch_end:
            callback(job.name, epoch + 1, record)
    model.eval()
    return job.history

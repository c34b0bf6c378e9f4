"""Fit or load: the one place a run trains a network or loads its finished checkpoint.

f, g, g's ablations and the networks of baseline defenses all go through `Fitter.fit_or_load`: a finished
checkpoint with the right signature is loaded (on resume, and always by ``voldefense evaluate``); otherwise the
network is trained by `voldefense.training.train` (continuing its checkpoint on resume), a checkpoint per epoch
and a metrics.jsonl row per epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Sampler

from voldefense.checkpoint import load_checkpoint, load_finished
from voldefense.distributed import DistContext
from voldefense.errors import CheckpointError
from voldefense.run.data import RunData, train_images_for_curriculum
from voldefense.run.paths import RunPaths, append_metrics, rewrite_metrics
from voldefense.run.resolve import Resolved
from voldefense.train_data import dataset_labels
from voldefense.training import EpochCallback, ShuffleSampler, TrainJob, train

logger = logging.getLogger(__name__)

Mode = Literal["train", "resume", "load"]  # load: ``voldefense evaluate``, finished checkpoints only


@dataclass
class Fitter:
    """What every network of a run is trained with: the run's data, folder, device and training settings."""

    resolved: Resolved
    data: RunData
    paths: RunPaths
    device: torch.device
    amp: bool = False
    context: DistContext = field(default_factory=DistContext)
    mode: Mode = "train"
    callbacks: Sequence[EpochCallback] = ()
    contenders: Mapping[str, Any] = field(default_factory=dict)  # the run's other models (g_init: f needs f)
    _order: torch.Tensor | None = None
    _validate: Callable | None = None

    @property
    def config(self) -> Any:
        return self.resolved.config

    def fit_or_load(
        self,
        name: str,
        model: nn.Module,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        loss_target: Literal["image", "patch"],
        signature: str,
        *,
        curriculum: bool = False,
        validate: bool = True,
        transform: Any = None,
        prepare: Callable[[], bool] | None = None,
        optimizer: Any = None,
    ) -> list[dict[str, Any]]:
        """Train `model` (or load its finished checkpoint); returns its per-epoch history. `prepare()` runs just
        before training and returns True when there is nothing to train (`voldefense.run.warm_start`).
        `optimizer`: this model's `OptimizerConfig` (g's from `optimizer_for`); None = the shared `optimizer`."""
        checkpoint = self.paths.checkpoint(name)
        resume = self.mode == "resume"
        history = load_finished(checkpoint, signature, model) if self.mode != "train" else None
        if history is not None:
            model.to(self.device).eval()
            if resume and self.context.is_main:
                rewrite_metrics(self.paths, name, history)
            logger.info("%s: already trained (%d epochs), loaded from %s", name, len(history), checkpoint)
            return history
        if self.mode == "load":
            raise CheckpointError(
                f"checkpoint {checkpoint} is missing or from an unfinished training; finish it with "
                f"voldefense run {self.paths.config} --out {self.paths.root} --resume"
            )
        if prepare is not None and prepare():
            return []
        if resume and checkpoint.is_file() and self.context.is_main:
            rewrite_metrics(self.paths, name, list(load_checkpoint(checkpoint).get("history", [])))
        sampler = self.curriculum_sampler() if curriculum else self.shuffle_sampler()
        job = TrainJob(
            name,
            model,
            loss,
            loss_target,
            self.data.train,
            sampler,
            checkpoint,
            signature,
            transform=transform,
            labels=dataset_labels(self.data.train),
        )
        config = self.config
        return train(
            job,
            config.training,
            optimizer if optimizer is not None else config.optimizer,
            config.schedule,
            device=self.device,
            amp=self.amp,
            context=self.context,
            # Baselines are not validated per epoch: their trained network need not take images (smoothing's base
            # takes 2C channels); they are evaluated as a whole afterwards.
            validate=self.validator() if validate else None,
            resume=resume,
            on_epoch_end=[self._write_row, *self.callbacks],
        )

    def _write_row(self, model: str, epoch: int, record: dict[str, Any]) -> None:
        if self.context.is_main:
            append_metrics(self.paths, record)

    def shuffle_sampler(self) -> Sampler[int]:
        return ShuffleSampler(len(self.data.train), seed=self.config.training.seed)

    def curriculum_sampler(self) -> Sampler[int]:
        """The curriculum over the training set; the ordering is computed once for every model that uses it."""
        from voldefense.syllabus import CurriculumSampler, curriculum_order

        syl = self.config.syllabus
        if self._order is None:
            self._order = curriculum_order(
                train_images_for_curriculum(self.data.train, self.config.training.num_workers),
                self.resolved.curriculum_metric,
                reference=syl.reference,
                order=syl.order,
                metric_options=syl.metric_options or None,
                entropy=self.resolved.entropy,
            )
        return CurriculumSampler(
            self._order,
            mode=syl.mode,
            start_fraction=syl.start_fraction,
            pacing_epochs=syl.pacing_epochs,
            seed=self.config.training.seed,
            schedule=syl.schedule,
            steps=syl.steps,
            labels=dataset_labels(self.data.train) if syl.stratify else None,
            stratify=syl.stratify,
        )

    def validator(self) -> Callable[[nn.Module, int], dict[str, float]]:
        """Per-epoch validation (Figure 2): clean accuracy and the defense success rate under the N-pixel
        `training.val_attack` (the paper's random pixels by default) on the first `data.val_size` evaluation
        images, with a fixed seed."""
        if self._validate is None:
            self._validate = _make_validator(self.resolved, self.data, self.device)
        return self._validate


def _make_validator(resolved: Resolved, data: RunData, device: torch.device) -> Callable:
    from voldefense.evaluation import evaluate_attack

    config = resolved.config
    attack = resolved.validation_attack.build(**config.training.val_attack_options)
    images, labels = data.first(config.data.val_size)

    def validate(model: nn.Module, epoch: int) -> dict[str, float]:
        summary = evaluate_attack(
            model,
            attack,
            images.to(device),
            labels.to(device),
            config.training.val_attack_pixels,
            seed=config.training.seed,
            batch_size=config.training.eval_batch_size,
        ).summary()
        return {
            "val_accuracy": summary.clean_accuracy,
            "val_attacked_accuracy": summary.attacked_accuracy,
            "val_defense_success_rate": summary.defense_success_rate,
        }

    return validate

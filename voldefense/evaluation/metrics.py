"""Running an attack and measuring it: per-image outcomes, their summary, and the worst case over attacks.

Every metric is defined in docs/evaluation.md. In short, for B images, R attacked copies per image, clean
correctness c_i and per-copy adversarial correctness a_ri:

- clean accuracy            = mean_i c_i
- attacked accuracy         = mean_i mean_r a_ri              (the paper averages the R copies'
classifications)
- robustness delta          = attacked accuracy - clean accuracy  (<= 0 unless attacks help)
- defense success rate      = sum_{i: c_i} mean_r a_ri / #{i: c_i}  (among clean-correct images)
- attack success rate       = 1 - defense success rate          (among clean-correct images)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from voldefense.attacks.base import Attack, AttackResult, predict_logits, preserve_mode
from voldefense.errors import ConfigError, TensorError, UsageError
from voldefense.results import share
from voldefense.results import worst_case as results_worst_case


@dataclass
class AttackOutcome:
    """Per-image facts of one attack at one size on one model.

    ``clean_correct``: ``(B,)`` bool. ``adversarial_correct``: ``(R, B)`` bool, one row per attacked copy.
    ``queries``: ``(B,)`` model evaluations the attack spent per image. ``seconds``: wall time of the
    attack calls. ``labels``: ``(B,)`` true labels (so outcomes of different attacks can be checked to match).
    """

    clean_correct: torch.Tensor
    adversarial_correct: torch.Tensor
    queries: torch.Tensor
    seconds: float
    labels: torch.Tensor
    size: float = float("nan")
    iterations: int = 0

    @property
    def num_images(self) -> int:
        return int(self.clean_correct.shape[0])

    @property
    def num_copies(self) -> int:
        return int(self.adversarial_correct.shape[0])

    def summary(self) -> AttackSummary:
        return summarize(self)

    def survived(self) -> tuple[bool, ...]:
        """Per image: classified correctly clean and after every attacked copy (the per-attack robust term)."""
        return tuple((self.clean_correct & self.adversarial_correct.all(0)).tolist())


@dataclass(frozen=True)
class AttackSummary:
    """The scalar metrics of one `AttackOutcome` (definitions in docs/evaluation.md)."""

    num_images: int
    num_copies: int
    clean_accuracy: float
    attacked_accuracy: float
    robustness_delta: float
    defense_success_rate: float
    attack_success_rate: float
    mean_queries: float
    seconds_per_image: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class WorstCase:
    """Per-image robustness over several attacks: an image is robust only if it is classified correctly when
    clean and after every copy of every attack."""

    robust: torch.Tensor
    robust_accuracy: float
    clean_accuracy: float


def is_stochastic(model: nn.Module) -> bool:
    """Whether `model` declares that its forward pass draws randomness (``model.stochastic``, e.g. g with a random
    patch order, or a defense module that says so); such a model is classified over `evaluation.draws` draws."""
    return getattr(model, "stochastic", False) is True


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for p in model.parameters():
        return p.device
    return fallback


def evaluate_attack(
    model: nn.Module,
    attack: Attack,
    images: torch.Tensor,
    labels: torch.Tensor,
    size: float,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    draws: int = 1,
    **run_kwargs: Any,
) -> AttackOutcome:
    """Attack `images` at `size` and classify clean and attacked images with `model`.

    `batch_size` images go to each `attack.run` call (None: all at once; chunk k uses seed ``seed + k``); use
    None for universal attacks, whose patch is trained on the images of one call. Images and labels are moved
    to the model's device. `run_kwargs` are passed to `attack.run` (e.g. ``source_model=f`` for the transfer
    patch).

    `draws` > 1 classifies every clean and attacked image that many times when the model's forward pass draws
    randomness (`is_stochastic`; other models are classified once): the attacked copies' rows are repeated per
    draw, so the attacked accuracy averages the draws, and an image counts as clean-correct (and in `survived`)
    only if every draw is correct.
    """
    if int(draws) != draws or int(draws) < 1:
        raise ConfigError(f"draws must be a whole number >= 1, got {draws}")
    draws = int(draws) if is_stochastic(model) else 1  # a deterministic model's draws would all agree
    if images.dim() != 4 or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise TensorError(
            f"evaluate_attack needs images (B, C, H, W) and labels (B,), got {tuple(images.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1 or None, got {batch_size}")
    device = _model_device(model, images.device)
    images, labels = images.to(device), labels.to(device)
    b = images.shape[0]
    step = b if batch_size is None else int(batch_size)
    results: list[AttackResult] = []
    seconds = 0.0
    for k, lo in enumerate(range(0, b, max(step, 1))):
        start = time.perf_counter()
        result = attack.run(
            model, images[lo : lo + step], labels[lo : lo + step], size, seed=seed + k, **run_kwargs
        )
        seconds += time.perf_counter() - start
        results.append(result)
    copies = [r.copies() for r in results]
    if len({c.shape[0] for c in copies}) > 1:
        raise UsageError("the attack returned different numbers of copies for different batches")
    adversarial = torch.cat(copies, dim=1) if copies else images.new_zeros((1, 0, *images.shape[1:]))
    with torch.no_grad(), preserve_mode(model):
        clean_correct = torch.stack([predict_logits(model, images).argmax(1) == labels for _ in range(draws)]).all(0)
        r = adversarial.shape[0]
        flat = adversarial.reshape(r * b, *images.shape[1:]).to(device)
        adv_pred = (
            torch.cat([predict_logits(model, flat).argmax(1).view(r, b) for _ in range(draws)])
            if b
            else labels.new_zeros((r * draws, 0))
        )
    queries = (
        torch.cat([r_.queries.reshape(-1).double().cpu() for r_ in results]) if results else torch.zeros(0)
    )
    return AttackOutcome(
        clean_correct=clean_correct.cpu(),
        adversarial_correct=(adv_pred == labels.unsqueeze(0)).cpu(),
        queries=queries,
        seconds=seconds,
        labels=labels.cpu(),
        size=float(size),
        iterations=max((r_.iterations for r_ in results), default=0),
    )


def summarize(outcome: AttackOutcome) -> AttackSummary:
    """Scalar metrics of one outcome. Rates over an empty set (no clean-correct image) are NaN."""
    b = outcome.num_images
    clean = outcome.clean_correct.float()
    per_image = outcome.adversarial_correct.float().mean(0) if b else clean  # mean over the R copies
    clean_acc = float(clean.mean()) if b else math.nan
    attacked_acc = float(per_image.mean()) if b else math.nan
    kept = outcome.clean_correct
    dsr = float(per_image[kept].mean()) if bool(kept.any()) else math.nan
    return AttackSummary(
        num_images=b,
        num_copies=outcome.num_copies,
        clean_accuracy=clean_acc,
        attacked_accuracy=attacked_acc,
        robustness_delta=attacked_acc - clean_acc,
        defense_success_rate=dsr,
        attack_success_rate=1.0 - dsr,
        mean_queries=float(outcome.queries.double().mean()) if b else math.nan,
        seconds_per_image=outcome.seconds / b if b else math.nan,
    )


def worst_case(outcomes: Sequence[AttackOutcome]) -> WorstCase:
    """Combine outcomes of several attacks (and sizes) on the same images into per-image robustness."""
    if not outcomes:
        raise ConfigError("worst_case needs at least one attack outcome")
    first = outcomes[0]
    for other in outcomes[1:]:
        if other.num_images != first.num_images or not torch.equal(other.labels, first.labels):
            raise ConfigError(
                "worst_case needs outcomes on the same images in the same order (labels differ)"
            )
    robust = torch.tensor(results_worst_case([o.survived() for o in outcomes]), dtype=torch.bool)
    b = first.num_images
    return WorstCase(
        robust=robust,
        robust_accuracy=share(robust.tolist()),
        clean_accuracy=float(first.clean_correct.float().mean()) if b else math.nan,
    )

"""PatchCleanser (Xiang, Mahloujifar & Mittal, USENIX Security 2022): double masking around any classifier,
with a certificate per image.

Masked pixels are set to ``mask_value``; ``x ⊙ m`` below means that. With the R-covering mask set M
(`voldefense.defenses.mask_sets`):

**Prediction (double masking, the paper's Algorithm 1).** First round: ``ŷ_i = f(x ⊙ m_i)`` for every mask;
``y_maj`` = the most frequent label (ties to the lowest class index). If all agree, predict it (case I).
Otherwise, for each disagreer i (``ŷ_i ≠ y_maj``), second round ``f(x ⊙ m_i ⊙ m_j)`` for every j; if all of them
give ``ŷ_i``, predict ``ŷ_i`` (case II); if no disagreer passes, predict ``y_maj`` (case III). All disagreers
that pass share one label (the pair (i, i') gives the same image in both second rounds), so checking every
disagreer in one batch equals the paper's first-found order.

**Certificate (Algorithm 2).** x with label y is certified against every patch the set covers when
``f(x ⊙ m_i ⊙ m_j) = y`` for all pairs (i, j), i = j included. Proof sketch (the paper's Theorem 1): a
covered patch lies inside some mask m*, so every image masked by m* equals the clean one masked by m*; the
first-round label of m* is y, hence case I predicts y; any disagreer that passes agrees with its pair with m*,
whose label is y; and if ``y_maj ≠ y``, m* is a disagreer whose whole second round is clean, so it passes. The
certificate holds for square sides up to the set's covered side; larger sides are not certified (left out).

**Attack view ``soft_masks``.** Forward: the one-hot of the double-masking prediction (so an attack succeeds
exactly when the prediction changes). Gradient: the prediction is piecewise constant, so a straight-through
estimator passes the gradient of the mean first-round softmax ``mean_i softmax(f(x ⊙ m_i))`` (BPDA with the
masked-ensemble probability as the differentiable approximation).

**Cost.** First round |M| forward passes of f per image; each disagreeing mask adds up to |M| (its second round
is evaluated a chunk of masks at a time and dropped at the first dissenting label); certification
``|M|(|M|+1)/2``. The module counts the passes it makes (`passes_per_image`), which the report shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from voldefense.defenses.base import (
    BatchTransform,
    DefendedModel,
    ModelFactory,
    TrainBudget,
    Trainer,
    straight_through,
)
from voldefense.defenses.mask_sets import MaskSet, build_mask_set
from voldefense.defenses.preprocessing import check_bool, check_fraction, check_positive_int, classifier_behind


class DoubleMasking(nn.Module):
    """PatchCleanser around `classifier`: images ``(B, C, H, W)`` → one-hot prediction ``(B, K)``."""

    def __init__(self, classifier: nn.Module, mask_set: MaskSet, *, mask_value: float = 0.5, max_batch: int = 1024):
        super().__init__()
        self.classifier = classifier
        self.mask_set = mask_set
        self.mask_value = mask_value
        self.max_batch = max_batch
        self.register_buffer("masks", mask_set.masks(), persistent=False)
        self.num_classes = 0  # known after the first classifier call
        self.reset_pass_count()

    def reset_pass_count(self) -> None:
        self._passes = 0
        self._images = 0

    @property
    def passes_per_image(self) -> float | None:
        """Mean forward passes of the classifier per predicted image since the last reset (None: none yet)."""
        return self._passes / self._images if self._images else None

    def _masked(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return images * keep + self.mask_value * (1.0 - keep)

    def _check(self, images: torch.Tensor) -> None:
        if images.dim() != 4 or tuple(images.shape[-2:]) != tuple(self.masks.shape[-2:]):
            raise ValueError(
                f"patch_cleanser was built for (B, C, {self.masks.shape[-2]}, {self.masks.shape[-1]}) images, "
                f"got {tuple(images.shape)}"
            )

    @torch.no_grad()
    def labels(self, images: torch.Tensor, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Labels of ``images[b] ⊙ m_i ⊙ m_j`` for flat index tensors (i = j: one mask), in chunks."""
        out = []
        for start in range(0, len(b), self.max_batch):
            sl = slice(start, start + self.max_batch)
            keep = self.masks[i[sl]] * self.masks[j[sl]]
            logits = self.classifier(self._masked(images[b[sl]], keep))
            self.num_classes = logits.shape[1]
            out.append(logits.argmax(1))
        self._passes += len(b)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=images.device)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Double-masking labels ``(B,)``."""
        self._check(images)
        n, dev = len(images), images.device
        m = self.mask_set.count
        b = torch.arange(n, device=dev).repeat_interleave(m)
        i = torch.arange(m, device=dev).repeat(n)
        first = self.labels(images, b, i, i).reshape(n, m)
        self._images += n
        votes = F.one_hot(first, self.num_classes).sum(1)
        majority = votes.argmax(1)  # ties: the first maximum, the lowest class index
        pred = majority.clone()
        db, di = (first != majority[:, None]).nonzero(as_tuple=True)
        # Second rounds in chunks of j, dropping a disagreer at its first dissenting label: the same outcome as
        # evaluating every j (a disagreer passes only if all agree), at a fraction of the cost when f is weak.
        want = first[db, di]
        for chunk in torch.arange(m, device=dev).split(len(self.mask_set.cols.starts)):
            if not len(db):
                break
            k = len(chunk)
            second = self.labels(images, db.repeat_interleave(k), di.repeat_interleave(k), chunk.repeat(len(db)))
            agree = (second.reshape(-1, k) == want[:, None]).all(1)
            db, di, want = db[agree], di[agree], want[agree]
        pred[db] = want  # disagreers that passed every j; all of one image share one label (module docstring)
        return pred

    def _soft(self, images: torch.Tensor) -> torch.Tensor:
        """``mean_i softmax(f(x ⊙ m_i))`` with gradient; activations are recomputed in the backward pass."""
        total = 0
        per_call = max(1, self.max_batch // max(len(images), 1))
        for chunk in torch.arange(self.mask_set.count, device=images.device).split(per_call):
            total = total + checkpoint(self._soft_chunk, images, chunk, use_reentrant=False)
        return total / self.mask_set.count

    def _soft_chunk(self, images: torch.Tensor, chunk: torch.Tensor) -> torch.Tensor:
        keep = self.masks[chunk]  # (P, 1, H, W)
        x = self._masked(images[None], keep[:, None]).flatten(0, 1)  # (P*B, C, H, W), mask-major
        return torch.softmax(self.classifier(x), dim=1).reshape(len(chunk), len(images), -1).sum(0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._check(images)
        needs_grad = torch.is_grad_enabled() and (
            images.requires_grad or any(p.requires_grad for p in self.parameters())
        )
        pred = self.predict(images)
        if not needs_grad:
            return F.one_hot(pred, self.num_classes).to(images.dtype)
        soft = self._soft(images)
        return straight_through(F.one_hot(pred, soft.shape[1]).to(soft.dtype), soft)

    @torch.no_grad()
    def certify(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: every two-mask prediction (i <= j) equals the label (correct and certified)."""
        self._check(images)
        n, dev = len(images), images.device
        pi, pj = torch.triu_indices(self.mask_set.count, self.mask_set.count, device=dev)
        p = len(pi)
        two = self.labels(images, torch.arange(n, device=dev).repeat_interleave(p), pi.repeat(n), pj.repeat(n))
        return (two.reshape(n, p) == labels.to(dev)[:, None]).all(1)

    def extra_repr(self) -> str:
        return f"masks={self.mask_set.count}, mask_value={self.mask_value}"


def random_double_masks(masks: torch.Tensor, mask_value: float) -> BatchTransform:
    """Training transform: each image masked by two masks of the set drawn independently and uniformly (the
    paper's fine-tuning augmentation)."""

    def transform(
        model: nn.Module, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        picks = torch.randint(0, len(masks), (2, len(images)), generator=generator)
        keep = (masks[picks[0]] * masks[picks[1]]).to(images.device)
        return images * keep + mask_value * (1.0 - keep)

    return transform


class PatchCleanserDefense:
    """PatchCleanser (double masking) around the run's trained f, or, with ``train_on_masked``, around a fresh
    f trained on images masked by two random masks of the set with f's budget (the paper fine-tunes a
    pretrained model that way; training from scratch keeps every row's budget equal).

    Options: ``patch_area`` (0.02): the patch the mask set is sized for (square side from
    `square_side_for_area`, as the report's certificate); ``masks_per_axis`` (6, the paper's 6×6 = 36 masks);
    ``mask_stride`` / ``mask_size``: override the paper's formula (refused if they do not cover the patch);
    ``mask_value`` (0.5 grey); ``max_batch`` (masked images per classifier call).
    """

    name = "patch_cleanser"

    def __init__(
        self,
        patch_area: float = 0.02,
        masks_per_axis: int = 6,
        mask_stride: int | None = None,
        mask_size: int | None = None,
        mask_value: float = 0.5,
        train_on_masked: bool = False,
        max_batch: int = 1024,
    ):
        self.patch_area = check_fraction(patch_area, "patch_cleanser patch_area")
        self.masks_per_axis = check_positive_int(masks_per_axis, "patch_cleanser masks_per_axis", minimum=2)
        self.mask_stride = mask_stride if mask_stride is None else check_positive_int(mask_stride, "mask_stride")
        self.mask_size = mask_size if mask_size is None else check_positive_int(mask_size, "mask_size")
        self.mask_value = check_fraction(mask_value, "patch_cleanser mask_value", low_open=False)
        self.train_on_masked = check_bool(train_on_masked, "patch_cleanser train_on_masked")
        self.max_batch = check_positive_int(max_batch, "patch_cleanser max_batch")

    def patch_side(self, image_size: tuple[int, int]) -> int:
        from voldefense.evaluation.certify import square_side_for_area

        return square_side_for_area(self.patch_area, *image_size)

    def mask_set(self, image_size: tuple[int, int]) -> MaskSet:
        return build_mask_set(
            image_size,
            self.patch_side(image_size),
            masks_per_axis=self.masks_per_axis,
            stride=self.mask_stride,
            mask_size=self.mask_size,
        )

    def check_image_shape(self, image_shape: Sequence[int]) -> None:
        """Refuses (ConfigError, one line) a configuration it cannot certify for these images, before training."""
        self.mask_set((int(image_shape[-2]), int(image_shape[-1])))

    def fit(
        self,
        make_model: ModelFactory,
        images: torch.Tensor,
        labels: torch.Tensor,
        budget: TrainBudget,
        *,
        base_model: nn.Module | None = None,
        trainer: Trainer | None = None,
    ) -> DefendedModel:
        mask_set = self.mask_set((images.shape[-2], images.shape[-1]))
        transform = random_double_masks(mask_set.masks(), self.mask_value) if self.train_on_masked else None
        classifier, seconds, reused = classifier_behind(
            make_model, images, labels, budget, base_model=base_model, trainer=trainer, transform=transform
        )
        cleanser = DoubleMasking(classifier, mask_set, mask_value=self.mask_value, max_batch=self.max_batch)
        cleanser.to(budget.device).eval()
        covered = mask_set.covered_side

        def certifier(x: torch.Tensor, y: torch.Tensor, sides: Sequence[int]) -> dict[int, torch.Tensor]:
            todo = [s for s in sides if s <= covered]
            if not todo:
                return {}
            certified = cleanser.certify(x.to(cleanser.masks.device), y).cpu()
            return {s: certified.clone() for s in todo}

        m = mask_set.count
        return DefendedModel(
            name=f"patch_cleanser({100 * self.patch_area:g}% patch, {m} masks)",
            model=cleanser,
            views={"soft_masks": cleanser},
            train_seconds=seconds,
            certifier=certifier,
            info={
                "patch_area": self.patch_area,
                "patch_side": self.patch_side((images.shape[-2], images.shape[-1])),
                **mask_set.describe(),
                "mask_value": self.mask_value,
                "train_on_masked": self.train_on_masked,
                "reuses_undefended_model": reused,
                "forward_passes": {
                    "agreement": m,
                    "worst_case": m * m,
                    "certificate": m * (m + 1) // 2,
                },
                "certifies": f"square patches up to {covered} px; larger sides are not certified",
                "gradients": {"soft_masks": "straight-through: gradient of the mean first-round softmax"},
            },
        )


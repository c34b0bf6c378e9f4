"""`VolumizedClassifier`: any image→logits `nn.Module` (the whole defended pipeline, or f) as an ART
classifier.

The pipeline (volumizer → 3D backbone → aggregation) must be *one* module mapping images ``(B, C, H, W)`` in
[0, 1] to image logits ``(B, K)``. ART's own attacks then target the whole pipeline: gradients pass through
the volumizer's gather to the pixels, and the ranking is recomputed on every call.

With ``probabilities=True`` the wrapper predicts probabilities (a softmax after the module) for the ART attacks
that refuse logits (SimBA, VirtualAdversarialMethod); the default stays logits, which the gradient attacks expect
(AutoPGD refuses probabilities). docs/attacks.md lists which ART attacks need which.

This is a thin subclass of ART's `PyTorchClassifier`. It only chooses constructor arguments and smooths three
pitfalls of ART 1.20 (see docs/attacks.md): it casts inputs to float32, accepts index labels in
`loss_gradient`, and chunks `loss_gradient` / `class_gradient`, which ART runs on the whole array at once.
Each chunk is delegated unchanged to ART, so results equal ART's own; attacks that call ART's internals
directly (`AdversarialPatchPyTorch` uses `_predict_framework` / `compute_loss`) still see the plain ART
behaviour.

ART is imported when this module is imported; import it only where an ART classifier is needed.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn

from voldefense.errors import ArgumentTypeError, ConfigError, TensorError, UsageError

DeviceChoice = Literal["auto", "cpu", "gpu"]


def _as_float32(x: Any) -> Any:
    """ART does not cast float64 input and then fails with a dtype mismatch deep inside torch."""
    if isinstance(x, np.ndarray) and x.dtype != np.float32:
        return x.astype(np.float32)
    if isinstance(x, torch.Tensor) and x.dtype != torch.float32:
        return x.float()
    return x


class _Probabilities(nn.Module):
    """The wrapped image→logits module followed by a softmax: what ART attacks needing probabilities call."""

    def __init__(self, logits: nn.Module):
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(images), dim=-1)


class _NLLOfProbabilities(nn.NLLLoss):
    """Cross-entropy of probabilities: NLL of their log (clamped, so a probability of 0 gives a finite loss).
    An `NLLLoss`, so ART turns one-hot labels into class indices for it, as it does for cross-entropy."""

    def forward(self, probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.log(probabilities.clamp_min(1e-12)), target)


class VolumizedClassifier(PyTorchClassifier):
    """An ART `PyTorchClassifier` over an image→logits module.

    Args:
        model: maps images ``(B, C, H, W)`` in [0, 1] to logits ``(B, K)``; normalisation lives inside it.
        nb_classes: K.
        input_shape: ``(C, H, W)`` of one image.
        clip_values: the valid pixel range (attacks clip to it).
        loss: the loss ART differentiates (`loss_gradient`) and trains with (`fit`); cross-entropy by default.
        optimizer: only needed for `fit`.
        device: ``"auto"`` (GPU when CUDA is available), ``"cpu"`` or ``"gpu"``.
        gradient_batch_size: images per chunk in `loss_gradient` and `class_gradient`.
        preprocessing: ART's differentiable ``(mean, std)``; leave ``(0, 1)`` when the model normalises
        itself.
        probabilities: predict softmax probabilities instead of logits (SimBA, VirtualAdversarialMethod need
        them). The default loss is then the cross-entropy of those probabilities, so `loss_gradient` is
        unchanged up to rounding; a custom `loss` receives probabilities.
    """

    def __init__(
        self,
        model: nn.Module,
        nb_classes: int,
        input_shape: tuple[int, int, int],
        *,
        clip_values: tuple[float, float] = (0.0, 1.0),
        loss: nn.Module | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        device: DeviceChoice = "auto",
        gradient_batch_size: int = 64,
        preprocessing: tuple[Any, Any] = (0.0, 1.0),
        probabilities: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ArgumentTypeError(f"VolumizedClassifier needs an nn.Module, got {type(model).__name__}")
        if int(nb_classes) < 2:
            raise ConfigError(f"nb_classes must be at least 2, got {nb_classes}")
        if len(tuple(input_shape)) != 3:
            raise UsageError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
        if device not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'gpu', not {device!r}")
        if int(gradient_batch_size) < 1:
            raise ConfigError(f"gradient_batch_size must be at least 1, got {gradient_batch_size}")
        lo, hi = (float(v) for v in clip_values)
        if not lo < hi:
            raise ConfigError(f"clip_values must be (min, max) with min < max, got {clip_values}")
        if device == "auto":
            device = "gpu" if torch.cuda.is_available() else "cpu"
        if loss is None:
            loss = _NLLOfProbabilities() if probabilities else nn.CrossEntropyLoss()
        self.probabilities = bool(probabilities)
        super().__init__(
            model=_Probabilities(model) if probabilities else model,
            loss=loss,
            input_shape=tuple(int(v) for v in input_shape),
            nb_classes=int(nb_classes),
            optimizer=optimizer,
            channels_first=True,
            clip_values=(lo, hi),
            preprocessing=preprocessing,
            device_type=device,
        )
        self.gradient_batch_size = int(gradient_batch_size)

    @classmethod
    def from_images(
        cls, model: nn.Module, images: torch.Tensor, nb_classes: int | None = None, **kwargs: Any
    ) -> VolumizedClassifier:
        """Build the wrapper with ``input_shape`` taken from `images` and ``nb_classes`` from one forward
        pass."""
        if images.dim() != 4:
            raise TensorError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
        if nb_classes is None:
            with torch.no_grad():
                was_training = model.training
                model.eval()
                nb_classes = int(model(images[:1].float()).shape[-1])
                model.train(was_training)
        return cls(model, nb_classes, tuple(images.shape[1:]), **kwargs)

    # -- pitfalls smoothed, each chunk delegated to ART unchanged

    def predict(
        self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs: Any
    ) -> np.ndarray:
        return super().predict(_as_float32(x), batch_size=batch_size, training_mode=training_mode, **kwargs)

    def loss_gradient(self, x: Any, y: Any, training_mode: bool = False, **kwargs: Any) -> Any:
        x = _as_float32(x)
        y = self._one_hot(y, len(x))
        parts = [
            super(VolumizedClassifier, self).loss_gradient(
                x[i : i + self.gradient_batch_size],
                y[i : i + self.gradient_batch_size],
                training_mode,
                **kwargs,
            )
            for i in range(0, len(x), self.gradient_batch_size)
        ]
        if not parts:
            return x.copy() if isinstance(x, np.ndarray) else x.clone()
        return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)

    def class_gradient(
        self, x: np.ndarray, label: Any = None, training_mode: bool = False, **kwargs: Any
    ) -> Any:
        x = _as_float32(x)
        per_sample = (
            label is not None and not isinstance(label, (int, np.integer)) and np.size(label) == len(x)
        )
        parts = []
        for i in range(0, len(x), self.gradient_batch_size):
            chunk_label = label[i : i + self.gradient_batch_size] if per_sample else label
            parts.append(
                super().class_gradient(
                    x[i : i + self.gradient_batch_size], chunk_label, training_mode, **kwargs
                )
            )
        return np.concatenate(parts) if parts else np.zeros((0, 1, *x.shape[1:]), dtype=np.float32)

    def _one_hot(self, y: Any, n: int) -> Any:
        """ART's `loss_gradient` fails on index labels (`reduce_labels` expects a class axis): one-hot
        them."""
        is_tensor = isinstance(y, torch.Tensor)
        arr = y.detach().cpu().numpy() if is_tensor else np.asarray(y)
        if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1 and self.nb_classes > 1):
            idx = arr.reshape(-1).astype(np.int64)
            if len(idx) != n:
                raise ConfigError(f"got {len(idx)} labels for {n} images")
            if idx.size and (idx.min() < 0 or idx.max() >= self.nb_classes):
                raise ConfigError(
                    f"labels must lie in 0..{self.nb_classes - 1}, got {idx.min()}..{idx.max()}"
                )
            arr = np.eye(self.nb_classes, dtype=np.float32)[idx]
        arr = arr.astype(np.float32)
        return torch.from_numpy(arr).to(y.device) if is_tensor else arr

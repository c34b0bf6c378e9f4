"""The run steps for a user's own model: f from its weights file, g started from f by inflation.

Three calls from the run (`voldefense.run`):

- `describe_init` (when contenders are built): marks an inflated g in its description and checkpoint digest.
- `prepare_own_models` (build step, before any training): checks that a ``model.factory`` model gives logits of
  the dataset's classes and that its g runs on a volume, loads ``model.weights`` into f (names and shapes
  checked: one line naming what does not fit), and inflates ``training.g_init: PATH`` into g and its ablations.
- `prepare_training` (train step, just before each model trains): inflates ``training.g_init: f`` from the f this
  run has just trained or loaded, and tells the runner to skip training an f loaded from ``model.weights``
  (writing its checkpoint, so ``voldefense evaluate`` and ``--resume`` find it like any trained model's).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from voldefense.checkpoint import save_checkpoint
from voldefense.config.schema import Config
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)

G_KINDS = ("g", "ablation")


def _probe_g(plan: Any, image_shape: tuple[int, int, int], num_classes: int) -> None:
    """One forward pass of g on a blank image: a user model whose forward is 2D-only fails here, not in epoch 1."""
    model = plan.model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *image_shape))
    except Exception as err:  # noqa: BLE001 - the user's forward failed on a volume: one line with the fix
        detail = (str(err).splitlines() or [""])[0][:160]
        raise ConfigError(
            f"model.factory: g (your model converted to 3D) fails on a volume ({type(err).__name__}: {detail}); "
            "its forward must use modules only (nn.Flatten(), nn.AdaptiveAvgPool2d, not torch.flatten(x, 1), "
            "x.view(B, -1) or F.max_pool2d), or use model.depth_kernel 1, which runs f on each patch as it is"
        ) from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (1, num_classes):
        raise ConfigError(
            f"model.factory: g gives image logits of shape {tuple(out.shape)}, not (1, {num_classes}); its forward "
            "must keep the patch axis (use nn.Flatten() before the classifier)"
        )


def _init_signature(signature: str, init: str, rule: str) -> str:
    """g's checkpoint digest also names its initialisation, so a from-scratch checkpoint is never resumed as an
    inflated one (or the reverse)."""
    return hashlib.sha256(f"{signature}|g_init={init}|{rule}".encode()).hexdigest()[:16]


def prepare_own_models(
    plans: dict[str, Any], config: Config, image_shape: tuple[int, int, int], num_classes: int
) -> None:
    """Build step: check a user model, load f's weights, inflate g from a weights file (see the module doc)."""
    from voldefense.models.inflate import inflate_into
    from voldefense.models.user import check_output, load_user_weights, read_state_dict

    f = plans.get("f")
    if config.model.factory is not None:
        if f is not None:
            check_output(f.model, image_shape[0], (image_shape[1], image_shape[2]), num_classes)
        for plan in plans.values():
            if plan.kind in G_KINDS:
                _probe_g(plan, image_shape, num_classes)
    if config.model.weights is not None and f is not None:
        load_user_weights(f.model, config.model.weights)
        f.details["weights"] = str(config.model.weights)
        f.description += f", weights from {config.model.weights} (not trained by this run)"
    init, rule = config.training.g_init, config.training.g_init_rule
    if init is None or init == "f":
        return
    state = read_state_dict(init, what="training.g_init")
    for plan in plans.values():
        if plan.kind in G_KINDS:
            inflate_into(plan.model.backbone, state, rule)


def describe_init(plans: dict[str, Any], config: Config) -> None:
    """Mark g and its ablations as inflated from f (info, description, checkpoint digest); touches no file, so
    ``voldefense evaluate`` computes the same digests as the run."""
    init, rule = config.training.g_init, config.training.g_init_rule
    if init is None:
        return
    source = "f" if init == "f" else init
    for plan in plans.values():
        if plan.kind in G_KINDS:
            plan.signature = _init_signature(plan.signature, init, rule)
            plan.details["init"] = f"inflated from {source} ({rule} rule), then fine-tuned"
            plan.description += f", started from {source} by inflation"


def prepare_training(
    plan: Any, plans: dict[str, Any], config: Config, checkpoint: Path, *, device: torch.device, is_main: bool
) -> bool:
    """Train step, before `plan` trains. Returns True when there is nothing to train (f loaded from weights)."""
    if plan.kind == "f" and config.model.weights is not None:
        plan.model.to(device).eval()
        if is_main:
            save_checkpoint(
                checkpoint,
                {
                    "model": plan.model.state_dict(),
                    "epoch": 0,
                    "complete": True,
                    "history": [],
                    "signature": plan.signature,
                },
            )
        logger.info("f: weights loaded from %s; not trained", config.model.weights)
        return True
    if plan.kind in G_KINDS and config.training.g_init == "f":
        from voldefense.models.inflate import inflate_into

        inflate_into(plan.model.backbone, plans["f"].model.state_dict(), config.training.g_init_rule)
        logger.info("%s: initialised from f by inflation (%s rule)", plan.name, config.training.g_init_rule)
    return False

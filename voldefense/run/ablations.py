"""g's recipe and its ablations: each ablation is one record that owns what it changes (docs/rigor.md,
"Ablations"); the rest of g's configuration is kept, and the same seed gives the same initial weights wherever
the architecture is the same."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from voldefense.config.schema import Config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GRecipe:
    """What distinguishes g from its ablations: patch order, loss, curriculum and depth kernel."""

    ranking: str
    loss: str
    loss_options: dict[str, Any] = field(default_factory=dict)
    curriculum: bool = True
    ablation: str | None = None
    depth_kernel: int | str | None = None  # None: model.depth_kernel


def g_recipe(config: Config) -> GRecipe:
    """g as configured."""
    curriculum = config.syllabus.enabled and "g" in config.syllabus.apply_to
    return GRecipe(config.volumizer.ranking, config.loss.g, dict(config.loss.g_options), curriculum)


def _order_warning(name: str) -> Callable[[Config], None]:
    def warn(config: Config) -> None:
        if config.model.depth_kernel == 1 and not config.model.pool_depth:
            logger.warning(
                "ablation %s: with model.depth_kernel 1 and no depth pooling each patch's logits depend on its own "
                "pixels only, so the patch order cannot matter and g_%s reproduces g",
                name,
                name,
            )

    return warn


@dataclass(frozen=True)
class Ablation:
    """One ablation of g: `change` says what it changes (the report shows it), `changes` applies it."""

    name: str
    change: str
    changes: dict[str, Any]
    warn: Callable[[Config], None] = lambda config: None

    def apply(self, recipe: GRecipe) -> GRecipe:
        return replace(recipe, **self.changes, ablation=self.name)


ABLATIONS: dict[str, Ablation] = {
    a.name: a
    for a in (
        Ablation(
            "identity_order",
            "patches in row-major order instead of ranked (volumizer.ranking: identity)",
            {"ranking": "identity"},
            _order_warning("identity_order"),
        ),
        Ablation(
            "random_order",
            "a random patch order per image instead of ranked (volumizer.ranking: random)",
            {"ranking": "random"},
            _order_warning("random_order"),
        ),
        Ablation(
            "no_pal",
            "trained with cross_entropy on its aggregated image logits instead of the Patch Aggregate Loss",
            {"loss": "cross_entropy", "loss_options": {}},
        ),
        Ablation("no_curriculum", "trained on a plain shuffle instead of the curriculum", {"curriculum": False}),
        Ablation(
            "depth_kernel_3",
            "3-deep kernels along the patch axis: each patch also sees its rank neighbours",
            {"depth_kernel": 3},
        ),
        Ablation(
            "depth_kernel_full",
            "kernels spanning all patches (the paper's k x k x N, section 4.2)",
            {"depth_kernel": "full"},
        ),
    )
}

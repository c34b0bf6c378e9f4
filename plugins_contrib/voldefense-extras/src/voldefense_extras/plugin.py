"""The hook implementations of voldefense-extras (entry point ``extras`` in the group ``voldefense``).

Each hook yields one spec. The factories import their component modules lazily: `voldefense plugins` imports
this module, and listing plugins must not pay for importing torch models or attacks. The factories spell out
the options of the component they build (rather than taking ``**options``) because voldefense checks the
options of a config against the factory's signature and names any it does not accept; a test keeps the two
signatures equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, BackboneSpec, LossSpec, MetricSpec

ORIGIN = "voldefense-extras"


def ssim_factory(
    *, window_size: int = 7, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03, data_range: float = 1.0
) -> Any:
    from voldefense_extras.ssim import SSIM

    return SSIM(window_size=window_size, sigma=sigma, k1=k1, k2=k2, data_range=data_range)


def wide_resnet_factory(
    num_classes: int = 10,
    *,
    width: float = 1.0,
    stem: Literal["small", "imagenet"] = "small",
    in_channels: int = 3,
    mean: float | list[float] | None = 0.5,
    std: float | list[float] | None = 0.25,
    depth: int = 16,
    widen_factor: int = 4,
    dropout: float = 0.0,
) -> Any:
    from voldefense_extras.wide_resnet import wide_resnet

    return wide_resnet(
        num_classes,
        width=width,
        stem=stem,
        in_channels=in_channels,
        mean=mean,
        std=std,
        depth=depth,
        widen_factor=widen_factor,
        dropout=dropout,
    )


def pal_weighted_factory(
    *, decay: float = 1.0, weights: list[float] | None = None, label_smoothing: float = 0.0
) -> Any:
    from voldefense_extras.losses import PatchWeightedAggregateLoss

    return PatchWeightedAggregateLoss(decay=decay, weights=weights, label_smoothing=label_smoothing)


def sparse_rs_factory(
    *, max_queries: int = 1000, p_init: float = 0.3, batch_size: int = 256, early_stop: bool = True
) -> Any:
    from voldefense_extras.sparse_rs import SparseRS

    return SparseRS(max_queries=max_queries, p_init=p_init, batch_size=batch_size, early_stop=early_stop)


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="ssim",
        factory=ssim_factory,
        description="structural similarity (SSIM) to the reference; larger = more similar = simpler",
        distance=True,
        larger_is_simpler=True,
    )


@hookimpl
def voldefense_backbones() -> Iterator[BackboneSpec]:
    # converter=None: WideResNet uses standard layers only, so the generic converter builds its 3D twin.
    yield BackboneSpec(
        name="wide_resnet",
        factory=wide_resnet_factory,
        description="WideResNet WRN-depth-k (pre-activation residual blocks); 3D via the generic converter",
    )


@hookimpl
def voldefense_losses() -> Iterator[LossSpec]:
    yield LossSpec(
        name="pal_weighted",
        factory=pal_weighted_factory,
        description="Patch Aggregate Loss with per-slice weights (geometric decay over the ranked volume)",
        target="patch",
    )


@hookimpl
def voldefense_attacks() -> Iterator[AttackSpec]:
    yield AttackSpec(
        name="sparse_rs",
        factory=sparse_rs_factory,
        description="Sparse-RS random search over N pixels (Croce et al. 2022); black-box, early stop",
        size_unit="pixels",
        white_box=False,
        budget_options=("max_queries",),  # declared, so the convergence check doubles its queries as a built-in's
    )

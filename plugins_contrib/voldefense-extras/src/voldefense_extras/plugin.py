"""The hook implementations of voldefense-extras (entry point ``extras`` in the group ``voldefense``).

Each hook yields one spec. Its factory is a `voldefense.specs.lazy_factory` naming the component: `voldefense
plugins` imports this module, and listing plugins must not pay for importing torch models or attacks, yet
voldefense checks a config's options against the component's own signature (the lazy factory reports it) and
names any it does not accept. No forwarding wrapper repeats the options.
"""

from __future__ import annotations

from collections.abc import Iterator

from voldefense.hookspecs import hookimpl
from voldefense.specs import AttackSpec, BackboneSpec, LossSpec, MetricSpec, lazy_factory

ORIGIN = "voldefense-extras"


@hookimpl
def voldefense_metrics() -> Iterator[MetricSpec]:
    yield MetricSpec(
        name="ssim",
        factory=lazy_factory("voldefense_extras.ssim:SSIM"),
        description="structural similarity (SSIM) to the reference; larger = more similar = simpler",
        distance=True,
        larger_is_simpler=True,
    )


@hookimpl
def voldefense_backbones() -> Iterator[BackboneSpec]:
    # converter=None: WideResNet uses standard layers only, so the generic converter builds its 3D twin.
    yield BackboneSpec(
        name="wide_resnet",
        factory=lazy_factory("voldefense_extras.wide_resnet:wide_resnet"),
        description="WideResNet WRN-depth-k (pre-activation residual blocks); 3D via the generic converter",
    )


@hookimpl
def voldefense_losses() -> Iterator[LossSpec]:
    yield LossSpec(
        name="pal_weighted",
        factory=lazy_factory("voldefense_extras.losses:PatchWeightedAggregateLoss"),
        description="Patch Aggregate Loss with per-slice weights (geometric decay over the ranked volume)",
        target="patch",
    )


@hookimpl
def voldefense_attacks() -> Iterator[AttackSpec]:
    yield AttackSpec(
        name="sparse_rs",
        factory=lazy_factory("voldefense_extras.sparse_rs:SparseRS"),
        description="Sparse-RS random search over N pixels (Croce et al. 2022); black-box, early stop",
        size_unit="pixels",
        white_box=False,
        budget_options=("max_queries",),  # declared, so the convergence check doubles its queries as a built-in's
    )

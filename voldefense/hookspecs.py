"""Hook specifications: the whole plugin contract of voldefense.

A plugin is any module or object with functions named after these hooks and marked with `hookimpl`.
Built-in plugins (`voldefense.plugins.*`) and third-party ones (entry-point group ``voldefense``) go through exactly
these hooks. Each hook *yields specs* (see `voldefense.specs`) and has no side effects; it must not import heavy
code, allocate tensors or touch a GPU — that happens only in a spec's factory, when a component is built.

No hook is ``firstresult``: every plugin's specs are collected, and two plugins that claim the same name are an
error naming both, so an installed package can never silently shadow another component.

This module imports no torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from voldefense.specs import AttackSpec, BackboneSpec, DefenseSpec, LossSpec, MetricSpec

PROJECT_NAME = "voldefense"
ENTRY_POINT_GROUP = "voldefense"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def voldefense_metrics() -> Iterable[MetricSpec]:
    """Yield `MetricSpec`s for information metrics used to rank patches (volumizer) and samples (syllabus).

    Signature of what a spec's factory builds: ``metric(x, reference=None) -> scores`` with ``x`` of shape
    ``(M, C, h, w)`` in [0, 1], ``reference`` broadcastable to ``x`` (distance metrics only) and ``scores`` of
    shape ``(M,)``; vectorised over M, on whatever device ``x`` is on.

    Example::

        @hookimpl
        def voldefense_metrics():
            yield MetricSpec(name="l1", factory=L1Distance, description="mean absolute difference",
                             distance=True, larger_is_simpler=False)
    """


@hookspec
def voldefense_backbones() -> Iterable[BackboneSpec]:
    """Yield `BackboneSpec`s: a 2D architecture (the undefended model f) and its 2D→3D converter (g).

    ``factory(num_classes, **options) -> nn.Module`` builds f (images ``(B, C, H, W)`` → logits ``(B, K)``);
    ``converter(model_2d, **options) -> nn.Module`` builds g from it (volumes ``(B, C, N, ph, pw)`` → per-patch
    logits ``(B, N', K)``). Leave ``converter`` as None to use `voldefense.models.convert.convert_to_3d`, which
    handles every standard layer.
    """


@hookspec
def voldefense_losses() -> Iterable[LossSpec]:
    """Yield `LossSpec`s: ``factory(**options)`` returns ``loss(logits, labels) -> scalar``.

    ``target="image"`` losses take image logits ``(B, K)``; ``target="patch"`` losses take per-patch logits
    ``(B, N, K)`` (the Patch Aggregate Loss is one).
    """


@hookspec
def voldefense_attacks() -> Iterable[AttackSpec]:
    """Yield `AttackSpec`s: ``factory(**options)`` returns an attack with
    ``run(model, images, labels, size, *, seed) -> AttackResult``.

    ``model`` is an ``nn.Module`` from images ``(B, C, H, W)`` in [0, 1] to image logits ``(B, K)`` — the whole
    defended pipeline, so white-box attacks differentiate through the volumizer. ``size`` is a pixel count or an
    area fraction, as the spec's ``size_unit`` says. The attack must restore the model's train/eval mode.
    """


@hookspec
def voldefense_defenses() -> Iterable[DefenseSpec]:
    """Yield `DefenseSpec`s for baseline defenses evaluated beside f and g (median filter, smoothing, ...)."""

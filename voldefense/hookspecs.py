"""Hook specifications: the whole plugin contract of voldefense (reference: docs/plugins.md).

A plugin is any module or object with functions named after these hooks and marked with `hookimpl`; an
unmarked function is ignored, and a plugin that implements no hook at all is reported. Built-in plugins
(`voldefense.plugins.*`) and third-party ones (entry-point group ``voldefense``) go through exactly these
hooks.
Each hook *yields specs* (see `voldefense.specs`) and has no side effects; it must not import heavy code,
allocate tensors or touch a GPU — that happens only in a spec's factory, when a component is built.

Names follow `voldefense.specs.NAME_PATTERN`: 1-64 lowercase letters, digits or ``_``, starting with a
letter. No hook is ``firstresult``: every plugin's specs are collected, and two plugins that claim the same
name of the same kind are an error naming both, so an installed package can never silently shadow another
component. A hook that raises, or yields something other than its spec type, is reported with the plugin's
package; the other plugins still load (``VOLDEFENSE_STRICT_PLUGINS=1`` raises instead).

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
    """Yield `MetricSpec`s: information metrics that rank patches (volumizer) and samples (curriculum).

    ``factory(**options)`` returns ``metric(x, reference=None) -> scores``: ``x`` of shape ``(M, C, h, w)`` in
    [0, 1], ``reference`` broadcastable to ``x`` (distance metrics; None for standalone ones), ``scores`` of
    shape ``(M,)``, finite, vectorised over M and on ``x``'s device. Declare ``distance=True`` when the metric
    compares with a reference, and ``larger_is_simpler=True`` when a larger score means simpler / more like
    the reference (similarities, PSNR); that gives the orders ``simple_first`` / ``complex_first`` a meaning.

    Optional fast path: a metric object may also offer ``grouped(x, reference) -> scores`` with ``x`` of shape
    ``(G, M, C, h, w)``, ``reference`` broadcastable (typically ``(G, 1, C, h, w)``) and scores ``(G, M)``; the
    volumizer then scores each image's patches against its reference without copying the reference per patch.
    Metrics without it get the flat call.

    Example::

        @hookimpl
        def voldefense_metrics():
            yield MetricSpec(name="l1", factory=L1Distance, description="mean absolute difference",
                             distance=True, larger_is_simpler=False)
    """


@hookspec
def voldefense_backbones() -> Iterable[BackboneSpec]:
    """Yield `BackboneSpec`s: a 2D architecture (the undefended model f) and its 2D→3D converter (for g).

    ``factory(num_classes, **options) -> nn.Module`` builds f: images ``(B, C, H, W)`` in [0, 1] → logits
    ``(B, K)``, normalisation inside the model. Take the options the built-ins take where they apply:
    ``width`` (channel multiplier), ``stem`` (``"small"`` | ``"imagenet"``), ``in_channels``, ``mean``,
    ``std``.
    ``converter(model_2d, **options) -> nn.Module`` builds g's network from f: volumes ``(B, C, N, ph, pw)`` →
    per-patch logits ``(B, N', K)``; it receives the converter options ``depth_kernel``, ``pool_depth`` and
    ``num_patches`` that it accepts. It is not called for ``depth_kernel`` 1 without depth pooling (unless
    ``fold`` is false): g is then f itself, run on each patch. Leave ``converter`` as None to use
    `voldefense.models.convert.convert_to_3d`, which converts every standard layer when the forward code uses
    modules only (``nn.Flatten``, not ``x.view(B, -1)``).
    """


@hookspec
def voldefense_losses() -> Iterable[LossSpec]:
    """Yield `LossSpec`s: ``factory(**options)`` returns ``loss(logits, labels) -> scalar tensor``.

    ``target="image"`` losses take image logits ``(B, K)`` (training f); ``target="patch"`` losses take
    per-patch logits ``(B, N, K)`` (training g; the Patch Aggregate Loss ``pal`` is one). ``labels`` is
    ``(B,)`` long. The loss must be differentiable with respect to the logits.
    """


@hookspec
def voldefense_attacks() -> Iterable[AttackSpec]:
    """Yield `AttackSpec`s: ``factory(**options)`` returns an attack with
    ``run(model, images, labels, size, *, seed=0) -> voldefense.attacks.AttackResult``.

    ``model`` is an ``nn.Module`` from images ``(B, C, H, W)`` in [0, 1] to image logits ``(B, K)``: the whole
    defended pipeline, so white-box attacks differentiate through the volumizer. ``size`` is a pixel count or
    an area fraction, as the spec's ``size_unit`` (``"pixels"`` | ``"area"``) says; ``white_box=True`` when
    the attack uses gradients. The attack must stay within its query budget, count its queries per image in
    the result, return images in [0, 1], be deterministic given ``seed`` and restore the train/eval mode of
    every submodule of the model (`voldefense.attacks.preserve_mode`).
    """


@hookspec
def voldefense_defenses() -> Iterable[DefenseSpec]:
    """Yield `DefenseSpec`s: baseline defenses evaluated beside f and g (median filter, smoothing, ...).

    ``factory(**options)`` returns a `voldefense.defenses.Defense`: an object with a ``name`` and
    ``fit(make_model, images, labels, budget, *, base_model=None, trainer=None) -> DefendedModel`` (see
    `voldefense.defenses.base`), where ``make_model(in_channels)`` builds a fresh copy of the run's f,
    ``budget`` is f's `voldefense.defenses.TrainBudget`, ``base_model`` the trained f and ``trainer`` an
    optional replacement training loop. The `DefendedModel` carries the defended image classifier and the
    named views an attack should target (e.g. a straight-through "bpda" view of a non-differentiable filter).
    """

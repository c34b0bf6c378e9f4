"""Contenders: the rows of the report — f, g, g's ablations and the baseline defenses — behind one protocol.

Each contender is built from resolved specs, then `fit_or_load(fitter)` trains it (or loads its finished
checkpoint), `target()` gives what the attack grid evaluates and `entry()` the `ModelEntry` describing it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from voldefense.config.schema import Config
from voldefense.config.training_checks import optimizer_for
from voldefense.results import ModelEntry
from voldefense.run.ablations import ABLATIONS, GRecipe
from voldefense.run.data import RunData
from voldefense.run.fit import Fitter
from voldefense.run.grid import Certifier, EvalTarget
from voldefense.run.paths import signature
from voldefense.run.resolve import Resolved
from voldefense.run.warm_start import describe_init, prepare_training


class Contender(Protocol):
    name: str
    kind: str

    def fit_or_load(self, fitter: Fitter) -> None: ...

    def target(self) -> EvalTarget: ...

    def entry(self) -> ModelEntry: ...


def _trained(entry: ModelEntry, history: list[dict[str, Any]] | None) -> ModelEntry:
    if history is None:
        return entry
    from dataclasses import replace

    return replace(entry, epochs=len(history), train_seconds=float(sum(r.get("seconds", 0.0) for r in history)))


@dataclass
class Network:
    """f, g or an ablation of g: one network trained by the run's loop with its own loss and sampler."""

    name: str
    kind: Literal["f", "g", "ablation"]
    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_target: Literal["image", "patch"]
    curriculum: bool
    description: str
    signature: str
    details: dict[str, Any] = field(default_factory=dict)
    certify: Certifier | None = None
    no_certificate: str = ""
    history: list[dict[str, Any]] | None = None

    def fit_or_load(self, fitter: Fitter) -> None:
        def prepare() -> bool:  # f loaded from model.weights (nothing to train); g inflated from the trained f
            checkpoint = fitter.paths.checkpoint(self.name)
            return prepare_training(
                self, fitter.contenders, fitter.config, checkpoint, device=fitter.device, is_main=fitter.context.is_main
            )

        self.history = fitter.fit_or_load(
            self.name,
            self.model,
            self.loss,
            self.loss_target,
            self.signature,
            curriculum=self.curriculum,
            prepare=prepare,
            optimizer=optimizer_for(fitter.config, self.kind),
        )

    def target(self) -> EvalTarget:
        return EvalTarget(self.name, self.model, {"model": self.model}, self.certify, self.no_certificate)

    def entry(self) -> ModelEntry:
        parameters = sum(p.numel() for p in self.model.parameters())
        return _trained(ModelEntry(self.kind, self.description, parameters, dict(self.details)), self.history)


@dataclass
class Baseline:
    """A baseline defense plugin fitted with f's architecture, data and budget; `defended` once fitted."""

    name: str
    plugin: str
    options: dict[str, Any]
    defense: Any
    signature: str
    f_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    base: Network | None = None  # the run's f, handed to defenses that sit in front of it
    kind: str = "defense"
    defended: Any = None  # voldefense.defenses.DefendedModel after `fit_or_load`
    history: list[dict[str, Any]] | None = None  # epochs of the run's loop; None: nothing trained

    def fit_or_load(self, fitter: Fitter) -> None:
        """`Defense.fit` with the run's f factory, ``base_model`` = the trained f, and the run's own loop as its
        trainer (f's loss, optimizer, schedule, epochs, batch size, augmentation and seed; resumable)."""
        import logging

        from voldefense.defenses import TrainBudget

        config = fitter.config

        def trainer(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, transform: Any) -> None:
            del images, labels  # a probe batch only: the run's loop streams the training set itself
            self.history = fitter.fit_or_load(
                self.name, model, self.f_loss, "image", self.signature, validate=False, transform=transform
            )

        budget = TrainBudget(
            epochs=config.training.epochs,
            batch_size=config.training.batch_size,
            lr=config.optimizer.lr,
            seed=config.training.seed,
            device=fitter.device,
            weight_decay=config.optimizer.weight_decay,
        )
        logging.getLogger(__name__).info("fitting baseline %s (%s)", self.name, self.plugin)
        probe_images, probe_labels = fitter.data.probe(config.training.batch_size)
        make_model = f_factory(fitter.resolved, fitter.data.num_classes)
        base_model = self.base.model if self.base is not None else None
        self.defended = self.defense.fit(
            make_model, probe_images, probe_labels, budget, base_model=base_model, trainer=trainer
        ).to(fitter.device)
        self.defended.model.eval()

    def target(self) -> EvalTarget:
        defended = self.defended
        return EvalTarget(
            self.name,
            defended.model,
            {view: defended.model_for_attack(view) for view in defended.view_names},
            defended.certify if defended.certifiable else None,
            "" if defended.certifiable else "the defense has no certificate",
        )

    def entry(self) -> ModelEntry:
        defended = self.defended
        details = {
            "plugin": self.plugin,
            "options": jsonable(self.options),
            "views": list(defended.view_names),
            "info": jsonable(defended.info),
        }
        parameters = sum(p.numel() for p in defended.model.parameters())
        entry = ModelEntry("defense", defended.name, parameters, details, 0, float(defended.train_seconds))
        return _trained(entry, self.history)  # nothing trained: e.g. a filter in front of the run's f


def jsonable(value: Any) -> Any:
    """A defense's options and info as JSON values (tensors become numbers or lists, modules their class name)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, nn.Module):
        return type(value).__name__
    return str(value)


def _backbone_options(resolved: Resolved, in_channels: int) -> dict[str, Any]:
    model = resolved.config.model
    if model.factory is not None:  # a user's own model: its options are its function's arguments
        return dict(in_channels=in_channels, **model.options)
    return dict(width=model.width, stem=model.stem, in_channels=in_channels, **model.options)


def architecture_name(config: Config) -> str:
    """What the networks are built from: the user's import path (model.factory) or the backbone plugin's name."""
    return config.model.factory or config.model.backbone


def f_factory(resolved: Resolved, num_classes: int) -> Callable[[int], nn.Module]:
    """``make_model(in_channels)``: a fresh, untrained f of the run's architecture (what baselines are built
    from), initialised from the run's seed so every baseline starts where f started."""
    from voldefense.models.factory import build_model

    def make_model(in_channels: int) -> nn.Module:
        torch.manual_seed(resolved.config.training.seed)
        return build_model(
            resolved.architecture, dims=2, num_classes=num_classes, **_backbone_options(resolved, in_channels)
        )

    return make_model


def build_f(resolved: Resolved, data: RunData) -> Network:
    config = resolved.config
    torch.manual_seed(config.training.seed)  # the same initial weights whatever else the run builds
    loss_spec = resolved.losses[config.loss.f]
    loss = loss_spec.build(**config.loss.f_options)
    model = f_factory(resolved, data.num_classes)(data.image_shape[0])
    curriculum = config.syllabus.enabled and "f" in config.syllabus.apply_to
    description = f"undefended 2D {architecture_name(config)}"
    if curriculum:
        description += f", curriculum by {config.syllabus.metric}"
    details = {
        "backbone": architecture_name(config),
        "loss": config.loss.f,
        "loss_target": loss_spec.target,
        "curriculum": curriculum,
    }
    return Network("f", "f", model, loss, loss_spec.target, curriculum, description, signature(config, "f"), details)


def build_g(resolved: Resolved, data: RunData, name: str = "g") -> Network:
    """g, or an ablation of g (`resolved.recipes[name]` says what changes); same seed, so the same initial
    weights as g wherever the architecture is the same."""
    from voldefense.models.defended import DefendedClassifier
    from voldefense.models.factory import build_model
    from voldefense.volumizer import Volumizer

    config, recipe = resolved.config, resolved.recipes[name]
    channels, height, width = data.image_shape
    vol = config.volumizer
    torch.manual_seed(config.training.seed)
    loss_spec = resolved.losses[recipe.loss]
    loss = loss_spec.build(**recipe.loss_options)
    volumizer = Volumizer(
        patch_size=tuple(vol.patch) if isinstance(vol.patch, list) else vol.patch,
        metric=resolved.volumizer_metric,
        reference=vol.reference,
        order=vol.order,
        ranking=recipe.ranking,
        pad=vol.pad,
        metric_options=vol.metric_options or None,
        entropy=resolved.entropy,
    )
    num_patches = volumizer.num_patches((height, width))
    backbone = build_model(
        resolved.architecture,
        dims=3,
        num_classes=data.num_classes,
        depth_kernel=config.model.depth_kernel if recipe.depth_kernel is None else recipe.depth_kernel,
        pool_depth=config.model.pool_depth,
        fold=config.model.fold,
        num_patches=num_patches,
        **_backbone_options(resolved, channels),
    )
    model = DefendedClassifier(volumizer, backbone, aggregation=config.model.aggregation)
    certify, reason = g_certifier(model, resolved)
    kind: Literal["g", "ablation"] = "ablation" if recipe.ablation else "g"
    return Network(
        name,
        kind,
        model,
        loss,
        loss_spec.target,
        recipe.curriculum,
        _g_description(resolved, recipe),
        # Loss and curriculum do not change the architecture, but a checkpoint of one ablation must never be
        # mistaken for another's.
        signature(config, kind, recipe.ablation),
        {**_g_details(resolved, recipe, num_patches), "loss_target": loss_spec.target},
        certify,
        reason,
    )


def _g_description(resolved: Resolved, recipe: GRecipe) -> str:
    config = resolved.config
    ranked = f"ranking by {config.volumizer.metric}" if recipe.ranking == "metric" else f"{recipe.ranking} patch order"
    description = f"volumized 3D {architecture_name(config)}, {ranked}, {recipe.loss}"
    if recipe.curriculum:
        description += f", curriculum by {config.syllabus.metric}"
    if recipe.ablation:
        description = f"ablation of g ({recipe.ablation}): {description}"
    return description


def _g_details(resolved: Resolved, recipe: GRecipe, num_patches: int) -> dict[str, Any]:
    config = resolved.config
    details: dict[str, Any] = {
        "backbone": architecture_name(config),
        "loss": recipe.loss,
        "metric": config.volumizer.metric,
        "ranking": recipe.ranking,
        "patches": num_patches,
        "depth_kernel": config.model.depth_kernel if recipe.depth_kernel is None else recipe.depth_kernel,
        "curriculum": recipe.curriculum,
    }
    if recipe.ablation:
        details.update(ablation=recipe.ablation, change=ABLATIONS[recipe.ablation].change)
    return details


def g_certifier(model: nn.Module, resolved: Resolved) -> tuple[Certifier | None, str]:
    """Majority-vote certification of g (docs/certification.md) where the built model satisfies its premises,
    else the reason."""
    from voldefense.evaluation.certify import certify_defended, majority_vote_refusal

    reason = majority_vote_refusal(model)
    if reason:
        return None, "not defined: " + reason
    step = resolved.config.training.eval_batch_size

    def certify(images: torch.Tensor, labels: torch.Tensor, sides: Sequence[int]) -> dict[int, torch.Tensor]:
        return certify_defended(model, images, labels, sides, batch_size=step)

    return certify, ""


def build_contenders(resolved: Resolved, data: RunData) -> dict[str, Contender]:
    """Every report row, in report order: f, g, g's ablations, then the baseline defenses (built, not trained)."""
    config = resolved.config
    contenders: dict[str, Contender] = {}
    for kind in config.training.models:
        contenders[kind] = build_f(resolved, data) if kind == "f" else build_g(resolved, data)
    for ablation in config.ablations:
        ABLATIONS[ablation].warn(config)
        contenders[f"g_{ablation}"] = build_g(resolved, data, f"g_{ablation}")
    describe_init(contenders, config)  # g started from f by inflation: its description and checkpoint digest
    f = contenders.get("f")
    f_loss = resolved.losses[config.loss.f]
    for entry in config.defenses:
        label = entry.label or entry.name
        spec = resolved.defenses[label]
        contenders[label] = Baseline(
            label,
            entry.name,
            dict(entry.options),
            spec.build(**entry.options),
            signature(config, "defense", {"plugin": entry.name, "options": entry.options}),
            f_loss.build(**config.loss.f_options),
            f if isinstance(f, Network) else None,
        )
    return contenders

"""The main job: one validated `Config` in; trained f and g, their attack results and a report out.

A sequence of small steps, each a plain function of built objects::

    config = load_config(path, overrides)              # voldefense.config: every mistake found here
    paths  = prepare_output(out_dir, resume=..., overwrite=...)
    data   = load_data(config)                         # datasets, validation and evaluation tensors
    models = build_models(config, data)                # registry names resolved here, once
    train_models(models, config, data, paths, ...)     # voldefense.training, checkpoint per epoch
    results = evaluate_models(models, config, data, paths, ...)  # voldefense.evaluation, saved after every row
    write_report(results, paths)                       # results.json, report.md, plots

`run()` chains them; `evaluate_run()` (``voldefense evaluate``) re-runs the last three on saved checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from voldefense import jsonio
from voldefense.checkpoint import atomic_write_text, load_checkpoint, load_weights
from voldefense.config.load import config_to_dict, dump_config, parse_config, read_yaml
from voldefense.config.schema import AttackConfig, Config
from voldefense.distributed import DistContext, init_distributed, shutdown_distributed
from voldefense.errors import CheckpointError, ConfigError
from voldefense.training import EpochCallback, ShuffleSampler, TrainJob, train
from voldefense.warm_start import describe_init, prepare_own_models, prepare_training

logger = logging.getLogger(__name__)

DeviceChoice = Literal["auto", "cpu", "cuda"]
RESULTS_VERSION = 1


# -- output folder -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPaths:
    """The files of one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def checkpoint(self, model: str) -> Path:
        return self.checkpoints / f"{model}.pt"

    def outputs(self) -> list[Path]:
        return [self.config, self.metrics, self.results, self.report, self.checkpoints, self.plots]


def default_output_dir(config: Config, config_path: str | Path | None) -> Path:
    if config.output.dir:
        return Path(config.output.dir)
    stem = Path(config_path).stem if config_path else "run"
    return Path("runs") / stem


def prepare_output(
    root: Path, config: Config, *, resume: bool, overwrite: bool, context: DistContext | None = None
) -> RunPaths:
    """Create the run folder; refuse to clobber an earlier run unless told; on resume, insist on the same config.

    Under torchrun every rank checks before rank 0 writes anything, so all ranks agree on the outcome.
    """
    context = context or DistContext()
    paths = RunPaths(Path(root))
    existing = [p for p in paths.outputs() if p.exists()]
    if resume:
        if not paths.config.is_file():
            raise ConfigError(f"--resume: {paths.root} holds no run (no config.yaml); start it without --resume")
        saved = parse_config(read_yaml(paths.config))
        if _comparable(saved) != _comparable(config):
            changed = _changed_keys(config_to_dict(saved), config_to_dict(config))
            raise ConfigError(
                f"--resume: the config differs from the run's saved config.yaml at {', '.join(changed[:5])}; "
                "resume with the same config (or start a new run with --out)"
            )
        return paths
    if existing and not overwrite:
        raise ConfigError(
            f"output folder {paths.root} already holds a run ({existing[0].name}); pass --overwrite to replace it, "
            "--resume to continue it, or choose another folder with --out"
        )
    context.barrier()
    if context.is_main:
        for path in existing:  # only our own outputs, never anything else the user keeps there
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        paths.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(paths.config, dump_config(config))
    return paths


def _comparable(config: Config) -> dict[str, Any]:
    data = config_to_dict(config)
    data["output"] = {}  # where the run lives and whether it may be replaced do not change its results
    return data


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys: list[str] = []
        for key in sorted(set(old) | set(new)):
            if key == "output" and not prefix:
                continue
            keys += _changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")
        return keys
    return [] if old == new else [prefix.rstrip(".")]


# -- devices -----------------------------------------------------------------------------------------------


def resolve_device(
    choice: DeviceChoice, config: Config, context: DistContext | None = None
) -> tuple[torch.device, bool]:
    """The device and whether to use mixed precision (on CUDA only; `training.amp` may force it off)."""
    if choice not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"--device: invalid value {choice!r}; allowed: auto, cpu, cuda")
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise ConfigError("--device cuda: no CUDA device is available; use --device cpu or auto")
    use_cuda = cuda if choice == "auto" else choice == "cuda"
    if use_cuda:
        index = context.local_rank if context is not None else 0
        device = torch.device("cuda", index)
    else:
        device = torch.device("cpu")
    amp = use_cuda and config.training.amp is not False
    if config.training.amp is True and not use_cuda:
        logger.warning("training.amp: true needs CUDA; training in full precision on the CPU")
    return device, amp


# -- data --------------------------------------------------------------------------------------------------


@dataclass
class RunData:
    """The datasets and the fixed test tensors of a run."""

    train: Dataset
    test: Dataset
    classes: list[str]
    image_shape: tuple[int, int, int]
    eval_images: torch.Tensor  # float (M, C, H, W) in [0, 1]: a seeded subset of the test split
    eval_labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def validation(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.eval_images[:count], self.eval_labels[:count]


def _dataset_tensors(dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    images = getattr(dataset, "images", None)
    labels = getattr(dataset, "labels", None)
    if isinstance(images, torch.Tensor) and isinstance(labels, torch.Tensor):
        return images[indices].float().div(255.0), labels[indices].clone()
    items = [dataset[int(i)] for i in indices]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items], dtype=torch.long)


def load_data(config: Config) -> RunData:
    """Load both splits and fix the evaluation subset (the first images of a seeded permutation of the test split:
    the validation rows use its first `data.val_size`, each attack its first `images`)."""
    from voldefense.data import load_dataset

    train = load_dataset(config.data.name, split="train", **config.data.options)
    test = load_dataset(config.data.name, split="test", **config.data.options)
    if config.data.train_subset is not None and config.data.train_subset < len(train):
        generator = torch.Generator().manual_seed(config.training.seed)
        keep = torch.randperm(len(train), generator=generator)[: config.data.train_subset]
        train = _subset(train, keep)
    needed = max([config.data.val_size, *(a.images for a in config.attacks)])
    generator = torch.Generator().manual_seed(config.training.seed + 1)
    indices = torch.randperm(len(test), generator=generator)[: min(needed, len(test))]
    images, labels = _dataset_tensors(test, indices)
    classes = list(getattr(train, "classes", [])) or [str(k) for k in range(int(labels.max()) + 1)]
    return RunData(train, test, classes, tuple(images.shape[1:]), images, labels)


def _subset(dataset: Dataset, indices: torch.Tensor) -> Dataset:
    if hasattr(dataset, "subset"):
        return dataset.subset(indices)
    subset = torch.utils.data.Subset(dataset, indices.tolist())
    subset.classes = getattr(dataset, "classes", [])  # type: ignore[attr-defined]
    return subset


def train_images_for_curriculum(dataset: Dataset, num_workers: int = 0) -> Any:
    """The training images for ranking: in-memory datasets hand over their uint8 tensor (no float copy); others
    are streamed in order by a DataLoader, so ImageNet-size sets are never held in memory at once."""
    images = getattr(dataset, "images", None)
    if isinstance(images, torch.Tensor):
        return images
    return torch.utils.data.DataLoader(dataset, batch_size=256, shuffle=False, num_workers=num_workers)


# -- models ------------------------------------------------------------------------------------------------

# What each ablation changes in g (docs/rigor.md, "Ablations"); the rest of g's configuration is kept.
ABLATION_CHANGES: dict[str, str] = {
    "identity_order": "patches in row-major order instead of ranked (volumizer.ranking: identity)",
    "random_order": "a random patch order per image instead of ranked (volumizer.ranking: random)",
    "no_pal": "trained with cross_entropy on its aggregated image logits instead of the Patch Aggregate Loss",
    "no_curriculum": "trained on a plain shuffle instead of the curriculum",
}


@dataclass
class ModelPlan:
    """One row of the report: a model to train (or load) and evaluate, with everything built."""

    name: str
    kind: Literal["f", "g", "ablation"]
    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_target: Literal["image", "patch"]
    curriculum: bool
    description: str
    signature: str
    info: dict[str, Any] = field(default_factory=dict)
    ablation: str | None = None


def _signature(config: Config, kind: str, variant: Any = None) -> str:
    """A digest of what determines a model's architecture, so a mismatched checkpoint is refused."""
    parts = {"model": _model_signature_fields(config, kind), "kind": kind}
    if variant is not None:  # only when set, so f's and g's digests are those of runs made before variants
        parts["variant"] = variant
    if kind in ("g", "ablation"):
        parts["volumizer"] = config_to_dict(config)["volumizer"]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_signature_fields(config: Config, kind: str) -> dict[str, Any]:
    """The model section as digested: `fold` only where it shapes g — at depth kernel 1 without depth pooling,
    where g is f run per patch (2D-shaped parameters) or, with `fold: false`, the Conv3d network — and left out
    elsewhere, where it changes nothing (f, baselines, depth kernels above 1, depth pooling)."""
    model = config_to_dict(config)["model"]
    per_patch = model["depth_kernel"] == 1 and not model["pool_depth"]
    if kind not in ("g", "ablation") or not per_patch:
        del model["fold"]
    return model


def _backbone_options(config: Config, in_channels: int) -> dict[str, Any]:
    if config.model.factory is not None:  # a user's own model: its options are its function's arguments
        return dict(in_channels=in_channels, **config.model.options)
    return dict(width=config.model.width, stem=config.model.stem, in_channels=in_channels, **config.model.options)


def _architecture(config: Config) -> str:
    """What `build_model` builds: the user's import path (model.factory) or the backbone plugin's name."""
    return config.model.factory or config.model.backbone


def make_f_factory(config: Config, num_classes: int) -> Callable[[int], nn.Module]:
    """``make_model(in_channels)``: a fresh, untrained f of the run's architecture (what baselines are built
    from), initialised from the run's seed so every baseline starts where f started."""
    from voldefense.models.factory import build_model

    def make_model(in_channels: int) -> nn.Module:
        torch.manual_seed(config.training.seed)
        return build_model(
            _architecture(config), dims=2, num_classes=num_classes, **_backbone_options(config, in_channels)
        )

    return make_model


def build_models(config: Config, data: RunData, registry: Any = None) -> dict[str, ModelPlan]:
    """Build f, g and g's ablations with their losses; plugin names are resolved here and nowhere later."""
    from voldefense.models.factory import build_model

    if registry is None:
        from voldefense.registry import get_registry

        registry = get_registry()
    channels = data.image_shape[0]
    plans: dict[str, ModelPlan] = {}
    for kind in config.training.models:
        if kind == "g":
            plans["g"] = _build_g(config, data, registry)
            continue
        torch.manual_seed(config.training.seed)  # the same initial weights whatever else the run builds
        loss_spec = registry.get("loss", config.loss.f)
        loss = loss_spec.build(**config.loss.f_options)
        model = build_model(
            _architecture(config), dims=2, num_classes=data.num_classes, **_backbone_options(config, channels)
        )
        curriculum = config.syllabus.enabled and "f" in config.syllabus.apply_to
        description = f"undefended 2D {_architecture(config)}"
        if curriculum:
            description += f", curriculum by {config.syllabus.metric}"
        info = {
            "backbone": _architecture(config),
            "loss": config.loss.f,
            "parameters": sum(p.numel() for p in model.parameters()),
            "curriculum": curriculum,
        }
        plans["f"] = ModelPlan(
            "f", "f", model, loss, loss_spec.target, curriculum, description, _signature(config, "f"), info
        )
    for ablation in config.ablations:
        if ablation in ("identity_order", "random_order") and config.model.depth_kernel == 1:
            if not config.model.pool_depth:
                logger.warning(
                    "ablation %s: with model.depth_kernel 1 and no depth pooling each patch's logits depend on "
                    "its own pixels only, so the patch order cannot matter and g_%s reproduces g",
                    ablation,
                    ablation,
                )
        plan = _build_g(config, data, registry, ablation)
        plans[plan.name] = plan
    describe_init(plans, config)
    return plans


def _build_g(config: Config, data: RunData, registry: Any, ablation: str | None = None) -> ModelPlan:
    """g, or g with one part changed (`ablation`, see `ABLATION_CHANGES`); same seed, so the same initial
    weights as g wherever the architecture is the same."""
    from voldefense.models.defended import DefendedClassifier
    from voldefense.models.factory import build_model
    from voldefense.volumizer import Volumizer

    channels, height, width = data.image_shape
    vol = config.volumizer
    ranking = {"identity_order": "identity", "random_order": "random"}.get(ablation or "", vol.ranking)
    loss_name, loss_options = config.loss.g, config.loss.g_options
    if ablation == "no_pal":
        loss_name, loss_options = "cross_entropy", {}
    curriculum = config.syllabus.enabled and "g" in config.syllabus.apply_to and ablation != "no_curriculum"
    torch.manual_seed(config.training.seed)
    loss_spec = registry.get("loss", loss_name)
    loss = loss_spec.build(**loss_options)
    patch = tuple(vol.patch) if isinstance(vol.patch, list) else vol.patch
    volumizer = Volumizer(
        patch_size=patch,
        metric=vol.metric,
        reference=vol.reference,
        order=vol.order,
        ranking=ranking,
        pad=vol.pad,
        metric_options=vol.metric_options or None,
    )
    num_patches = volumizer.num_patches((height, width))
    backbone = build_model(
        _architecture(config),
        dims=3,
        num_classes=data.num_classes,
        depth_kernel=config.model.depth_kernel,
        pool_depth=config.model.pool_depth,
        fold=config.model.fold,
        num_patches=num_patches,
        **_backbone_options(config, channels),
    )
    model = DefendedClassifier(volumizer, backbone, aggregation=config.model.aggregation)
    ranked = f"ranking by {vol.metric}" if ranking == "metric" else f"{ranking} patch order"
    description = f"volumized 3D {_architecture(config)}, {ranked}, {loss_name}"
    if curriculum:
        description += f", curriculum by {config.syllabus.metric}"
    if ablation:
        description = f"ablation of g ({ablation}): {description}"
    info: dict[str, Any] = {
        "backbone": _architecture(config),
        "loss": loss_name,
        "metric": vol.metric,
        "ranking": ranking,
        "patches": num_patches,
        "parameters": sum(p.numel() for p in model.parameters()),
        "curriculum": curriculum,
    }
    if ablation:
        info.update(ablation=ablation, change=ABLATION_CHANGES[ablation])
    name = f"g_{ablation}" if ablation else "g"
    kind: Literal["g", "ablation"] = "ablation" if ablation else "g"
    return ModelPlan(
        name,
        kind,
        model,
        loss,
        loss_spec.target,
        curriculum,
        description,
        # Loss and curriculum do not change the architecture, but a checkpoint of one ablation must never be
        # mistaken for another's.
        _signature(config, kind, ablation),
        info,
        ablation,
    )


# -- training ----------------------------------------------------------------------------------------------


def make_sampler(plan: ModelPlan, config: Config, data: RunData, order_cache: dict[str, Any]) -> Sampler[int]:
    """The epoch order of one model: the curriculum when enabled for it, otherwise a seeded shuffle."""
    if not plan.curriculum:
        return ShuffleSampler(len(data.train), seed=config.training.seed)
    from voldefense.syllabus import CurriculumSampler, curriculum_order

    syl = config.syllabus
    if "order" not in order_cache:  # the same ordering for every model that uses it: compute once
        order_cache["order"] = curriculum_order(
            train_images_for_curriculum(data.train, config.training.num_workers),
            syl.metric,
            reference=syl.reference,
            order=syl.order,
            metric_options=syl.metric_options or None,
        )
    return CurriculumSampler(
        order_cache["order"],
        mode=syl.mode,
        start_fraction=syl.start_fraction,
        pacing_epochs=syl.pacing_epochs,
        seed=config.training.seed,
        schedule=syl.schedule,
        steps=syl.steps,
    )


def make_validator(config: Config, data: RunData, device: torch.device, registry: Any) -> Callable:
    """Per-epoch validation (Figure 2): clean accuracy and the defense success rate under an N-pixel
    `random_pixels` attack on the first `data.val_size` evaluation images, with a fixed seed."""
    from voldefense.evaluation import evaluate_attack

    attack = registry.get("attack", "random_pixels").build()
    images, labels = data.validation(config.data.val_size)

    def validate(model: nn.Module, epoch: int) -> dict[str, float]:
        outcome = evaluate_attack(
            model,
            attack,
            images.to(device),
            labels.to(device),
            config.training.val_attack_pixels,
            seed=config.training.seed,
            batch_size=config.training.eval_batch_size,
        )
        summary = outcome.summary().as_dict()
        return {
            "val_accuracy": summary["clean_accuracy"],
            "val_attacked_accuracy": summary["attacked_accuracy"],
            "val_defense_success_rate": summary["defense_success_rate"],
        }

    return validate


def _rewrite_metrics(paths: RunPaths, model: str, history: list[dict[str, Any]]) -> None:
    """On resume: keep other models' rows and replace this model's rows with its checkpointed history."""
    rows = []
    if paths.metrics.is_file():
        for line in paths.metrics.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("model") != model:
                    rows.append(row)
    rows += history
    atomic_write_text(paths.metrics, "".join(jsonio.dumps(r) + "\n" for r in rows))


def _append_metrics(paths: RunPaths, record: dict[str, Any]) -> None:
    with paths.metrics.open("a", encoding="utf-8") as handle:
        handle.write(jsonio.dumps(record) + "\n")
        handle.flush()


def train_models(
    plans: dict[str, ModelPlan],
    config: Config,
    data: RunData,
    paths: RunPaths,
    *,
    device: torch.device,
    amp: bool,
    context: DistContext,
    resume: bool,
    registry: Any,
    callbacks: Sequence[EpochCallback] = (),
) -> dict[str, list[dict[str, Any]]]:
    """Train every planned model in turn (f first), checkpointing each epoch; a finished model is only loaded."""
    validate = make_validator(config, data, device, registry)
    order_cache: dict[str, Any] = {}
    histories = {}
    for name, plan in plans.items():
        checkpoint = paths.checkpoint(name)
        if resume and checkpoint.is_file():
            state = load_checkpoint(checkpoint)
            if state.get("complete"):
                if state.get("signature") != plan.signature:
                    raise CheckpointError(f"checkpoint {checkpoint} was written for a different model configuration")
                load_weights(plan.model, state["model"], path=checkpoint)
                plan.model.to(device).eval()
                histories[name] = list(state.get("history", []))
                if context.is_main:
                    _rewrite_metrics(paths, name, histories[name])
                logger.info("%s: already trained (%d epochs), loaded from %s", name, state["epoch"], checkpoint)
                continue
        if prepare_training(plan, plans, config, checkpoint, device=device, is_main=context.is_main):
            histories[name] = []  # f loaded from model.weights: nothing to train
            continue
        job = TrainJob(
            name,
            plan.model,
            plan.loss,
            plan.loss_target,
            data.train,
            make_sampler(plan, config, data, order_cache),
            checkpoint,
            plan.signature,
        )

        def write_row(model: str, epoch: int, record: dict[str, Any]) -> None:
            if context.is_main:
                _append_metrics(paths, record)

        if resume and checkpoint.is_file() and context.is_main:
            _rewrite_metrics(paths, name, list(load_checkpoint(checkpoint).get("history", [])))
        histories[name] = train(
            job,
            config.training,
            config.optimizer,
            config.schedule,
            device=device,
            amp=amp,
            context=context,
            validate=validate,
            resume=resume,
            on_epoch_end=[write_row, *callbacks],
        )
    return histories


# -- baseline defenses ------------------------------------------------------------------------------------


@dataclass
class Baseline:
    """One baseline defense of the run (a report row): the built plugin and, once fitted, its `DefendedModel`."""

    name: str
    plugin: str
    options: dict[str, Any]
    defense: Any
    signature: str
    defended: Any = None  # voldefense.defenses.DefendedModel after `fit_baselines`
    history: list[dict[str, Any]] | None = None  # epochs of the runner's training loop; None: nothing trained


def build_baselines(config: Config, registry: Any = None) -> dict[str, Baseline]:
    """Build every configured defense plugin (names resolved here, once); nothing is trained yet."""
    from voldefense.config.load import defense_label

    if registry is None:
        from voldefense.registry import get_registry

        registry = get_registry()
    out: dict[str, Baseline] = {}
    for entry in config.defenses:
        label = defense_label(entry)
        defense = registry.get("defense", entry.name).build(**entry.options)
        signature = _signature(config, "defense", {"plugin": entry.name, "options": entry.options})
        out[label] = Baseline(label, entry.name, dict(entry.options), defense, signature)
    return out


def _probe_images(data: RunData, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training images: what `Defense.fit` receives as `images` (it reads their shape; the runner's
    trainer streams the whole training set from the dataset, so no float copy of it is ever held)."""
    indices = torch.arange(min(count, len(data.train)))
    return _dataset_tensors(data.train, indices)


def fit_baselines(
    baselines: dict[str, Baseline],
    plans: dict[str, ModelPlan],
    config: Config,
    data: RunData,
    paths: RunPaths,
    *,
    device: torch.device,
    amp: bool,
    context: DistContext,
    resume: bool,
    registry: Any,
    callbacks: Sequence[EpochCallback] = (),
    load_only: bool = False,
) -> None:
    """Fit every baseline with f's architecture, data and budget (`Defense.fit` with the runner's f factory,
    ``base_model`` = the trained f, and a trainer that is the runner's own loop: same optimizer, schedule,
    epochs, batch size, augmentation and seed as f, a checkpoint per epoch, resumable). A baseline finished
    before an interruption is loaded, not retrained; `load_only` (``voldefense evaluate``) only loads."""
    from voldefense.defenses import TrainBudget

    make_model = make_f_factory(config, data.num_classes)
    f_loss_spec = registry.get("loss", config.loss.f)
    budget = TrainBudget(
        epochs=config.training.epochs,
        batch_size=config.training.batch_size,
        lr=config.optimizer.lr,
        seed=config.training.seed,
        device=device,
        weight_decay=config.optimizer.weight_decay,
    )
    base_model = plans["f"].model if "f" in plans else None
    probe_images, probe_labels = _probe_images(data, config.training.batch_size)
    for name, baseline in baselines.items():
        checkpoint = paths.checkpoint(name)

        def trainer(
            model: nn.Module,
            images: torch.Tensor,  # noqa: ARG001 - the runner streams the training set itself
            labels: torch.Tensor,  # noqa: ARG001
            transform: Any,
            name: str = name,
            baseline: Baseline = baseline,
            checkpoint: Path = checkpoint,
        ) -> None:
            state = load_checkpoint(checkpoint) if checkpoint.is_file() and (resume or load_only) else None
            if state is not None and state.get("complete"):
                if state.get("signature") != baseline.signature:
                    raise CheckpointError(f"checkpoint {checkpoint} was written for a different defense configuration")
                load_weights(model, state["model"], path=checkpoint)
                model.to(device).eval()
                baseline.history = list(state.get("history", []))
                if context.is_main and not load_only:
                    _rewrite_metrics(paths, name, baseline.history)
                logger.info("%s: already trained (%d epochs), loaded from %s", name, state["epoch"], checkpoint)
                return
            if load_only:
                raise CheckpointError(
                    f"checkpoint {checkpoint} is missing or from an unfinished training; finish it with "
                    f"voldefense run {paths.config} --out {paths.root} --resume"
                )
            if state is not None and context.is_main:
                _rewrite_metrics(paths, name, list(state.get("history", [])))
            job = TrainJob(
                name,
                model,
                f_loss_spec.build(**config.loss.f_options),
                "image",
                data.train,
                ShuffleSampler(len(data.train), seed=config.training.seed),
                checkpoint,
                baseline.signature,
                transform=transform,
            )

            def write_row(model_name: str, epoch: int, record: dict[str, Any]) -> None:
                if context.is_main:
                    _append_metrics(paths, record)

            # No per-epoch validation: the trained network need not take images (smoothing's base takes 2C
            # channels); the baseline is evaluated as a whole afterwards.
            baseline.history = train(
                job,
                config.training,
                config.optimizer,
                config.schedule,
                device=device,
                amp=amp,
                context=context,
                validate=None,
                resume=resume,
                on_epoch_end=[write_row, *callbacks],
            )

        logger.info("fitting baseline %s (%s)", name, baseline.plugin)
        baseline.defended = baseline.defense.fit(
            make_model, probe_images, probe_labels, budget, base_model=base_model, trainer=trainer
        ).to(device)
        baseline.defended.model.eval()


# -- evaluation --------------------------------------------------------------------------------------------


def attack_label(attack: AttackConfig) -> str:
    return attack.label or attack.name


@dataclass
class EvalTarget:
    """What the evaluation sees of one report row: the classifier, the modules attacks target (one per attack
    view; all with the classifier's forward values) and, where defined, a certifier.

    ``certify(images, labels, sides)`` returns, per square side in pixels, a ``(B,)`` bool tensor "correct and
    certified"; `no_certificate` says why a row has none (empty when it has one)."""

    name: str
    model: nn.Module
    views: dict[str, nn.Module]
    certify: Callable[[torch.Tensor, torch.Tensor, Sequence[int]], dict[int, torch.Tensor]] | None = None
    no_certificate: str = ""


def _g_certifier(plan: ModelPlan, config: Config, data: RunData) -> tuple[Callable | None, str]:
    """Majority-vote certification of g (docs/certification.md) where the built model satisfies its premises,
    else the reason."""
    from voldefense.evaluation.certify import certify_defended, majority_vote_refusal

    reason = majority_vote_refusal(plan.model)
    if reason:
        return None, "not defined: " + reason

    def certify(images: torch.Tensor, labels: torch.Tensor, sides: Sequence[int]) -> dict[int, torch.Tensor]:
        return certify_defended(plan.model, images, labels, sides, batch_size=config.training.eval_batch_size)

    return certify, ""


def eval_targets(
    plans: dict[str, ModelPlan], baselines: dict[str, Baseline], config: Config, data: RunData
) -> dict[str, EvalTarget]:
    """Every report row as an `EvalTarget`, in report order: f, g, g's ablations, then the baselines."""
    targets: dict[str, EvalTarget] = {}
    for name, plan in plans.items():
        certify, reason = (None, "") if plan.kind == "f" else _g_certifier(plan, config, data)
        targets[name] = EvalTarget(name, plan.model, {"model": plan.model}, certify, reason)
    for name, baseline in baselines.items():
        defended = baseline.defended
        targets[name] = EvalTarget(
            name,
            defended.model,
            {view: defended.model_for_attack(view) for view in defended.view_names},
            defended.certify if defended.certifiable else None,
            "" if defended.certifiable else "the defense has no certificate",
        )
    return targets


def _build_attack(attack: AttackConfig, models: dict[str, Any], registry: Any, options: dict | None = None) -> Any:
    """Build an attack plugin; a `source_model` option naming a model (e.g. "f") becomes that trained model.

    `models` maps names to `ModelPlan`s or `EvalTarget`s (anything with ``.model``); `options` replaces the
    attack's options (the budget-convergence rerun doubles them)."""
    options = dict(attack.options if options is None else options)
    source = options.get("source_model")
    if isinstance(source, str):
        if source not in models:
            raise ConfigError(
                f"attacks ({attack_label(attack)}).options.source_model: {source!r} is not a trained model "
                f"(trained: {', '.join(models)})"
            )
        options["source_model"] = models[source].model
    elif options.get("source") == "transfer" and source is None and "f" in models:
        options["source_model"] = models["f"].model  # the paper's setting: the patch is trained on f
    return registry.get("attack", attack.name).build(**options)


def _model_entry(name: str, target: Any) -> dict[str, Any]:
    if isinstance(target, ModelPlan):
        return {"kind": target.kind, "description": target.description, **target.info}
    defended = target.defended
    entry = {
        "kind": "defense",
        "description": defended.name,
        "plugin": target.plugin,
        "options": _jsonable(target.options),
        "views": list(defended.view_names),
        "info": _jsonable(defended.info),
        "parameters": sum(p.numel() for p in defended.model.parameters()),
    }
    if target.history is not None:
        entry["epochs"] = len(target.history)
        entry["train_seconds"] = float(sum(r.get("seconds", 0.0) for r in target.history))
    else:  # nothing trained (e.g. a filter in front of the run's f)
        entry["epochs"] = 0
        entry["train_seconds"] = float(defended.train_seconds)
    return entry


def empty_results(
    config: Config, plans: dict[str, ModelPlan], data: RunData, baselines: dict[str, Baseline] | None = None
) -> dict[str, Any]:
    """The results document before any evaluation: one entry per model (a report row), no attack rows yet."""
    rows_of: dict[str, Any] = {**plans, **(baselines or {})}
    return {
        "version": RESULTS_VERSION,
        "complete": False,
        "dataset": {
            "name": config.data.name,
            "classes": len(data.classes),
            "image_shape": list(data.image_shape),
        },
        "models": {name: _model_entry(name, target) for name, target in rows_of.items()},
        "attacks": {},
        "rows": [],
        "worst_case": [],
        "convergence": [],
        "masking": [],
    }


def _row_key(row: dict[str, Any]) -> tuple:
    return (row["model"], row["attack"], float(row["size"]))


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block from a fixed torch RNG state and restore the caller's afterwards: stochastic parts of a
    model (a random patch order) then give every evaluation row the same draws, in any order and on resume."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def _clean_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device
) -> float:
    return _clean_pass(model, images, labels, batch_size, device)[0]


@torch.no_grad()
def _clean_pass(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[float, float]:
    """(clean accuracy, inference milliseconds per image): one timed pass over the images in eval batches."""
    from voldefense.attacks.base import predict_logits

    model.eval()
    images = images.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    logits = predict_logits(model, images, batch_size)
    predictions = logits.argmax(1).cpu()  # .cpu() waits for the device, so the time is the whole pass
    seconds = time.perf_counter() - started
    accuracy = float((predictions == labels).float().mean()) if len(labels) else float("nan")
    return accuracy, 1000.0 * seconds / max(len(labels), 1)


def attack_target(
    target: EvalTarget,
    attack: Any,
    images: torch.Tensor,
    labels: torch.Tensor,
    size: float | int,
    *,
    seed: int,
    batch_size: int | None,
    device: torch.device,
) -> tuple[Any, dict[str, dict[str, float]]]:
    """Attack every view of `target`; returns the per-image worst case over the views as one `AttackOutcome`
    (a copy of an image counts as correct only if it is correct under every view's attack) and, for several
    views, each view's own attacked and robust accuracy."""
    from voldefense.evaluation import AttackOutcome, evaluate_attack

    outcomes = {}
    for view, module in target.views.items():
        with _seeded(seed, device):
            outcomes[view] = evaluate_attack(
                module, attack, images.to(device), labels.to(device), size, seed=seed, batch_size=batch_size
            )
    if len(outcomes) == 1:
        return next(iter(outcomes.values())), {}
    first = next(iter(outcomes.values()))
    adversarial = [o.adversarial_correct for o in outcomes.values()]
    if len({a.shape for a in adversarial}) == 1:
        worst = torch.stack(adversarial).all(0)
    else:  # views returned different numbers of copies: keep them all, one failure breaks the image
        worst = torch.cat(adversarial)
    clean = torch.stack([o.clean_correct for o in outcomes.values()]).all(0)
    combined = AttackOutcome(
        clean_correct=clean,
        adversarial_correct=worst,
        queries=sum(o.queries for o in outcomes.values()),
        seconds=sum(o.seconds for o in outcomes.values()),
        labels=first.labels,
        size=first.size,
        iterations=max(o.iterations for o in outcomes.values()),
    )
    per_view = {
        view: {
            "attacked_accuracy": o.summary().attacked_accuracy,
            "robust_accuracy": float((o.clean_correct & o.adversarial_correct.all(0)).float().mean()),
        }
        for view, o in outcomes.items()
    }
    return combined, per_view


def certify_areas(config: Config, registry: Any) -> list[float]:
    """The patch areas certified: `evaluation.certify_areas`, else every size of the configured patch attacks."""
    if config.evaluation.certify_areas is not None:
        return sorted(set(config.evaluation.certify_areas))
    areas = set()
    for attack in config.attacks:
        if registry.get("attack", attack.name).size_unit == "area":
            areas.update(float(s) for s in attack.sizes)
    return sorted(areas)


def _certify_target(
    target: EvalTarget, config: Config, data: RunData, images: torch.Tensor, labels: torch.Tensor, registry: Any
) -> dict[str, Any]:
    """Per area: the square side it is certified for and the certified accuracy (correct and certified)."""
    from voldefense.evaluation.certify import certified_accuracy, square_side_for_area

    _, height, width = data.image_shape
    areas = certify_areas(config, registry)
    sides = {area: square_side_for_area(area, height, width) for area in areas}
    per_side = target.certify(images, labels, sorted(set(sides.values()))) if areas else {}
    # A certifier leaves out the sides it cannot certify (PatchCleanser's mask set covers one patch size).
    return {
        f"{area:g}": {
            "area": area,
            "square_side": side,
            "images": len(labels),
            "accuracy": certified_accuracy(per_side[side]),
        }
        for area, side in sides.items()
        if side in per_side
    }


def check_against_data(config: Config, data: RunData, registry: Any) -> None:
    """Rules that need the data (image size), checked before anything is trained."""
    _check_defenses_against_data(config, data, registry)
    _, height, width = data.image_shape
    for i, attack in enumerate(config.attacks):
        # Declared on the spec (`AttackSpec.max_image_pixels`), e.g. pixel_exhaustive's 8 x H x W queries.
        limit = registry.get("attack", attack.name).image_pixel_limit(attack.options)
        if limit is not None and height * width > limit:
            raise ConfigError(
                f"attacks[{i}]: {attack.name} is for images up to {limit} pixels and these are "
                f"{height}x{width}; remove it, or raise attacks[{i}].options.max_pixels to run it anyway"
            )


def _check_defenses_against_data(config: Config, data: RunData, registry: Any) -> None:
    """Defenses with a `check_image_shape(image_shape)` (PatchCleanser's mask set, the LGS window) refuse
    configurations they cannot serve for these images here, before f is trained."""
    from voldefense.config.load import defense_label

    for i, entry in enumerate(config.defenses):
        defense = registry.get("defense", entry.name).build(**entry.options)
        check = getattr(defense, "check_image_shape", None)
        if check is not None:
            try:
                check(tuple(data.image_shape))
            except ConfigError as err:
                raise ConfigError(f"defenses[{i}] ({defense_label(entry)}): {err}") from None


@contextlib.contextmanager
def _counting_passes(model: nn.Module, entry: dict[str, Any]) -> Iterator[None]:
    """For a model that counts its classifier calls (PatchCleanser), record in `entry` the mean forward passes
    per image it made inside the block (the report shows them with the inference time)."""
    reset = getattr(model, "reset_pass_count", None)
    if reset is not None:
        reset()
    yield
    passes = getattr(model, "passes_per_image", None) if reset is not None else None
    if passes is not None:
        entry["forward_passes_per_image"] = passes


def evaluate_models(
    plans: dict[str, ModelPlan],
    config: Config,
    data: RunData,
    paths: RunPaths,
    *,
    device: torch.device,
    registry: Any,
    histories: dict[str, list[dict[str, Any]]] | None = None,
    attacks: Sequence[AttackConfig] | None = None,
    previous: dict[str, Any] | None = None,
    baselines: dict[str, Baseline] | None = None,
) -> dict[str, Any]:
    """Attack every model (f, g, ablations, baselines) with every configured attack at every size; then the
    worst case, certification and the rigor checks. results.json is saved after each row, and rows (and
    convergence checks) already present in `previous` (an interrupted evaluation) are kept, not recomputed."""
    baselines = baselines or {}
    targets = eval_targets(plans, baselines, config, data)
    results = empty_results(config, plans, data, baselines)
    done: dict[tuple, dict[str, Any]] = {}
    if previous:
        done = {_row_key(r): r for r in previous.get("rows", [])}
    attacks = list(config.attacks if attacks is None else attacks)
    max_images = max([a.images for a in config.attacks] + [config.data.val_size])
    clean_images, clean_labels = data.eval_images[:max_images], data.eval_labels[:max_images]
    for name, target in targets.items():
        target.model.to(device).eval()
        entry = results["models"][name]
        with _seeded(config.training.seed, device), _counting_passes(target.model, entry):
            accuracy, ms = _clean_pass(
                target.model, clean_images, clean_labels, config.training.eval_batch_size, device
            )
        entry["clean_accuracy"] = accuracy
        entry["clean_images"] = len(clean_labels)
        entry["inference_ms_per_image"] = ms
        if histories and name in histories:
            entry["epochs"] = len(histories[name])
            entry["train_seconds"] = float(sum(r.get("seconds", 0.0) for r in histories[name]))
        if config.evaluation.certify and entry["kind"] != "f":
            if target.certify is None:
                entry["certified_note"] = target.no_certificate
            else:
                with _seeded(config.training.seed, device):
                    entry["certified"] = _certify_target(target, config, data, clean_images, clean_labels, registry)
    from tqdm.auto import tqdm

    jobs = sum(len(attack.models or list(targets)) * len(attack.sizes) for attack in attacks)
    progress = tqdm(total=jobs, desc="attacks", unit="row", leave=False, disable=None if jobs else True)
    for attack in attacks:
        label = attack_label(attack)
        spec = registry.get("attack", attack.name)
        built = _build_attack(attack, targets, registry)
        results["attacks"][label] = {
            "plugin": attack.name,
            "size_unit": spec.size_unit,
            "white_box": spec.white_box,
            "sizes": list(attack.sizes),
            "images": attack.images,
            "options": _jsonable(attack.options),
        }
        images, labels = data.eval_images[: attack.images], data.eval_labels[: attack.images]
        for name in attack.models or list(targets):
            for size in attack.sizes:
                size_arg: float | int = int(size) if spec.size_unit == "pixels" else float(size)
                key = (name, label, float(size))
                progress.set_postfix_str(f"{name} {label} {size_arg}")
                if key in done:
                    results["rows"].append(done[key])
                    progress.update()
                    continue
                logger.info("attacking %s with %s at size %s on %d images", name, label, size_arg, len(labels))
                outcome, per_view = attack_target(
                    targets[name],
                    built,
                    images,
                    labels,
                    size_arg,
                    seed=_attack_seed(attack, config),
                    batch_size=_attack_batch(attack, config),
                    device=device,
                )
                row = {
                    "model": name,
                    "attack": label,
                    "size": size_arg,
                    "size_unit": spec.size_unit,
                    **_jsonable(outcome.summary().as_dict()),
                    "survived": _survived(outcome),
                }
                if per_view:
                    row["views"] = _jsonable(per_view)
                results["rows"].append(row)
                atomic_write_text(paths.results, jsonio.dumps(results, indent=2))  # nothing computed is lost
                progress.update()
    progress.close()
    results["worst_case"] = worst_case_rows(results["rows"])
    _one_pixel_exhaustive(results)
    white_box = {label: info["white_box"] for label, info in results["attacks"].items()}
    from voldefense.evaluation.checks import masking_checks

    results["masking"] = [
        m.as_dict()
        for m in masking_checks(
            [r for r in results["rows"] if r["attack"] in white_box],
            white_box,
            tolerance=config.evaluation.masking_tolerance,
        )
    ]
    if config.evaluation.convergence_check:
        results["convergence"] = convergence_checks(
            results, targets, config, data, paths, device=device, registry=registry, previous=previous
        )
    results["complete"] = True
    atomic_write_text(paths.results, jsonio.dumps(results, indent=2))
    return results


def _attack_seed(attack: AttackConfig, config: Config) -> int:
    return config.training.seed if attack.seed is None else attack.seed


def _attack_batch(attack: AttackConfig, config: Config) -> int | None:
    return {None: config.training.eval_batch_size, "all": None}.get(attack.batch_size, attack.batch_size)


def _one_pixel_exhaustive(results: dict[str, Any]) -> None:
    """Copy each model's `pixel_exhaustive` accuracy (the exact one-pixel robust accuracy over the colour-cube
    corners) into its model entry, for the report's model table."""
    exhaustive = [label for label, info in results["attacks"].items() if info["plugin"] == "pixel_exhaustive"]
    for row in results["rows"]:
        if row["attack"] in exhaustive and int(row["size"]) == 1:
            results["models"][row["model"]].setdefault("one_pixel_exhaustive_accuracy", row["attacked_accuracy"])


def convergence_checks(
    results: dict[str, Any],
    targets: dict[str, EvalTarget],
    config: Config,
    data: RunData,
    paths: RunPaths,
    *,
    device: torch.device,
    registry: Any,
    previous: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Per model and budget: rerun the strongest attack (lowest robust accuracy) on the same images with the
    same seed and twice its budget (`voldefense.evaluation.checks`, docs/rigor.md); a check already in
    `previous` for the same attack and the same per-image outcome is kept."""
    from voldefense.evaluation.checks import (
        ConvergenceCheck,
        budget_convergence,
        budget_groups,
        double_budget,
        not_doubled_reason,
        robust_accuracy_of,
        strongest_attack,
    )

    tolerance = config.evaluation.convergence_tolerance
    by_label = {attack_label(a): a for a in config.attacks}
    kept = {
        (c["model"], c["size_unit"], float(c["size"]), c["attack"], c.get("base_survived")): c
        for c in (previous or {}).get("convergence", [])
    }
    checks: list[dict[str, Any]] = []
    for (model, unit, size), group in budget_groups(results["rows"]).items():
        label = strongest_attack({k: v for k, v in group.items() if k in by_label})
        if label is None or model not in targets:
            continue
        # On a tie for the lowest robust accuracy, check an attack whose budget can be doubled (a tied fixed
        # protocol such as random_pixels would make the check "not applicable" for no reason).
        lowest = robust_accuracy_of(group[label])
        for other, other_row in group.items():
            if (
                other in by_label
                and robust_accuracy_of(other_row) == lowest
                and double_budget(by_label[other].name, by_label[other].options, registry=registry) is not None
            ):
                label = other
                break
        row, attack = group[label], by_label[label]
        key = (model, unit, float(size), label, row["survived"])
        if key in kept:
            checks.append(kept[key])
            continue
        plugin = attack.name
        doubled = double_budget(plugin, attack.options, registry=registry)
        if doubled is None:
            reason = not_doubled_reason(plugin, registry=registry)
            check = ConvergenceCheck.not_applicable(label, reason, tolerance)
        else:
            logger.info("budget convergence: %s with %s at %s, doubled budget", model, label, row["size"])
            built = _build_attack(attack, targets, registry, options=doubled)
            outcome, _ = attack_target(
                targets[model],
                built,
                data.eval_images[: attack.images],
                data.eval_labels[: attack.images],
                row["size"],
                seed=_attack_seed(attack, config),
                batch_size=_attack_batch(attack, config),
                device=device,
            )
            check = budget_convergence(row, outcome, tolerance, attack=label)
        entry = {
            "model": model,
            "size_unit": unit,
            "size": row["size"],
            **check.as_dict(),
            "doubled_options": _jsonable(doubled),
            "base_survived": row["survived"],
        }
        checks.append(entry)
        results["convergence"] = checks
        atomic_write_text(paths.results, jsonio.dumps(results, indent=2))
    return checks


def _survived(outcome: Any) -> str:
    """Per image, '1' when it was classified correctly clean and after every attacked copy (else '0')."""
    robust = outcome.clean_correct & outcome.adversarial_correct.all(0)
    return "".join("1" if bool(v) else "0" for v in robust.tolist())


def worst_case_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and budget (size unit and size): the robust accuracy over every attack run at that budget.

    An image counts as robust only if every attack failed on it (`voldefense.evaluation.worst_case`, computed
    from the rows' per-image `survived` strings so rows kept from an earlier evaluation take part). Attacks that
    evaluated different numbers of images are compared on the images they share (the evaluation subset is one
    fixed order, so the first n images are the same for every attack).
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["size_unit"], float(row["size"])), []).append(row)
    out = []
    for (model, unit, _), members in groups.items():
        shared = min(len(r["survived"]) for r in members)
        robust = [all(r["survived"][i] == "1" for r in members) for i in range(shared)]
        out.append(
            {
                "model": model,
                "size_unit": unit,
                "size": members[0]["size"],
                "attacks": [r["attack"] for r in members],
                "images": shared,
                "robust_accuracy": sum(robust) / shared if shared else float("nan"),
            }
        )
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, nn.Module):
        return type(value).__name__
    return str(value)


# -- the whole job -----------------------------------------------------------------------------------------


def write_outputs(results: dict[str, Any], config: Config, paths: RunPaths) -> None:
    from voldefense.report import render_report

    atomic_write_text(paths.report, render_report(results, _read_metrics(paths)))
    if config.output.plots:
        from voldefense.plots import write_plots

        write_plots(results, _read_metrics(paths), paths.plots)


def _read_metrics(paths: RunPaths) -> list[dict[str, Any]]:
    if not paths.metrics.is_file():
        return []
    return [json.loads(line) for line in paths.metrics.read_text(encoding="utf-8").splitlines() if line.strip()]


def run(
    config: Config,
    out_dir: str | Path,
    *,
    device: DeviceChoice = "auto",
    resume: bool = False,
    overwrite: bool = False,
    registry: Any = None,
    callbacks: Sequence[EpochCallback] = (),
) -> RunPaths:
    """Train, evaluate and report one configured run into `out_dir`; returns its paths."""
    if registry is None:
        from voldefense.registry import get_registry

        registry = get_registry()
    context = init_distributed("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        torch_device, amp = resolve_device(device, config, context)
        paths = prepare_output(
            Path(out_dir), config, resume=resume, overwrite=overwrite or config.output.overwrite, context=context
        )
        context.barrier()  # other ranks wait until rank 0 has prepared (or cleaned) the folder
        data = load_data(config)
        check_against_data(config, data, registry)
        plans = build_models(config, data, registry)
        prepare_own_models(plans, config, data.image_shape, data.num_classes)
        baselines = build_baselines(config, registry)
        histories = train_models(
            plans,
            config,
            data,
            paths,
            device=torch_device,
            amp=amp,
            context=context,
            resume=resume,
            registry=registry,
            callbacks=callbacks,
        )
        fit_baselines(
            baselines,
            plans,
            config,
            data,
            paths,
            device=torch_device,
            amp=amp,
            context=context,
            resume=resume,
            registry=registry,
            callbacks=callbacks,
        )
        context.barrier()
        if not context.is_main:
            return paths
        previous = json.loads(paths.results.read_text()) if resume and paths.results.is_file() else None
        results = evaluate_models(
            plans,
            config,
            data,
            paths,
            device=torch_device,
            registry=registry,
            histories=histories,
            previous=previous,
            baselines=baselines,
        )
        write_outputs(results, config, paths)
        logger.info("report written to %s", paths.report)
        return paths
    finally:
        shutdown_distributed(context)


def load_trained(plan: ModelPlan, paths: RunPaths) -> list[dict[str, Any]]:
    """Load a finished model's checkpoint into `plan.model` (refusing unfinished or mismatched ones); returns
    its training history."""
    checkpoint = paths.checkpoint(plan.name)
    state = load_checkpoint(checkpoint)
    if not state.get("complete"):
        raise CheckpointError(
            f"checkpoint {checkpoint} is from an unfinished training; finish it with "
            f"voldefense run {paths.config} --out {paths.root} --resume"
        )
    if state.get("signature") != plan.signature:
        raise CheckpointError(f"checkpoint {checkpoint} does not match the run's config.yaml")
    load_weights(plan.model, state["model"], path=checkpoint)
    return list(state.get("history", []))


def evaluate_run(
    run_dir: str | Path, *, attacks: Sequence[str] = (), device: DeviceChoice = "auto", registry: Any = None
) -> RunPaths:
    """Re-run the evaluation of a finished run on its saved checkpoints (``voldefense evaluate``).

    With `attacks`, only the attacks of those labels are re-run; the other rows of results.json are kept.
    """
    from voldefense.config.load import check_config

    if registry is None:
        from voldefense.registry import get_registry

        registry = get_registry()
    paths = RunPaths(Path(run_dir))
    if not paths.config.is_file():
        raise ConfigError(f"{paths.root} is not a run folder (no config.yaml); give the --out folder of a run")
    config = parse_config(read_yaml(paths.config))
    check_config(config, registry=registry)
    labels = [attack_label(a) for a in config.attacks]
    for name in attacks:
        if name not in labels:
            raise ConfigError(f"--attacks: {name!r} is not an attack of this run (attacks: {', '.join(labels)})")
    torch_device, amp = resolve_device(device, config)
    data = load_data(config)
    check_against_data(config, data, registry)
    plans = build_models(config, data, registry)
    histories = {}
    for name, plan in plans.items():
        histories[name] = load_trained(plan, paths)
    baselines = build_baselines(config, registry)
    fit_baselines(
        baselines,
        plans,
        config,
        data,
        paths,
        device=torch_device,
        amp=amp,
        context=DistContext(),
        resume=False,
        registry=registry,
        load_only=True,
    )
    previous = None
    selected = list(config.attacks)
    if attacks:
        if paths.results.is_file():
            previous = _restrict_previous(json.loads(paths.results.read_text()), attacks)
        else:
            selected = [a for a in config.attacks if attack_label(a) in attacks]
    results = evaluate_models(
        plans,
        config,
        data,
        paths,
        device=torch_device,
        registry=registry,
        histories=histories,
        attacks=selected,
        previous=previous,
        baselines=baselines,
    )
    write_outputs(results, config, paths)
    return paths


def _restrict_previous(previous: dict[str, Any] | None, rerun: Sequence[str]) -> dict[str, Any] | None:
    """Rows of attacks not being re-run are reused as they are."""
    if previous is None:
        return None
    return {
        "rows": [r for r in previous.get("rows", []) if r["attack"] not in rerun],
        "convergence": [c for c in previous.get("convergence", []) if c.get("attack") not in rerun],
    }

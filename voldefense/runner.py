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

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from voldefense.checkpoint import atomic_write_text, load_checkpoint, load_weights
from voldefense.config.load import config_to_dict, dump_config, parse_config, read_yaml
from voldefense.config.schema import AttackConfig, Config
from voldefense.distributed import DistContext, init_distributed, shutdown_distributed
from voldefense.errors import CheckpointError, ConfigError
from voldefense.training import EpochCallback, ShuffleSampler, TrainJob, train

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


@dataclass
class ModelPlan:
    """One row of the report: a model to train (or load) and evaluate, with everything built."""

    name: str
    kind: Literal["f", "g"]
    model: nn.Module
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss_target: Literal["image", "patch"]
    curriculum: bool
    description: str
    signature: str
    info: dict[str, Any] = field(default_factory=dict)


def _signature(config: Config, kind: str) -> str:
    """A digest of what determines a model's architecture, so a mismatched checkpoint is refused."""
    parts = {"model": config_to_dict(config)["model"], "kind": kind}
    if kind == "g":
        parts["volumizer"] = config_to_dict(config)["volumizer"]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def build_models(config: Config, data: RunData, registry: Any = None) -> dict[str, ModelPlan]:
    """Build f and/or g with their losses; plugin names are resolved here and nowhere later."""
    from voldefense.models.defended import DefendedClassifier
    from voldefense.models.factory import build_model
    from voldefense.volumizer import Volumizer

    if registry is None:
        from voldefense.registry import get_registry

        registry = get_registry()
    channels, height, width = data.image_shape
    common = dict(width=config.model.width, stem=config.model.stem, in_channels=channels, **config.model.options)
    plans: dict[str, ModelPlan] = {}
    for kind in config.training.models:
        torch.manual_seed(config.training.seed)  # the same initial weights whatever else the run builds
        loss_name = getattr(config.loss, kind)
        loss_spec = registry.get("loss", loss_name)
        loss = loss_spec.build(**getattr(config.loss, f"{kind}_options"))
        info: dict[str, Any] = {"backbone": config.model.backbone, "loss": loss_name}
        if kind == "f":
            model = build_model(config.model.backbone, dims=2, num_classes=data.num_classes, **common)
            description = f"undefended 2D {config.model.backbone}"
        else:
            vol = config.volumizer
            patch = tuple(vol.patch) if isinstance(vol.patch, list) else vol.patch
            volumizer = Volumizer(
                patch_size=patch,
                metric=vol.metric,
                reference=vol.reference,
                order=vol.order,
                ranking=vol.ranking,
                pad=vol.pad,
                metric_options=vol.metric_options or None,
            )
            num_patches = volumizer.num_patches((height, width))
            backbone = build_model(
                config.model.backbone,
                dims=3,
                num_classes=data.num_classes,
                depth_kernel=config.model.depth_kernel,
                pool_depth=config.model.pool_depth,
                num_patches=num_patches,
                **common,
            )
            model = DefendedClassifier(volumizer, backbone, aggregation=config.model.aggregation)
            description = f"volumized 3D {config.model.backbone}, {vol.ranking} ranking by {vol.metric}, {loss_name}"
            info.update(metric=vol.metric, ranking=vol.ranking, patches=num_patches)
        curriculum = config.syllabus.enabled and kind in config.syllabus.apply_to
        if curriculum:
            description += f", curriculum by {config.syllabus.metric}"
        info["parameters"] = sum(p.numel() for p in model.parameters())
        info["curriculum"] = curriculum
        plans[kind] = ModelPlan(
            kind, kind, model, loss, loss_spec.target, curriculum, description, _signature(config, kind), info
        )
    return plans


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
    atomic_write_text(paths.metrics, "".join(json.dumps(r) + "\n" for r in rows))


def _append_metrics(paths: RunPaths, record: dict[str, Any]) -> None:
    with paths.metrics.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
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


# -- evaluation --------------------------------------------------------------------------------------------


def attack_label(attack: AttackConfig) -> str:
    return attack.label or attack.name


def _build_attack(attack: AttackConfig, plans: dict[str, ModelPlan], registry: Any) -> Any:
    """Build an attack plugin; a `source_model` option naming a model (e.g. "f") becomes that trained model."""
    options = dict(attack.options)
    source = options.get("source_model")
    if isinstance(source, str):
        if source not in plans:
            raise ConfigError(
                f"attacks ({attack_label(attack)}).options.source_model: {source!r} is not a trained model "
                f"(trained: {', '.join(plans)})"
            )
        options["source_model"] = plans[source].model
    elif options.get("source") == "transfer" and source is None and "f" in plans:
        options["source_model"] = plans["f"].model  # the paper's setting: the patch is trained on f
    return registry.get("attack", attack.name).build(**options)


def empty_results(config: Config, plans: dict[str, ModelPlan], data: RunData) -> dict[str, Any]:
    """The results document before any evaluation: one entry per model (a report row), no attack rows yet."""
    return {
        "version": RESULTS_VERSION,
        "complete": False,
        "dataset": {
            "name": config.data.name,
            "classes": len(data.classes),
            "image_shape": list(data.image_shape),
        },
        "models": {
            name: {"kind": plan.kind, "description": plan.description, **plan.info} for name, plan in plans.items()
        },
        "attacks": {},
        "rows": [],
        "worst_case": [],
    }


def _row_key(row: dict[str, Any]) -> tuple:
    return (row["model"], row["attack"], float(row["size"]))


@torch.no_grad()
def _clean_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device
) -> float:
    from voldefense.attacks.base import predict_logits

    model.eval()
    logits = predict_logits(model, images.to(device), batch_size)
    return float((logits.argmax(1).cpu() == labels).float().mean())


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
) -> dict[str, Any]:
    """Attack every model with every configured attack at every size; results.json is saved after each row,
    and rows already present in `previous` (an interrupted evaluation) are kept, not recomputed."""
    from voldefense.evaluation import evaluate_attack

    results = empty_results(config, plans, data)
    done: dict[tuple, dict[str, Any]] = {}
    if previous:
        done = {_row_key(r): r for r in previous.get("rows", [])}
    attacks = list(config.attacks if attacks is None else attacks)
    max_images = max([a.images for a in config.attacks] + [config.data.val_size])
    for name, plan in plans.items():
        plan.model.to(device).eval()
        entry = results["models"][name]
        entry["clean_accuracy"] = _clean_accuracy(
            plan.model,
            data.eval_images[:max_images],
            data.eval_labels[:max_images],
            config.training.eval_batch_size,
            device,
        )
        entry["clean_images"] = int(min(max_images, len(data.eval_labels)))
        if histories and name in histories:
            entry["epochs"] = len(histories[name])
            entry["train_seconds"] = float(sum(r.get("seconds", 0.0) for r in histories[name]))
    for attack in attacks:
        label = attack_label(attack)
        spec = registry.get("attack", attack.name)
        built = _build_attack(attack, plans, registry)
        results["attacks"][label] = {
            "plugin": attack.name,
            "size_unit": spec.size_unit,
            "white_box": spec.white_box,
            "sizes": list(attack.sizes),
            "images": attack.images,
            "options": _jsonable(attack.options),
        }
        images, labels = data.eval_images[: attack.images], data.eval_labels[: attack.images]
        for name in attack.models or list(plans):
            plan = plans[name]
            for size in attack.sizes:
                size_arg: float | int = int(size) if spec.size_unit == "pixels" else float(size)
                key = (name, label, float(size))
                if key in done:
                    results["rows"].append(done[key])
                    continue
                logger.info("attacking %s with %s at size %s on %d images", name, label, size_arg, len(labels))
                batch_size = {None: config.training.eval_batch_size, "all": None}.get(
                    attack.batch_size, attack.batch_size
                )
                outcome = evaluate_attack(
                    plan.model,
                    built,
                    images.to(device),
                    labels.to(device),
                    size_arg,
                    seed=config.training.seed if attack.seed is None else attack.seed,
                    batch_size=batch_size,
                )
                row = {
                    "model": name,
                    "attack": label,
                    "size": size_arg,
                    "size_unit": spec.size_unit,
                    **_jsonable(outcome.summary().as_dict()),
                    "survived": _survived(outcome),
                }
                results["rows"].append(row)
                atomic_write_text(paths.results, json.dumps(results, indent=2))  # nothing computed is lost
    results["worst_case"] = worst_case_rows(results["rows"])
    results["complete"] = True
    atomic_write_text(paths.results, json.dumps(results, indent=2))
    return results


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
        plans = build_models(config, data, registry)
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
        )
        write_outputs(results, config, paths)
        logger.info("report written to %s", paths.report)
        return paths
    finally:
        shutdown_distributed(context)


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
    torch_device, _ = resolve_device(device, config)
    data = load_data(config)
    plans = build_models(config, data, registry)
    histories = {}
    for name, plan in plans.items():
        state = load_checkpoint(paths.checkpoint(name))
        if not state.get("complete"):
            raise CheckpointError(
                f"checkpoint {paths.checkpoint(name)} is from an unfinished training; finish it with "
                f"voldefense run {paths.config} --out {paths.root} --resume"
            )
        if state.get("signature") != plan.signature:
            raise CheckpointError(f"checkpoint {paths.checkpoint(name)} does not match the run's config.yaml")
        load_weights(plan.model, state["model"], path=paths.checkpoint(name))
        histories[name] = list(state.get("history", []))
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
    )
    write_outputs(results, config, paths)
    return paths


def _restrict_previous(previous: dict[str, Any] | None, rerun: Sequence[str]) -> dict[str, Any] | None:
    """Rows of attacks not being re-run are reused as they are."""
    if previous is None:
        return None
    return {"rows": [r for r in previous.get("rows", []) if r["attack"] not in rerun]}

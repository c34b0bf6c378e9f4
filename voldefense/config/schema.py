"""The typed schema of a run configuration.

Every section is a dataclass; every field carries its type (``Literal`` for closed choices), its default and, in
``metadata``, its documentation and range. `voldefense.config.load` validates a YAML mapping against these classes
(structure, types, ranges) and then against the plugin registry (names and options), so every mistake is found
before any training starts. docs/config.md documents the same keys; a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Order = Literal["ascending", "descending", "simple_first", "complex_first"]
ModelKind = Literal["f", "g"]
Ablation = Literal["identity_order", "random_order", "no_pal", "no_curriculum", "depth_kernel_3", "depth_kernel_full"]
ABLATIONS: tuple[str, ...] = (
    "identity_order",
    "random_order",
    "no_pal",
    "no_curriculum",
    "depth_kernel_3",
    "depth_kernel_full",
)


def opt(default: Any = None, doc: str = "", *, factory: Any = None, **limits: Any) -> Any:
    """A dataclass field with documentation and optional limits (`min`, `max`, `gt`, `plugin`, `min_items`)."""
    meta = {"doc": doc, **limits}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    name: str = opt("synthetic", "dataset: synthetic (built in, offline), cifar10, cifar100, npz, imagefolder")
    options: dict[str, Any] = opt(
        factory=dict,
        doc="options of the dataset loader (e.g. root, download, path, size); checked per dataset",
    )
    train_subset: int | None = opt(None, "train on this many training images (seeded subset); null = all", min=1)
    val_size: int = opt(
        256,
        "test-split images used for the per-epoch clean accuracy and 1-pixel defense rate (Figure 2)",
        min=1,
    )


@dataclass
class VolumizerConfig:
    patch: int | list[int] = opt(16, "patch side, or [height, width]; must divide the image size", min=1)
    metric: str = opt("mi", "information metric ranking the patches (see `voldefense plugins`)", plugin="metric")
    metric_options: dict[str, Any] = opt(factory=dict, doc="options of the metric plugin")
    reference: Literal["auto"] | int = opt(
        "auto", "reference patch of distance metrics: 'auto' (lowest-entropy patch) or a patch index", min=0
    )
    order: Order = opt("ascending", "rank order of the patches along the depth axis")
    ranking: Literal["metric", "identity", "random"] = opt(
        "metric", "'metric' ranks by the metric; 'identity' and 'random' are the ablations"
    )
    pad: bool = opt(False, "pad images whose size the patch does not divide")


@dataclass
class SyllabusConfig:
    enabled: bool = opt(True, "order the training data simple-to-complex (curriculum learning)")
    apply_to: list[ModelKind] = opt(factory=lambda: ["g"], doc="models trained with the curriculum")
    metric: str = opt("entropy", "metric ordering the training images", plugin="metric")
    metric_options: dict[str, Any] = opt(factory=dict, doc="options of the metric plugin")
    reference: Literal["auto"] | int = opt(
        "auto", "reference image of distance metrics: 'auto' (lowest-entropy image) or an image index", min=0
    )
    order: Order = opt("simple_first", "order of the training images")
    mode: Literal["ordered", "pacing"] = opt(
        "pacing", "'pacing': a growing pool of the simplest samples, shuffled; 'ordered': whole set in rank order"
    )
    schedule: Literal["linear", "step"] = opt("linear", "how the pool grows from start_fraction to the whole set")
    steps: int = opt(4, "number of equal jumps of the 'step' schedule", min=1)
    start_fraction: float = opt(0.25, "share of the ordered data in the pool at the first epoch", gt=0.0, max=1.0)
    pacing_epochs: int = opt(5, "epochs until the whole training set is in use", min=0)
    stratify: bool = opt(
        True,
        "pace each class separately (every class admits the same share of its own simplest images), so the "
        "curriculum never skews the class mix; false = one global ranking (low-entropy classes come first)",
    )


@dataclass
class ModelConfig:
    backbone: str = opt("resnet50", "backbone plugin building f and, converted to 3D, g", plugin="backbone")
    width: float = opt(1.0, "channel width multiplier (small values for CPU runs)", gt=0.0)
    stem: Literal["small", "imagenet"] = opt("small", "input stem: 'small' for 32x32 inputs and patches")
    depth_kernel: int | Literal["full"] = opt(
        3, "kernel extent along the patch axis: 1 keeps patches independent; 'full' spans all patches", min=1
    )
    pool_depth: bool = opt(False, "whether pooling also shrinks the patch (depth) axis")
    fold: Literal["auto"] | bool = opt(
        "auto",
        "with depth_kernel 1 and pool_depth false, g runs f on each patch as it is (patches folded into the "
        "batch, no conversion, certifiable): 'auto' or true; false converts f's layers to Conv3d instead",
    )
    aggregation: Literal["mean_logits", "mean_probs", "majority_vote"] = opt(
        "mean_logits", "how g turns per-patch logits into the image prediction"
    )
    options: dict[str, Any] = opt(
        factory=dict, doc="further options of the backbone plugin, or the arguments of model.factory"
    )
    factory: str | None = opt(
        None,
        "your own 2D model instead of a backbone plugin: 'package.module:function' returning an nn.Module "
        "(images in [0, 1] -> logits); model.options are its arguments (docs/your_model.md)",
    )
    weights: str | None = opt(
        None,
        "f's trained weights (a state dict file or a run's checkpoints/f.pt); f is then loaded and evaluated, "
        "not trained",
    )


@dataclass
class LossConfig:
    f: str = opt("cross_entropy", "loss of the undefended model f (an image loss)", plugin="loss")
    g: str = opt(
        "pal",
        "loss of the defended model g (pal = Patch Aggregate Loss; an image loss is an ablation)",
        plugin="loss",
    )
    f_options: dict[str, Any] = opt(factory=dict, doc="options of f's loss plugin")
    g_options: dict[str, Any] = opt(factory=dict, doc="options of g's loss plugin")


@dataclass
class OptimizerConfig:
    name: Literal["sgd", "adam", "adamw"] = opt("sgd", "optimizer")
    lr: float = opt(0.1, "learning rate", gt=0.0)
    momentum: float = opt(0.9, "SGD momentum", min=0.0, max=1.0)
    nesterov: bool = opt(False, "SGD Nesterov momentum")
    weight_decay: float = opt(5e-4, "weight decay", min=0.0)


@dataclass
class OptimizerOverride:
    """Per-model optimizer settings: each key left null takes the value of the shared `optimizer` section."""

    name: Literal["sgd", "adam", "adamw"] | None = opt(None, "optimizer; null = optimizer.name")
    lr: float | None = opt(None, "learning rate; null = optimizer.lr", gt=0.0)
    momentum: float | None = opt(None, "SGD momentum; null = optimizer.momentum", min=0.0, max=1.0)
    nesterov: bool | None = opt(None, "SGD Nesterov momentum; null = optimizer.nesterov")
    weight_decay: float | None = opt(None, "weight decay; null = optimizer.weight_decay", min=0.0)


@dataclass
class ScheduleConfig:
    name: Literal["constant", "cosine", "step"] = opt("cosine", "learning-rate schedule, stepped once per epoch")
    warmup_epochs: int = opt(0, "linear warm-up epochs before the schedule", min=0)
    step_size: int = opt(30, "epochs between decays of the 'step' schedule", min=1)
    gamma: float = opt(0.1, "decay factor of the 'step' schedule", gt=0.0, max=1.0)


@dataclass
class TrainingConfig:
    models: list[ModelKind] = opt(factory=lambda: ["f", "g"], doc="which models to train and evaluate", min_items=1)
    epochs: int = opt(30, "training epochs per model", min=1)
    batch_size: int = opt(128, "training batch size (per process under torchrun)", min=1)
    eval_batch_size: int = opt(256, "batch size of evaluation and attacks", min=1)
    seed: int = opt(0, "seed of initialisation, data order, validation and attacks", min=0)
    num_workers: int = opt(0, "data-loader worker processes", min=0)
    augment: Literal["none", "flip", "crop_flip"] = opt("none", "training augmentation")
    amp: Literal["auto"] | bool = opt("auto", "mixed precision: 'auto' = on with CUDA, off on the CPU; true or false")
    val_attack: str = opt(
        "random_pixels",
        "pixel attack of the per-epoch validation (Figure 2: the paper's N random pixels); any attack plugin whose "
        "sizes are pixels",
        plugin="attack",
    )
    val_attack_options: dict[str, Any] = opt(factory=dict, doc="options of training.val_attack's plugin")
    val_attack_pixels: int = opt(1, "pixels changed by the per-epoch validation attack (Figure 2)", min=1)
    validate_every: int = opt(1, "epochs between validation rows in metrics.jsonl", min=1)
    checkpoint_every: int = opt(1, "epochs between checkpoints", min=1)
    g_init: str | None = opt(
        None,
        "start g (and its ablations) from f's weights inflated to 3D, then fine-tune: 'f' (this run's f, after "
        "its training) or a path to f's weights; null = g trains from scratch",
    )
    g_init_rule: Literal["centre", "spread"] = opt(
        "centre",
        "how a 2D kernel fills g's depth kernel: 'centre' (g starts as f on each patch) or 'spread' (I3D's rule)",
    )
    data_on_device: Literal["auto"] | bool = opt(
        "auto",
        "hold in-memory uint8 training sets on the device and crop/flip there (no per-image Python work); "
        "'auto' = whenever the dataset is an in-memory tensor set",
    )


@dataclass
class AttackConfig:
    name: str = opt(None, "attack plugin", plugin="attack")
    sizes: list[float] = opt(
        factory=list,
        doc="budgets: pixel counts (pixel attacks) or area fractions in (0, 1] (patch attacks)",
        min_items=1,
    )
    options: dict[str, Any] = opt(factory=dict, doc="options of the attack plugin (checked against its factory)")
    images: int = opt(100, "test images attacked", min=1)
    models: list[str] | None = opt(
        None, "models attacked (f, g, g_<ablation>, defense labels); null = every model of the run"
    )
    seed: int | None = opt(None, "attack seed; null = training.seed", min=0)
    batch_size: int | Literal["all"] | None = opt(
        None,
        "images per attack call: null = training.eval_batch_size; 'all' = one call (universal patches)",
        min=1,
    )
    label: str | None = opt(None, "name in the report (default: the plugin name; needed to list one attack twice)")


@dataclass
class DefenseConfig:
    name: str = opt(None, "defense plugin (see `voldefense plugins`)", plugin="defense")
    options: dict[str, Any] = opt(factory=dict, doc="options of the defense plugin (checked against its factory)")
    label: str | None = opt(None, "row name in the report (default: the plugin name; needed to list one twice)")


@dataclass
class EvaluationConfig:
    certify: bool = opt(
        True,
        "certified accuracy for g and its ablations when g runs f on each patch (depth_kernel 1, pool_depth false, "
        "fold not false) and aggregation is majority_vote, and for defenses with a certificate",
    )
    certify_areas: list[float] | None = opt(
        None, "patch areas (fractions in (0, 1]) certified; null = the sizes of the configured patch attacks"
    )
    convergence_check: bool = opt(
        True, "rerun the strongest attack per model and budget with twice its budget (costs one more attack run)"
    )
    convergence_tolerance: float = opt(
        0.02, "largest drop of robust accuracy (a fraction) the doubled budget may cause", min=0.0, max=0.99
    )
    draws: int = opt(
        1,
        "classifications per image of a model whose forward pass draws randomness (a random patch order): attacked "
        "accuracy averages the draws, and an image counts as correct or robust only if every draw is; "
        "deterministic models are classified once",
        min=1,
    )
    masking_tolerance: float = opt(
        0.02,
        "gap (a fraction) by which a black-box attack must beat the white-box ones to flag masking",
        min=0.0,
        max=0.99,
    )


@dataclass
class OutputConfig:
    dir: str | None = opt(None, "output folder; null = runs/<config file name>")
    overwrite: bool = opt(False, "replace an earlier run's outputs in the folder")
    plots: bool = opt(True, "write the PNG plots")


@dataclass
class Config:
    data: DataConfig = opt(factory=DataConfig, doc="dataset")
    volumizer: VolumizerConfig = opt(factory=VolumizerConfig, doc="volumizer of g")
    syllabus: SyllabusConfig = opt(factory=SyllabusConfig, doc="curriculum")
    model: ModelConfig = opt(factory=ModelConfig, doc="backbone and aggregation")
    loss: LossConfig = opt(factory=LossConfig, doc="losses of f and g")
    optimizer: OptimizerConfig = opt(factory=OptimizerConfig, doc="optimizer (of f, and of g unless optimizer_g)")
    optimizer_g: OptimizerOverride = opt(
        factory=OptimizerOverride, doc="g's (and its ablations') optimizer: keys set here override `optimizer`"
    )
    schedule: ScheduleConfig = opt(factory=ScheduleConfig, doc="learning-rate schedule")
    training: TrainingConfig = opt(factory=TrainingConfig, doc="training")
    attacks: list[AttackConfig] = opt(factory=list, doc="attacks run after training, each at each size")
    ablations: list[Ablation] = opt(
        factory=list, doc="variants of g trained and evaluated like g, one report row each (g_<name>)"
    )
    defenses: list[DefenseConfig] = opt(
        factory=list, doc="baseline defenses trained on f's data and budget and evaluated with the same attacks"
    )
    evaluation: EvaluationConfig = opt(factory=EvaluationConfig, doc="certification and rigor checks")
    output: OutputConfig = opt(factory=OutputConfig, doc="output folder")

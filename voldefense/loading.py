"""A finished run's trained model, ready to use or attack, without retraining.

    import voldefense
    classifier = voldefense.load_classifier("runs/quickstart", model="g")   # an ART classifier
    adversarial = SquareAttack(classifier, norm=np.inf, eps=8 / 255).generate(x)   # any ART attack

`load_model` gives the ``nn.Module`` (images ``(B, C, H, W)`` in [0, 1] → logits ``(B, K)``: for g the whole
pipeline, volumizer → 3D network → aggregation); `load_classifier` wraps it in `VolumizedClassifier`. Both
rebuild the model from the run's own ``config.yaml`` and load ``checkpoints/<model>.pt``; the dataset is read
only for its image shape and number of classes (as ``voldefense evaluate`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from voldefense.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from voldefense.estimator import VolumizedClassifier


def _networks(run_dir: Path, registry: Any) -> tuple[Any, dict[str, Any], Any]:
    from voldefense.config import check_config, parse_config, read_yaml
    from voldefense.run.contenders import Network, build_contenders
    from voldefense.run.data import load_data
    from voldefense.run.paths import RunPaths
    from voldefense.run.resolve import resolve

    paths = RunPaths(run_dir)
    if not paths.config.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no config.yaml); give the --out folder of a finished run")
    config = parse_config(read_yaml(paths.config))
    check_config(config, registry=registry)
    data = load_data(config)
    contenders = build_contenders(resolve(config, registry), data)
    return paths, {name: c for name, c in contenders.items() if isinstance(c, Network)}, data


def load_model(run_dir: str | Path, model: str = "g", *, registry: Any = None) -> nn.Module:
    """The trained `model` (``"f"``, ``"g"`` or ``"g_<ablation>"``) of the run in `run_dir`, in eval mode, on the
    CPU."""
    return _load(Path(run_dir), model, registry)[0]


def _load(run_dir: Path, model: str, registry: Any) -> tuple[nn.Module, Any]:
    from voldefense.checkpoint import load_finished

    paths, networks, data = _networks(run_dir, registry)
    if model not in networks:
        raise ConfigError(f"model {model!r} is not a model of the run in {run_dir} (models: {', '.join(networks)})")
    network = networks[model]
    checkpoint = paths.checkpoint(model)
    if load_finished(checkpoint, network.signature, network.model) is None:
        raise CheckpointError(
            f"checkpoint {checkpoint} is missing or from an unfinished training; finish it with "
            f"voldefense run {paths.config} --out {paths.root} --resume"
        )
    return network.model.eval(), data


def load_classifier(
    run_dir: str | Path, model: str = "g", *, registry: Any = None, **options: Any
) -> VolumizedClassifier:
    """`load_model` wrapped as an ART classifier (`VolumizedClassifier`; `options` go to its constructor, e.g.
    ``device="cpu"``, ``gradient_batch_size=32``)."""
    from voldefense.estimator import VolumizedClassifier

    module, data = _load(Path(run_dir), model, registry)
    return VolumizedClassifier(module, data.num_classes, data.image_shape, **options)

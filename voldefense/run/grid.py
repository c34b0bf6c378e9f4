"""The attack grid: every evaluation target attacked by every configured attack at every size, one `Row` each;
and the per-model figures that need no attack (clean accuracy, inference time, certified accuracy)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from voldefense.config.schema import AttackConfig, Config
from voldefense.errors import ConfigError
from voldefense.results import CertifiedCell, Row, ViewFigures, share
from voldefense.run.data import RunData
from voldefense.run.resolve import Resolved
from voldefense.specs import AttackSpec

logger = logging.getLogger(__name__)

Certifier = Callable[[torch.Tensor, torch.Tensor, Sequence[int]], dict[int, torch.Tensor]]


@dataclass
class EvalTarget:
    """What the evaluation sees of one report row: the classifier, the modules attacks target (one per attack
    view; all with the classifier's forward values) and, where defined, a certifier.

    ``certify(images, labels, sides)`` returns, per square side in pixels, a ``(B,)`` bool tensor "correct and
    certified"; `no_certificate` says why a row has none (empty when it has one)."""

    name: str
    model: nn.Module
    views: dict[str, nn.Module]
    certify: Certifier | None = None
    no_certificate: str = ""


@contextlib.contextmanager
def counting_passes(model: nn.Module, found: dict[str, Any]) -> Iterator[None]:
    """For a model that counts its classifier calls (PatchCleanser), record in `found` the mean forward passes
    per image it made inside the block (the report shows them with the inference time)."""
    reset = getattr(model, "reset_pass_count", None)
    if reset is not None:
        reset()
    yield
    passes = getattr(model, "passes_per_image", None) if reset is not None else None
    if passes is not None:
        found["forward_passes_per_image"] = passes


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block from a fixed torch RNG state and restore the caller's afterwards: stochastic parts of a
    model (a random patch order) then give every evaluation row the same draws, in any order and on resume."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def clean_pass(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    device: torch.device,
    draws: int = 1,
) -> tuple[float, float]:
    """(clean accuracy, inference milliseconds per image): one timed pass over the images in eval batches. A model
    that draws randomness gets `draws` passes and its accuracy is their mean (its expected accuracy)."""
    from voldefense.attacks.base import predict_logits
    from voldefense.evaluation import is_stochastic

    model.eval()
    images = images.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    logits = predict_logits(model, images, batch_size)
    predictions = logits.argmax(1).cpu()  # .cpu() waits for the device, so the time is the whole pass
    seconds = time.perf_counter() - started
    passes = draws if is_stochastic(model) else 1
    correct = (predictions == labels).float()
    for _ in range(passes - 1):
        correct += (predict_logits(model, images, batch_size).argmax(1).cpu() == labels).float()
    accuracy = float(correct.mean()) / passes if len(labels) else float("nan")
    return accuracy, 1000.0 * seconds / max(len(labels), 1)


def certify_areas(config: Config, attacks: Mapping[str, AttackSpec]) -> list[float]:
    """The patch areas certified: `evaluation.certify_areas`, else every size of the configured patch attacks."""
    if config.evaluation.certify_areas is not None:
        return sorted(set(config.evaluation.certify_areas))
    areas = set()
    for label, spec in attacks.items():
        if spec.size_unit == "area":
            areas.update(float(s) for s in next(a for a in config.attacks if (a.label or a.name) == label).sizes)
    return sorted(areas)


def certified_cells(
    certify: Certifier,
    areas: Sequence[float],
    image_shape: tuple[int, int, int],
    images: torch.Tensor,
    labels: torch.Tensor,
) -> tuple[CertifiedCell, ...]:
    """Per area: the square side it is certified for and the certified accuracy (correct and certified)."""
    from voldefense.evaluation.certify import certified_accuracy, square_side_for_area

    _, height, width = image_shape
    sides = {area: square_side_for_area(area, height, width) for area in areas}
    per_side = certify(images, labels, sorted(set(sides.values()))) if areas else {}
    # A certifier leaves out the sides it cannot certify (PatchCleanser's mask set covers one patch size).
    return tuple(
        CertifiedCell(area, side, len(labels), certified_accuracy(per_side[side]))
        for area, side in sides.items()
        if side in per_side
    )


def build_attack(
    attack: AttackConfig, spec: AttackSpec, targets: Mapping[str, EvalTarget], options: dict | None = None
) -> Any:
    """Build an attack; a `source_model` option naming a model (e.g. "f") becomes that trained model, and an attack
    that needs a source model and names none gets f (the paper's transfer setting). `options` replaces the
    attack's options (the budget-convergence rerun doubles them)."""
    options = dict(attack.options if options is None else options)
    source = options.get("source_model")
    if isinstance(source, str):
        if source not in targets:
            raise ConfigError(
                f"attacks ({attack.label or attack.name}).options.source_model: {source!r} is not a trained model "
                f"(trained: {', '.join(targets)})"
            )
        options["source_model"] = targets[source].model
    elif source is None and spec.needs_source_model and "f" in targets:
        # An attack with a transfer and an adaptive mode (`patch`) needs the source only in transfer mode.
        if {**spec.option_defaults(), **options}.get("source", "transfer") == "transfer":
            options["source_model"] = targets["f"].model
    return spec.build(**options)


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
    draws: int = 1,
) -> tuple[Any, dict[str, ViewFigures]]:
    """Attack every view of `target`; returns the per-image worst case over the views as one `AttackOutcome`
    (a copy of an image counts as correct only if it is correct under every view's attack) and, for several
    views, each view's own attacked and robust accuracy. A view that draws randomness is classified over `draws`
    draws (`evaluation.draws`)."""
    from voldefense.evaluation import AttackOutcome, evaluate_attack

    outcomes = {}
    for view, module in target.views.items():
        with seeded(seed, device):
            outcomes[view] = evaluate_attack(
                module,
                attack,
                images.to(device),
                labels.to(device),
                size,
                seed=seed,
                batch_size=batch_size,
                draws=draws,
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
    per_view = {view: ViewFigures(o.summary().attacked_accuracy, share(o.survived())) for view, o in outcomes.items()}
    return combined, per_view


def attack_seed(attack: AttackConfig, config: Config) -> int:
    return config.training.seed if attack.seed is None else attack.seed


def attack_batch(attack: AttackConfig, config: Config) -> int | None:
    return {None: config.training.eval_batch_size, "all": None}.get(attack.batch_size, attack.batch_size)


def size_argument(size: float, spec: AttackSpec) -> float | int:
    return int(size) if spec.size_unit == "pixels" else float(size)


def measure_row(
    target: EvalTarget,
    label: str,
    attack: AttackConfig,
    spec: AttackSpec,
    built: Any,
    size: float | int,
    resolved: Resolved,
    data: RunData,
    device: torch.device,
) -> tuple[Row, Any]:
    """One row: `target` attacked by `built` at `size` on the attack's images; also returns the combined outcome."""
    images, labels = data.first(attack.images)
    config = resolved.config
    outcome, per_view = attack_target(
        target,
        built,
        images,
        labels,
        size,
        seed=attack_seed(attack, config),
        batch_size=attack_batch(attack, config),
        device=device,
        draws=config.evaluation.draws,
    )
    s = outcome.summary()
    row = Row(
        model=target.name,
        attack=label,
        size=size,
        size_unit=spec.size_unit,
        num_images=s.num_images,
        num_copies=s.num_copies,
        clean_accuracy=s.clean_accuracy,
        attacked_accuracy=s.attacked_accuracy,
        robustness_delta=s.robustness_delta,
        defense_success_rate=s.defense_success_rate,
        attack_success_rate=s.attack_success_rate,
        mean_queries=s.mean_queries,
        seconds_per_image=s.seconds_per_image,
        survived=outcome.survived(),
        views=per_view,
    )
    return row, outcome


def attack_rows(
    resolved: Resolved,
    targets: Mapping[str, EvalTarget],
    data: RunData,
    device: torch.device,
    *,
    labels: Sequence[str],
    done: Mapping[tuple[str, str, float], Row],
) -> Iterator[Row]:
    """Every row of the grid for the attacks `labels`, in config order; rows in `done` are yielded as they are."""
    from tqdm.auto import tqdm

    jobs = sum(
        len(resolved.attack_configs[lb].models or list(targets)) * len(resolved.attack_configs[lb].sizes)
        for lb in labels
    )
    progress = tqdm(total=jobs, desc="attacks", unit="row", leave=False, disable=None if jobs else True)
    try:
        for label in labels:
            attack, spec = resolved.attack_configs[label], resolved.attacks[label]
            built = build_attack(attack, spec, targets)
            for name in attack.models or list(targets):
                for size in attack.sizes:
                    size_arg = size_argument(size, spec)
                    progress.set_postfix_str(f"{name} {label} {size_arg}")
                    row = done.get((name, label, float(size)))
                    if row is None:
                        logger.info(
                            "attacking %s with %s at size %s on %d images", name, label, size_arg, attack.images
                        )
                        row, _ = measure_row(
                            targets[name], label, attack, spec, built, size_arg, resolved, data, device
                        )
                    progress.update()
                    yield row
    finally:
        progress.close()

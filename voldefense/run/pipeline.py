"""`run`, `evaluate_run` and `load_finished_run`: short compositions of the run's steps.

    resolved   = resolve(config, registry)                  # the only registry lookups of a run
    paths      = prepare_output(out_dir, config, ...)
    data       = load_data(config)
    contenders = build_contenders(resolved, data)           # f, g, ablations, baselines
    contender.fit_or_load(fitter) for each                 # one fit-or-load, checkpoint per epoch
    results    = evaluate(contenders, ...)                  # the attack grid, then the rigor checks
    write_outputs(results, ...)                             # report.md and plots from the record

results.json is written by `evaluate` once per completed row and check, so nothing computed is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from voldefense.checkpoint import atomic_write_text
from voldefense.config import parse_config, read_yaml
from voldefense.config.schema import Config
from voldefense.distributed import DistContext, init_distributed, shutdown_distributed
from voldefense.errors import ConfigError
from voldefense.results import AttackInfo, DatasetInfo, RunResults, read_results, to_json
from voldefense.run.contenders import Contender, build_contenders
from voldefense.run.data import RunData, load_data
from voldefense.run.devices import DeviceChoice, resolve_device
from voldefense.run.fit import Fitter
from voldefense.run.grid import (
    EvalTarget,
    attack_rows,
    certified_cells,
    certify_areas,
    clean_pass,
    counting_passes,
    seeded,
)
from voldefense.run.paths import RunPaths, prepare_output, read_metrics
from voldefense.run.resolve import Resolved, check_against_data, resolve
from voldefense.run.rigor import convergence_checks, with_checks
from voldefense.run.warm_start import prepare_own_models
from voldefense.training import EpochCallback

logger = logging.getLogger(__name__)


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
    resolved = resolve(config, registry)
    context = init_distributed("cuda" if device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        torch_device, amp = resolve_device(device, config, context)
        paths = prepare_output(
            Path(out_dir), config, resume=resume, overwrite=overwrite or config.output.overwrite, context=context
        )
        context.barrier()  # other ranks wait until rank 0 has prepared (or cleaned) the folder
        data = load_data(config)
        check_against_data(resolved, data.image_shape)
        contenders = build_contenders(resolved, data)
        prepare_own_models(contenders, config, data.image_shape, data.num_classes)
        mode = "resume" if resume else "train"
        fitter = Fitter(resolved, data, paths, torch_device, amp, context, mode, callbacks, contenders)
        for contender in contenders.values():
            contender.fit_or_load(fitter)
        context.barrier()
        if not context.is_main:
            return paths
        previous = read_results(paths.results) if resume and paths.results.is_file() else None
        results = evaluate(contenders, resolved, data, paths, torch_device, previous=previous)
        write_outputs(results, config, paths)
        logger.info("report written to %s", paths.report)
        return paths
    finally:
        shutdown_distributed(context)


@dataclass
class FinishedRun:
    """A finished run read back from its folder: its config, resolved plugins, data and every contender loaded
    from its checkpoints (nothing trained)."""

    paths: RunPaths
    resolved: Resolved  # its config is resolved.config
    data: RunData
    contenders: dict[str, Contender]
    device: torch.device


def read_run_config(run_dir: str | Path, registry: Any = None) -> tuple[RunPaths, Resolved]:
    """The run folder's paths, its validated config.yaml and its resolved plugins (ConfigError, one line, when
    the folder is not a run)."""
    from voldefense.config.checks import check_config

    paths = RunPaths(Path(run_dir))
    if not paths.config.is_file():
        raise ConfigError(f"{paths.root} is not a run folder (no config.yaml); give the --out folder of a run")
    config = parse_config(read_yaml(paths.config))
    check_config(config, registry=registry)
    return paths, resolve(config, registry)


def load_finished_run(run_dir: str | Path, *, device: DeviceChoice = "auto", registry: Any = None) -> FinishedRun:
    """Every contender of a finished run loaded from its checkpoints, nothing trained."""
    return load_checkpoints(*read_run_config(run_dir, registry), device=device)


def load_checkpoints(paths: RunPaths, resolved: Resolved, *, device: DeviceChoice) -> FinishedRun:
    """`load_finished_run` for a config already read (`read_run_config`)."""
    config = resolved.config
    torch_device, amp = resolve_device(device, config)
    data = load_data(config)
    check_against_data(resolved, data.image_shape)
    contenders = build_contenders(resolved, data)
    fitter = Fitter(resolved, data, paths, torch_device, amp, DistContext(), "load", contenders=contenders)
    for contender in contenders.values():
        contender.fit_or_load(fitter)
    return FinishedRun(paths, resolved, data, contenders, torch_device)


def evaluate_run(
    run_dir: str | Path, *, attacks: Sequence[str] = (), device: DeviceChoice = "auto", registry: Any = None
) -> RunPaths:
    """Re-run the evaluation of a finished run on its saved checkpoints (``voldefense evaluate``).

    With `attacks`, only the attacks of those labels are re-run; the other rows of results.json are kept.
    """
    paths, resolved = read_run_config(run_dir, registry)
    for name in attacks:  # before any data is loaded: a typo costs nothing
        if name not in resolved.attacks:
            raise ConfigError(
                f"--attacks: {name!r} is not an attack of this run (attacks: {', '.join(resolved.attacks)})"
            )
    finished = load_checkpoints(paths, resolved, device=device)
    previous, labels = None, list(resolved.attacks)
    if attacks:
        if paths.results.is_file():  # rows of the attacks not re-run are reused as they are
            previous = _without_attacks(read_results(paths.results), attacks)
        else:
            labels = [label for label in labels if label in attacks]
    results = evaluate(
        finished.contenders, resolved, finished.data, paths, finished.device, previous=previous, labels=labels
    )
    write_outputs(results, resolved.config, paths)
    return paths


def _without_attacks(previous: RunResults, rerun: Sequence[str]) -> RunResults:
    return replace(
        previous,
        rows=tuple(r for r in previous.rows if r.attack not in rerun),
        convergence=tuple(c for c in previous.convergence if c.check.attack not in rerun),
    )


def evaluate(
    contenders: dict[str, Contender],
    resolved: Resolved,
    data: RunData,
    paths: RunPaths,
    device: torch.device,
    *,
    previous: RunResults | None = None,
    labels: Sequence[str] | None = None,
) -> RunResults:
    """Every contender's clean figures, then the attack grid (rows of `previous`, an interrupted evaluation, are
    kept, not recomputed), then the rigor checks; results.json is saved after every row and every check."""
    config = resolved.config
    labels = list(resolved.attacks if labels is None else labels)
    targets = {name: c.target() for name, c in contenders.items()}
    results = RunResults(
        dataset=DatasetInfo(config.data.name, len(data.classes), tuple(data.image_shape)),
        models={name: c.entry() for name, c in contenders.items()},
        attacks={
            label: AttackInfo(
                spec.name,
                spec.size_unit,
                spec.white_box,
                tuple(resolved.attack_configs[label].sizes),
                resolved.attack_configs[label].images,
                dict(resolved.attack_configs[label].options),
                spec.adaptive,
                spec.exact,
            )
            for label, spec in resolved.attacks.items()
            if label in labels
        },
    )
    results = _clean_figures(results, targets, resolved, data, device)
    done = {row.key: row for row in previous.rows} if previous else {}
    for row in attack_rows(resolved, targets, data, device, labels=labels, done=done):
        results = replace(results, rows=(*results.rows, row))
        save(results, paths)
    results = with_checks(results, config.evaluation.masking_tolerance)
    if config.evaluation.convergence_check:
        kept = {c.key: c for c in previous.convergence} if previous else {}
        for record in convergence_checks(results, resolved, targets, data, device, kept):
            results = replace(results, convergence=(*results.convergence, record))
            save(results, paths)
    results = replace(results, complete=True)
    save(results, paths)
    return results


def _clean_figures(
    results: RunResults, targets: dict[str, EvalTarget], resolved: Resolved, data: RunData, device: torch.device
) -> RunResults:
    """Per model: clean accuracy and inference time on the largest evaluation subset, and certified accuracy where
    the model has a certificate."""
    config = resolved.config
    images, labels = data.first(max([a.images for a in config.attacks] + [config.data.val_size]))
    areas = certify_areas(config, resolved.attacks)
    for name, target in targets.items():
        target.model.to(device).eval()
        changes: dict[str, Any] = {}
        with seeded(config.training.seed, device), counting_passes(target.model, changes):
            accuracy, ms = clean_pass(
                target.model, images, labels, config.training.eval_batch_size, device, config.evaluation.draws
            )
        changes.update(clean_accuracy=accuracy, clean_images=len(labels), inference_ms_per_image=ms)
        if config.evaluation.certify and results.models[name].kind != "f":
            if target.certify is None:
                changes["certified_note"] = target.no_certificate
            else:
                with seeded(config.training.seed, device):
                    changes["certified"] = certified_cells(target.certify, areas, data.image_shape, images, labels)
        results = results.with_model(name, **changes)
    return results


def save(results: RunResults, paths: RunPaths) -> None:
    atomic_write_text(paths.results, to_json(results))


def write_outputs(results: RunResults, config: Config, paths: RunPaths) -> None:
    """report.md and, when configured, the plots, both from the results record and metrics.jsonl."""
    from voldefense.report import render_report

    metrics = read_metrics(paths)
    atomic_write_text(paths.report, render_report(results, metrics))
    if config.output.plots:
        from voldefense.plots import write_plots

        write_plots(results, metrics, paths.plots)

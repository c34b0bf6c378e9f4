"""The run folder: its files, who may replace it, the saved config, checkpoint signatures and metrics.jsonl."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from voldefense import jsonio
from voldefense.checkpoint import atomic_write_text
from voldefense.config import config_to_dict, dump_config, parse_config, read_yaml
from voldefense.config.schema import Config
from voldefense.distributed import DistContext
from voldefense.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
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

    def holds_work(self) -> bool:
        """Whether the folder holds something a rerun would lose: results, a report or any checkpoint (a finished
        model or an interrupted training that --resume can continue)."""
        if self.results.exists() or self.report.exists():
            return True
        return self.checkpoints.is_dir() and any(self.checkpoints.glob("*.pt"))


def is_run_config(config_path: str | Path) -> bool:
    """Whether `config_path` is the config.yaml a run saved into its own folder."""
    path = Path(config_path)
    if path.name != "config.yaml":
        return False
    folder = RunPaths(path.parent)
    return any(p.exists() for p in folder.outputs() if p != folder.config)


def default_output_dir(config: Config, config_path: str | Path | None) -> Path:
    """Where a run goes when no --out is given: a run folder's own config.yaml runs in that folder (wherever the
    folder is now), else `output.dir`, else runs/<config file name>."""
    if config_path is not None and is_run_config(config_path):
        return Path(config_path).parent
    if config.output.dir:
        return Path(config.output.dir)
    stem = Path(config_path).stem if config_path else "run"
    return Path("runs") / stem


def saved_config(config: Config, root: Path) -> Config:
    """The config as saved in the run folder: `output.dir` is the folder actually used and `overwrite` is off, so
    running the saved file again can only ever touch this folder, and only when told."""
    output = dataclasses.replace(config.output, dir=str(root), overwrite=False)
    return dataclasses.replace(config, output=output)


def prepare_output(
    root: Path, config: Config, *, resume: bool, overwrite: bool, context: DistContext | None = None
) -> RunPaths:
    """Create the run folder; refuse to clobber an earlier run unless told; on resume, insist on the same config.

    A folder holding no results and no checkpoint (a run that failed after validation, e.g. a missing dataset) is
    reused without --overwrite. Under torchrun every rank checks before rank 0 writes anything, so all ranks agree.
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
    if existing and paths.holds_work():
        if not overwrite:
            raise ConfigError(
                f"output folder {paths.root} already holds a run ({existing[0].name}); pass --overwrite to replace "
                "it, --resume to continue it, or choose another folder with --out"
            )
        if context.is_main:
            logger.warning("--overwrite: replacing the run in %s", paths.root.resolve())
    elif existing and context.is_main:
        logger.info("reusing %s: it holds no trained model and no results (an earlier start stopped early)", paths.root)
    context.barrier()
    if context.is_main:
        for path in existing:  # only our own outputs, never anything else the user keeps there
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        paths.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(paths.config, dump_config(saved_config(config, paths.root)))
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


def signature(config: Config, kind: str, variant: Any = None) -> str:
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


# -- metrics.jsonl -----------------------------------------------------------------------------------------


def read_metrics(paths: RunPaths) -> list[dict[str, Any]]:
    if not paths.metrics.is_file():
        return []
    return [json.loads(line) for line in paths.metrics.read_text(encoding="utf-8").splitlines() if line.strip()]


def rewrite_metrics(paths: RunPaths, model: str, history: list[dict[str, Any]]) -> None:
    """On resume: keep other models' rows and replace this model's rows with its checkpointed history."""
    rows = [row for row in read_metrics(paths) if row.get("model") != model] + list(history)
    atomic_write_text(paths.metrics, "".join(jsonio.dumps(r) + "\n" for r in rows))


def append_metrics(paths: RunPaths, record: dict[str, Any]) -> None:
    with paths.metrics.open("a", encoding="utf-8") as handle:
        handle.write(jsonio.dumps(record) + "\n")
        handle.flush()

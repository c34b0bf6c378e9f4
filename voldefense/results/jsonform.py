"""The JSON form of `RunResults` (results.json): version `RESULTS_VERSION`, strict JSON (NaN written as null);
version 1 converted on reading, anything else refused in one line."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from voldefense.errors import ConfigError
from voldefense.jsonio import as_float, strict
from voldefense.results.records import (
    RESULTS_VERSION,
    AttackInfo,
    CertifiedCell,
    ConvergenceCheck,
    ConvergenceRecord,
    DatasetInfo,
    MaskingCheck,
    ModelEntry,
    Row,
    RunResults,
    ViewFigures,
    worst_case_cells,
)


def _plain(record: Any) -> dict[str, Any]:
    """A record's fields as a JSON-ready mapping (no derived properties)."""
    return {f.name: _to_plain(getattr(record, f.name)) for f in fields(record)}


def _to_plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return _plain(value)
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def to_dict(results: RunResults) -> dict[str, Any]:
    """The JSON form of `results` (version `RESULTS_VERSION`), the version and completeness first so a reader
    sees them at the top of the file."""
    plain = _plain(results)
    out = {"version": plain.pop("version"), "complete": plain.pop("complete"), **plain}
    out["convergence"] = [
        {
            "model": c.model,
            "size_unit": c.size_unit,
            "size": c.size,
            **c.check.as_dict(),
            "doubled_options": _to_plain(c.doubled_options),
            "base_survived": list(c.base_survived),
        }
        for c in results.convergence
    ]
    out["masking"] = [m.as_dict() for m in results.masking]
    return strict(out)


def to_json(results: RunResults) -> str:
    return json.dumps(to_dict(results), indent=2, allow_nan=False)


def from_json(text: str, source: str | Path = "results.json") -> RunResults:
    """Read results.json (this version, or version 1 converted); anything else is one `ConfigError` line."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{source} is not valid JSON ({err}); rerun the evaluation with voldefense evaluate"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} does not hold a results record; rerun the evaluation with voldefense evaluate")
    version = data.get("version")
    try:
        if version == 1:
            return _from_v1(data)
        if version == RESULTS_VERSION:
            return _from_current(data)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(
            f"{source} is damaged ({type(err).__name__}: {err}); rerun the evaluation with voldefense evaluate"
        ) from None
    raise ConfigError(
        f"{source} has results version {version!r}; this voldefense reads versions 1 and {RESULTS_VERSION} "
        "(rerun the evaluation with this version: voldefense evaluate RUN_DIR)"
    )


def read_results(path: Path) -> RunResults:
    return from_json(Path(path).read_text(encoding="utf-8"), path)


def _entry(data: Mapping[str, Any]) -> ModelEntry:
    return ModelEntry(
        kind=data["kind"],
        description=data["description"],
        parameters=int(data["parameters"]),
        details=dict(data.get("details") or {}),
        epochs=data.get("epochs"),
        train_seconds=data.get("train_seconds"),
        clean_accuracy=None if data.get("clean_accuracy") is None else as_float(data["clean_accuracy"]),
        clean_images=data.get("clean_images"),
        inference_ms_per_image=data.get("inference_ms_per_image"),
        certified=tuple(
            CertifiedCell(float(c["area"]), int(c["square_side"]), int(c["images"]), as_float(c["accuracy"]))
            for c in data.get("certified") or ()
        ),
        certified_note=data.get("certified_note") or "",
        one_pixel_exhaustive_accuracy=data.get("one_pixel_exhaustive_accuracy"),
        forward_passes_per_image=data.get("forward_passes_per_image"),
    )


def _attack(data: Mapping[str, Any]) -> AttackInfo:
    return AttackInfo(
        plugin=data["plugin"],
        size_unit=data["size_unit"],
        white_box=bool(data["white_box"]),
        sizes=tuple(data["sizes"]),
        images=int(data["images"]),
        options=dict(data.get("options") or {}),
        adaptive=bool(data.get("adaptive", True)),
        exact=bool(data.get("exact", False)),
    )


ROW_FIGURES = (
    "clean_accuracy",
    "attacked_accuracy",
    "robustness_delta",
    "defense_success_rate",
    "attack_success_rate",
    "mean_queries",
    "seconds_per_image",
)


def _row(data: Mapping[str, Any], survived: Sequence[bool]) -> Row:
    return Row(
        model=data["model"],
        attack=data["attack"],
        size=data["size"],
        size_unit=data["size_unit"],
        num_images=int(data["num_images"]),
        num_copies=int(data["num_copies"]),
        **{key: as_float(data[key]) for key in ROW_FIGURES},
        survived=tuple(bool(s) for s in survived),
        views={
            view: ViewFigures(as_float(v["attacked_accuracy"]), as_float(v["robust_accuracy"]))
            for view, v in (data.get("views") or {}).items()
        },
    )


def _convergence(data: Mapping[str, Any], survived: Sequence[bool]) -> ConvergenceRecord:
    check = ConvergenceCheck(
        data["held"],
        data["attack"],
        as_float(data["base_acc"]),
        as_float(data["doubled_acc"]),
        as_float(data["drop"]),
        float(data["tolerance"]),
        data.get("reason") or "",
    )
    doubled = data.get("doubled_options")
    return ConvergenceRecord(
        data["model"], data["size_unit"], data["size"], check, doubled, tuple(bool(s) for s in survived)
    )


def _masking(data: Mapping[str, Any]) -> MaskingCheck:
    return MaskingCheck(
        flagged=bool(data["flagged"]),
        applicable=bool(data["applicable"]),
        size_unit=data["size_unit"],
        size=as_float(data["size"]),
        best_black_box=data.get("best_black_box"),
        best_black_box_acc=as_float(data.get("best_black_box_acc")),
        best_white_box=data.get("best_white_box"),
        best_white_box_acc=as_float(data.get("best_white_box_acc")),
        gap=as_float(data.get("gap")),
        tolerance=float(data["tolerance"]),
        black_box_only=data.get("black_box_only"),
        model=data.get("model", ""),
    )


def _dataset(data: Mapping[str, Any]) -> DatasetInfo:
    return DatasetInfo(data["name"], int(data["classes"]), tuple(int(v) for v in data["image_shape"]))


def _assemble(data: Mapping[str, Any], models: dict[str, ModelEntry], rows: list[Row], convergence: list) -> RunResults:
    attacks = {label: _attack(info) for label, info in data.get("attacks", {}).items()}
    return RunResults(
        dataset=_dataset(data["dataset"]),
        models=models,
        attacks=attacks,
        rows=tuple(rows),
        worst_case=worst_case_cells(rows, attacks),
        convergence=tuple(convergence),
        masking=tuple(_masking(m) for m in data.get("masking", [])),
        complete=bool(data.get("complete", False)),
    )


def _from_current(data: Mapping[str, Any]) -> RunResults:
    models = {name: _entry(entry) for name, entry in data["models"].items()}
    rows = [_row(r, r["survived"]) for r in data.get("rows", [])]
    convergence = [_convergence(c, c.get("base_survived") or ()) for c in data.get("convergence", [])]
    return _assemble(data, models, rows, convergence)


V1_ENTRY_FIELDS = {f.name for f in fields(ModelEntry)} - {"details", "certified"}


def _bits(text: Any) -> tuple[bool, ...]:
    if not isinstance(text, str) or set(text) - {"0", "1"}:
        raise ValueError(f"per-image outcome {text!r} is not a string of 0s and 1s")
    return tuple(c == "1" for c in text)


def _from_v1(data: Mapping[str, Any]) -> RunResults:
    """Version 1: flat model entries (their build facts next to the figures), certified cells keyed by area,
    per-image outcomes as '0101' strings."""
    models = {}
    for name, entry in data["models"].items():
        flat = {k: v for k, v in entry.items() if k in V1_ENTRY_FIELDS}
        flat["details"] = {k: v for k, v in entry.items() if k not in V1_ENTRY_FIELDS and k != "certified"}
        flat["certified"] = list((entry.get("certified") or {}).values())
        flat.setdefault("parameters", 0)
        models[name] = _entry(flat)
    rows = [_row(r, _bits(r["survived"])) for r in data.get("rows", [])]
    convergence = [_convergence(c, _bits(c.get("base_survived") or "")) for c in data.get("convergence", [])]
    return _assemble(data, models, rows, convergence)

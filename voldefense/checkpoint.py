"""Atomic checkpoints: never a half-written file, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (what ``weights_only`` loading accepts):
model / optimizer / scheduler / grad-scaler state, the RNG states, the number of finished epochs and whether
training is complete. Writing goes to a temporary file in the same folder, is flushed to disk, then moved over the
old file with ``os.replace`` — so an interrupted run leaves either the old checkpoint or the new one.
"""

from __future__ import annotations

import io
import os
import random
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voldefense.errors import CheckpointError

FORMAT_VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file in the same folder + ``os.replace``).

    The file gets the permissions any other file would (0666 minus the user's umask, e.g. 0644): the temporary
    file is created with ``os.open(..., 0o666)``, which applies the umask, not with ``tempfile.mkstemp``, which
    always gives 0600 (then report.md and results.json were private while the plots beside them were not).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:  # pragma: no cover - a 48-bit name collision
            continue
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Save `state` (plus the format version) atomically."""
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely; a missing, corrupt or foreign file is a one-line `CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train first (voldefense run) or check the folder")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is unusable
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a voldefense checkpoint ({first[:120]}); delete it and rerun"
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} is not a voldefense checkpoint of format {FORMAT_VERSION}; delete it and rerun"
        )
    return state


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], *, path: str | Path) -> None:
    """Load a state dict, turning a shape/key mismatch into a `CheckpointError` naming the file."""
    try:
        module.load_state_dict(weights, strict=True)
    except (RuntimeError, KeyError, TypeError) as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:3])[:200]
        raise CheckpointError(
            f"checkpoint {path} does not match the configured model ({detail}); was the config changed? "
            "Use the run's own config.yaml or start a new run"
        ) from None


def load_into(module: torch.nn.Module, state: dict[str, Any], path: str | Path, signature: str = "") -> None:
    """Load a checkpoint's weights into `module` after checking they were written for the same configuration
    (`signature`, a digest of the architecture; empty: not checked)."""
    if signature and state.get("signature") != signature:
        raise CheckpointError(
            f"checkpoint {path} was written for a different model configuration; use the run's own config.yaml "
            "or start a new run"
        )
    load_weights(module, state["model"], path=path)


def load_finished(path: str | Path, signature: str, module: torch.nn.Module) -> list[dict[str, Any]] | None:
    """The weights of a finished training loaded into `module`, returning its per-epoch history; None when there
    is no checkpoint or its training is unfinished."""
    if not Path(path).is_file():
        return None
    state = load_checkpoint(path)
    if not state.get("complete"):
        return None
    load_into(module, state, path, signature)
    return list(state.get("history", []))


def rng_state() -> dict[str, Any]:
    """Every RNG the training loop touches, as tensors and plain values (``weights_only``-loadable)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["name"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    random.setstate(_python_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(state: tuple) -> dict[str, Any]:
    version, internal, gauss = state
    return {"version": int(version), "internal": list(internal), "gauss": gauss}


def _python_state_from_plain(state: dict[str, Any]) -> tuple:
    return (state["version"], tuple(int(v) for v in state["internal"]), state["gauss"])

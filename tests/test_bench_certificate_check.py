"""bench/certificate_check.py: a certified image flipped by an attack its certificate covers is reported and fails
the check; attacks no square certificate covers (scattered pixels, patches beyond the certified side) are not
checked. Its run on a real run folder is in tests/runner/test_reproduce_configs.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import torch

BENCH = Path(__file__).parents[1] / "bench" / "certificate_check.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("certificate_check", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_run(module, monkeypatch, tmp_path: Path, patch_survived: list[bool]) -> list[list[int]]:
    """A run whose one certified model certifies images 0 and 1 up to side 8 (a PatchCleanser mask set);
    returns the sides it was asked to certify."""
    asked: list[list[int]] = []

    def certify(images: torch.Tensor, labels: torch.Tensor, sides: list[int]) -> dict[int, torch.Tensor]:
        asked.append(list(sides))
        claim = torch.tensor([True, True, False, False])[: len(labels)]
        return {side: claim.clone() for side in sides if side <= 8}

    def row(attack: str, size: float, unit: str, survived: list[bool]) -> SimpleNamespace:
        return SimpleNamespace(model="cleanser", attack=attack, size=size, size_unit=unit, survived=tuple(survived))

    rows = [
        row("patch_pgd", 0.05, "area", patch_survived),  # 7x7 on 32x32: covered
        row("patch_pgd", 0.1, "area", [False] * 4),  # 10x10: beyond the certified side, nothing claimed
        row("sparse_pgd", 16, "pixels", [False] * 4),  # scattered pixels: no square covers them
        row("sparse_pgd", 1, "pixels", [True, True, True, False]),  # one pixel: inside any square
    ]
    (tmp_path / "results.json").write_text("{}")
    target = SimpleNamespace(certify=certify)
    uncertified = SimpleNamespace(certify=None)
    finished = SimpleNamespace(
        paths=SimpleNamespace(results=tmp_path / "results.json"),
        data=SimpleNamespace(
            image_shape=(3, 32, 32), first=lambda n: (torch.zeros(n, 3, 32, 32), torch.zeros(n, dtype=torch.long))
        ),
        contenders={
            "f": SimpleNamespace(target=lambda: uncertified),
            "cleanser": SimpleNamespace(target=lambda: target),
        },
        resolved=SimpleNamespace(config=SimpleNamespace(training=SimpleNamespace(seed=0))),
        device=torch.device("cpu"),
    )
    monkeypatch.setattr(module, "load_finished_run", lambda run_dir, device: finished)
    monkeypatch.setattr(module, "read_results", lambda path: SimpleNamespace(rows=rows))
    return asked


def test_a_certified_image_flipped_by_a_covered_patch_fails_the_check(monkeypatch, tmp_path, capsys):
    module = load_bench()
    asked = fake_run(module, monkeypatch, tmp_path, patch_survived=[True, False, False, True])
    assert module.main([str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "| cleanser | patch_pgd | 5% area | 7 | 4 | 2 | 1 (images 1) |" in out
    assert "| cleanser | sparse_pgd | 1 px | 1 | 4 | 2 | 0 |" in out
    assert "10% area" not in out and "16 px" not in out
    assert asked == [[1, 7, 10]]
    assert "1 certified images were flipped" in err


def test_certificates_that_held_pass_the_check(monkeypatch, tmp_path, capsys):
    module = load_bench()
    fake_run(module, monkeypatch, tmp_path, patch_survived=[True, True, False, False])
    assert module.main([str(tmp_path), "--out", str(tmp_path / "check.md")]) == 0
    assert "| cleanser | patch_pgd | 5% area | 7 | 4 | 2 | 0 |" in (tmp_path / "check.md").read_text()
    assert capsys.readouterr().err == ""


def test_a_folder_without_results_is_one_line(tmp_path, capsys):
    assert load_bench().main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "results.json does not exist" in err and err.count("\n") == 1

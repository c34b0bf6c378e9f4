"""Hand-made `voldefense.results` records for the tests of the checks, the report and the plots.

Not a test module: test modules import it by its bare name (tests/ is on sys.path, see tiny_quickstart.py), so its
basename must stay unique in the tests tree.
"""

from __future__ import annotations

from voldefense.results import (
    AttackInfo,
    CertifiedCell,
    DatasetInfo,
    ModelEntry,
    Row,
    RunResults,
    worst_case_cells,
)


def row(model, attack, size, unit, survived: str, attacked: float | None = None, clean: float = 0.9) -> Row:
    """A row whose per-image outcomes are `survived` ('1': survived); `attacked` defaults to their share."""
    flags = tuple(c == "1" for c in survived)
    attacked = sum(flags) / len(flags) if attacked is None else attacked
    return Row(
        model=model,
        attack=attack,
        size=size,
        size_unit=unit,
        num_images=len(flags),
        num_copies=1,
        clean_accuracy=clean,
        attacked_accuracy=attacked,
        robustness_delta=attacked - clean,
        defense_success_rate=attacked / clean,
        attack_success_rate=1 - attacked / clean,
        mean_queries=1.0,
        seconds_per_image=0.01,
        survived=flags,
    )


def attack(plugin, unit, white_box, images=4, *, adaptive=True, exact=False, sizes=()) -> AttackInfo:
    return AttackInfo(plugin, unit, white_box, tuple(sizes), images, {}, adaptive, exact)


def results_fixture() -> RunResults:
    """f, g and a median-filter baseline under three attacks, with a certified cell and a worst case."""
    rows = (
        row("f", "random_pixels", 1, "pixels", "1100", 0.5),
        row("f", "sparse_pgd", 1, "pixels", "0110", 0.25),
        row("g", "random_pixels", 1, "pixels", "1110", 0.75),
        row("g", "sparse_pgd", 1, "pixels", "1011", 0.75),
        row("f", "patch_pgd", 0.04, "area", "0000", 0.0),
        row("g", "patch_pgd", 0.04, "area", "0101", 0.5),
        row("g", "random_pixels", 4, "pixels", "110", 0.5),
    )
    attacks = {
        "random_pixels": attack("random_pixels", "pixels", False, adaptive=False),
        "sparse_pgd": attack("sparse_pgd", "pixels", True),
        "patch_pgd": attack("patch_pgd", "area", True),
    }
    return RunResults(
        dataset=DatasetInfo("synthetic", 10, (3, 32, 32)),
        models={
            "f": ModelEntry(
                "f", "undefended 2D vgg16", 1000, {"loss": "cross_entropy", "loss_target": "image"}, 2, None, 0.9, 3
            ),
            "g": ModelEntry("g", "volumized 3D vgg16", 3000, {"loss": "pal", "loss_target": "patch"}, 2, None, 0.8, 3),
            "median": ModelEntry(
                "defense",
                "median filter + f",
                1000,
                clean_accuracy=0.7,
                train_seconds=0.0,
                inference_ms_per_image=1.25,
                certified=(CertifiedCell(0.04, 7, 4, 0.1),),
            ),
        },
        attacks=attacks,
        rows=rows,
        worst_case=worst_case_cells(rows, attacks),
        complete=True,
    )

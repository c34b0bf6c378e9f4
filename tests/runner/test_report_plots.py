"""report.md tables (rows = models, columns = metrics), worst case over attacks, and the PNG plots."""

from __future__ import annotations

import dataclasses

from results_fixtures import results_fixture, row

from voldefense.plots import write_plots
from voldefense.report import render_report
from voldefense.results import worst_case_cells


def test_worst_case_counts_an_image_only_if_every_attack_failed():
    cells = {(c.model, c.size_unit, c.size): c for c in worst_case_cells(results_fixture().rows)}
    assert cells[("f", "pixels", 1)].robust_accuracy == 0.25  # 1100 & 0110
    assert cells[("g", "pixels", 1)].robust_accuracy == 0.5  # 1110 & 1011
    assert cells[("g", "pixels", 1)].attacks == ("random_pixels", "sparse_pgd")
    assert cells[("g", "pixels", 4)].robust_accuracy == 2 / 3
    assert cells[("g", "area", 0.04)].robust_accuracy == 0.5


def test_worst_case_matches_the_evaluation_module():
    import torch

    from voldefense.evaluation import AttackOutcome, worst_case

    labels = torch.tensor([0, 1, 2, 3])
    a = AttackOutcome(
        torch.tensor([True, True, False, True]),
        torch.tensor([[True, False, False, True], [True, True, False, True]]),
        torch.ones(4),
        0.1,
        labels,
    )
    b = AttackOutcome(
        torch.tensor([True, True, False, True]), torch.tensor([[False, True, True, True]]), torch.ones(4), 0.1, labels
    )
    rows = [
        dataclasses.replace(row("g", n, 1, "pixels", "0000"), survived=o.survived()) for n, o in (("a", a), ("b", b))
    ]
    assert worst_case_cells(rows)[0].robust_accuracy == worst_case([a, b]).robust_accuracy == 0.25


def test_report_has_a_row_per_model_and_a_column_per_metric():
    text = render_report(results_fixture(), [{"model": "f", "epoch": 2, "loss": 0.3, "val_accuracy": 0.9}])
    models = text.split("## Models")[1].split("##")[0]
    assert "| **f** | undefended 2D vgg16 | 1,000 | 2 | — | — | 90.0 |" in models
    # a baseline row, no code change
    assert "| **median** | median filter + f | 1,000 | — | 0.0 | 1.25 | 70.0 |" in models
    main = text.split("## Results")[1].split("## Models")[0]
    first = next(line for line in main.splitlines() if line.startswith("|"))
    header = [c.strip() for c in first.split("|")[1:-1]]
    assert header == [
        "",
        "clean acc %",
        "random_pixels 1 px %",
        "random_pixels 4 px %",
        "sparse_pgd 1 px %",
        "patch_pgd 4% area %",
        "worst case 1 px %",
        "worst case 4 px %",
        "worst case 4% area %",
        "certified 4% area (7 px) %",
        "train s",
        "inference ms/img",
    ]
    assert "| **f** | 90.0 | 50.0 | — | 25.0 | 0.0 | 25.0 | — | 0.0 | — | — | — |" in main
    assert "| **median** | 70.0 | — | — | — | — | — | — | — | 10.0 | 0.0 | 1.25 |" in main
    assert "| **median** | 10.0 |  |" in text.split("## Certified accuracy")[1]
    worst = text.split("## Worst-case")[1].split("##")[0]
    assert "| | 1 px | 4 px | 4% area |".replace("| |", "|  |") in worst
    assert "| **f** | 25.0 | — | 0.0 |" in worst
    assert "| **g** | 50.0 | 66.7 † | 50.0 |" in worst  # random_pixels alone at 4 px: marked
    sparse = text.split("## Attack `sparse_pgd`")[1].split("##")[0]
    assert "white-box" in sparse
    assert "| **g** | 90.0 | 75.0 | -15.0 | 83.3 |" in sparse
    assert "## Training (last epoch)" in text


def test_plots_are_written_as_png(tmp_path):
    metrics = [
        {"model": m, "epoch": e, "loss": 1.0 / e, "val_accuracy": 0.5, "val_defense_success_rate": 0.8}
        for m in ("f", "g")
        for e in (1, 2)
    ]
    written = write_plots(results_fixture(), metrics, tmp_path)
    assert sorted(p.name for p in written) == ["robustness_area.png", "robustness_pixels.png", "training.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_plots_skip_what_has_no_data(tmp_path):
    results = results_fixture()
    results = dataclasses.replace(results, rows=tuple(r for r in results.rows if r.size_unit == "pixels"))
    assert [p.name for p in write_plots(results, [], tmp_path)] == ["robustness_pixels.png"]


def test_report_opens_with_the_verdict():
    text = render_report(results_fixture())
    assert text.index("## Verdict") < text.index("## Results")
    verdict = text.split("## Verdict")[1].split("## Results")[0]
    said = "**g** (volumized 3D vgg16): g is more robust than f at every budget measured; the 95% intervals overlap"
    assert said in verdict
    assert "| clean accuracy | 80.0% [" in verdict
    assert "| worst case 1 px | 50.0% [15.0, 85.0] (n=4) | 25.0% [4.6, 69.9] (n=4) | +25.0 points |" in verdict


def test_a_budget_reached_only_by_non_adaptive_attacks_is_marked():
    text = render_report(results_fixture())
    worst = text.split("## Worst-case")[1].split("##")[0]
    assert "| **g** | 50.0 | 66.7 † | 50.0 |" in worst and "† only non-adaptive attacks" in worst
    main = text.split("## Results")[1].split("## Models")[0]
    assert "66.7 †" in main


def test_the_two_definitions_of_a_multi_copy_attack_are_named():
    results = results_fixture()
    rows = tuple(dataclasses.replace(r, num_copies=5) if r.attack == "random_pixels" else r for r in results.rows)
    text = render_report(dataclasses.replace(results, rows=rows))
    section = text.split("## Attack `random_pixels`")[1].split("##")[0]
    assert "averages the 5 attacked copies of each image" in section and "survives every copy" in section
    assert "attacked copies" not in text.split("## Attack `sparse_pgd`")[1].split("##")[0]


def test_the_worst_case_plot_keeps_non_adaptive_budgets_apart():
    from voldefense.plots import worst_case_points

    points = worst_case_points(results_fixture(), "pixels")
    assert points["g"] == [(1.0, 0.5, True), (4.0, 2 / 3, False)]  # the 4-px point is kept, marked


def test_pal_and_cross_entropy_never_share_a_loss_axis():
    from voldefense.plots import loss_panels, model_losses

    metrics = [{"model": m, "epoch": 1, "loss": 1.0} for m in ("f", "g", "median")]
    losses = model_losses(results_fixture())
    assert losses == {"f": ("cross_entropy", "image"), "g": ("pal", "patch"), "median": ("cross_entropy", "image")}
    assert loss_panels(metrics, losses) == [
        ("training loss: cross_entropy", ["f", "median"]),
        ("training loss: pal (summed over patches)", ["g"]),
    ]


def test_training_table_names_each_models_own_loss():
    """f's cross-entropy and g's PAL are different quantities: each row names its loss beside its value."""
    metrics = [
        {"model": "f", "epoch": 2, "loss": 0.3, "train_accuracy": 0.8, "val_accuracy": 0.9},
        {"model": "g", "epoch": 2, "loss": 1.2, "train_accuracy": 0.7, "val_accuracy": 0.8},
    ]
    training = render_report(results_fixture(), metrics).split("## Training (last epoch)")[1]
    assert "| | epoch | training loss | its value |".replace("| |", "|  |") in training
    assert "| **f** | 2 | cross_entropy | 0.300 |" in training
    assert "| **g** | 2 | pal | 1.200 |" in training
    assert "not across rows" in training


def test_a_model_keeps_its_colour_in_a_panel_other_models_skip(tmp_path, monkeypatch):
    """patch_rank runs on g alone: its panel must draw g in g's colour, not in the first colour (f's)."""
    from results_fixtures import attack

    import voldefense.plots as plots

    results = results_fixture()
    results = dataclasses.replace(
        results,
        rows=(*results.rows, row("g", "patch_rank", 0.04, "area", "0001", 0.25)),
        attacks={**results.attacks, "patch_rank": attack("patch_rank", "area", True)},
    )
    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure) or path)
    plots.robustness_plot(results, "area", tmp_path / "area.png")
    colours = {}
    for ax in figures[0].axes:
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert len(colours["g"]) == 1 and colours["g"] != colours["f"]

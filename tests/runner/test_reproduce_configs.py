"""The reproduction configs (configs/reproduce/): they load and validate, and the CPU one runs end to end at a tiny
size through --set overrides only (the GPU one too, marked slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from voldefense.config import load_config
from voldefense.run import run

REPRODUCE = Path(__file__).parents[2] / "configs" / "reproduce"


def tiny(config_path: Path, data_dir: Path, *given: str) -> list[str]:
    """Overrides shrinking a reproduction config to seconds: 40 fake CIFAR images, 1 epoch, 1/16 width, every attack
    on 4 images with the least effort its options allow (after the `given` overrides)."""
    raw = load_config(config_path, [f"data.options.path={data_dir}/{{split}}.npz", *given])
    sets = [
        *given,
        f"data.options.path={data_dir}/{{split}}.npz",
        "data.val_size=8",
        "training.epochs=1",
        "training.validate_every=1",
        "training.batch_size=20",
        "training.eval_batch_size=20",
        "model.width=0.0625",
        "syllabus.pacing_epochs=1",
        "evaluation.convergence_check=false",
        "output.plots=false",
    ]
    effort = {"steps": 1, "iterations": 2, "max_iter": 1, "search_steps": 1, "restarts": 1}
    for i, attack in enumerate(raw.attacks):
        sets += [f"attacks.{i}.images=4", f"attacks.{i}.sizes=[{attack.sizes[0]}]"]
        sets += [f"attacks.{i}.options.{k}={v}" for k, v in effort.items() if k in attack.options]
        if attack.name == "pixel_search":
            sets += [f"attacks.{i}.options.max_queries=100"]
    return sets


@pytest.mark.parametrize("name", ["cifar10_cpu.yaml", "cifar10_gpu.yaml"])
def test_reproduction_configs_validate_with_g_dk1_majority_vote_and_the_paper_protocol(name, fake_cifar):
    config = load_config(REPRODUCE / name, [f"data.options.path={fake_cifar}/{{split}}.npz"])
    assert config.model.depth_kernel == 1 and config.model.aggregation == "majority_vote"
    assert config.loss.g_options == {"patch_reduction": "mean"} and config.syllabus.stratify
    plugins = {a.name for a in config.attacks}
    assert {"random_pixels", "patch", "pixel", "sparse_pgd", "pixel_search", "patch_pgd", "patch_rank"} <= plugins
    assert "pixel_exhaustive" in plugins
    assert config.evaluation.certify and config.training.augment == "crop_flip"
    minimum = 1000 if "gpu" in name else 500
    assert max(a.images for a in config.attacks) >= minimum


def test_cpu_reproduction_runs_end_to_end_at_a_tiny_size(fake_cifar, tmp_path):
    config = load_config(REPRODUCE / "cifar10_cpu.yaml", tiny(REPRODUCE / "cifar10_cpu.yaml", fake_cifar))
    paths = run(config, tmp_path / "run", device="cpu")
    results = json.loads(paths.results.read_text())
    assert results["complete"] and set(results["models"]) == {"f", "g"}
    assert "certified" in results["models"]["g"]  # dk 1 + majority vote: certifiable
    assert {r["attack"] for r in results["rows"]} >= {"random_pixels", "patch_transfer", "sparse_pgd", "patch_pgd"}
    # bench/patch_votes.py on the same run: each patch's vote alone, next to the majority vote
    import subprocess
    import sys

    bench = Path(__file__).parents[2] / "bench" / "patch_votes.py"
    done = subprocess.run(
        [sys.executable, str(bench), str(paths.root), "--data-dir", str(fake_cifar), "--images", "20"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "per-patch accuracy by rank:" in done.stdout and "aggregated (majority_vote):" in done.stdout
    assert done.stdout.split("by rank: ")[1].count(",") == 3  # four patches of 16x16 on 32x32


def test_the_defense_table_runs_around_the_reproductions_f_at_a_tiny_size(fake_cifar, tmp_path):
    """configs/reproduce/defenses_cifar10_cpu.yaml loads the f a reproduction run trained (model.weights) and puts
    the training-free baselines around it; only the masked PatchCleanser row trains (a fresh f on double-masked
    images, with the reproduction's budget). Every row is attacked and both PatchCleanser rows are certified."""
    first = load_config(
        REPRODUCE / "cifar10_cpu.yaml",
        [*tiny(REPRODUCE / "cifar10_cpu.yaml", fake_cifar), "training.models=[f]", "attacks=[]"],
    )
    trained = run(first, tmp_path / "reproduction", device="cpu")
    f_weights = trained.root / "checkpoints" / "f.pt"
    name = "defenses_cifar10_cpu.yaml"
    config = load_config(REPRODUCE / name, tiny(REPRODUCE / name, fake_cifar, f"model.weights={f_weights}"))
    assert {d.name for d in config.defenses} == {
        "median_filter",
        "local_gradient_smoothing",
        "digital_watermarking",
        "patch_cleanser",
    }
    shipped = load_config(REPRODUCE / name, [f"model.weights={f_weights}"])
    reproduction = load_config(REPRODUCE / "cifar10_cpu.yaml")
    assert (shipped.model.backbone, shipped.model.width, shipped.model.options) == (
        reproduction.model.backbone,
        reproduction.model.width,
        reproduction.model.options,
    )
    assert shipped.training.seed == reproduction.training.seed  # the same test order: g's rows sit beside these
    budget = ("epochs", "batch_size", "augment")  # the masked row trains with f's budget in the reproduction
    assert [getattr(shipped.training, k) for k in budget] == [getattr(reproduction.training, k) for k in budget]
    assert (shipped.optimizer, shipped.schedule) == (reproduction.optimizer, reproduction.schedule)
    theirs = {a.label or a.name: a for a in reproduction.attacks}
    for attack in shipped.attacks:  # the same attacks with the same settings, at budgets the reproduction ran
        same = theirs[attack.label or attack.name]
        assert attack.options == same.options and set(attack.sizes) <= set(same.sizes)
    paths = run(config, tmp_path / "defenses", device="cpu")
    results = json.loads(paths.results.read_text())
    assert results["complete"]
    assert set(results["models"]) == {"f", *(d.label or d.name for d in config.defenses)}
    assert results["models"]["f"]["details"]["weights"] == str(f_weights)  # loaded, not trained again
    f_clean = json.loads((trained.root / "results.json").read_text())["models"]["f"]["clean_accuracy"]
    assert results["models"]["f"]["clean_accuracy"] == pytest.approx(f_clean)
    assert {r["model"] for r in results["rows"]} == set(results["models"])
    for cleanser in ("patch_cleanser_5pct", "patch_cleanser_5pct_masked"):
        assert results["models"][cleanser]["certified"]
    infos = {name: model["details"].get("info", {}) for name, model in results["models"].items()}
    trained_here = {name for name, info in infos.items() if not info.get("reuses_undefended_model", True)}
    assert trained_here == {"patch_cleanser_5pct_masked"}
    # bench/certificate_check.py reloads both cleansers from the run folder and re-certifies the attacked images
    check = Path(__file__).parents[2] / "bench" / "certificate_check.py"
    done = subprocess.run([sys.executable, str(check), str(paths.root)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "| patch_cleanser_5pct_masked | patch_pgd | 1% area | 3 | 4 |" in done.stdout  # tiny: 1% only


@pytest.mark.slow
def test_gpu_reproduction_runs_end_to_end_at_a_tiny_size_on_the_cpu(fake_cifar, tmp_path):
    config = load_config(REPRODUCE / "cifar10_gpu.yaml", tiny(REPRODUCE / "cifar10_gpu.yaml", fake_cifar))
    paths = run(config, tmp_path / "run", device="cpu")
    results = json.loads(paths.results.read_text())
    ablations = {"g_depth_kernel_3", "g_no_pal", "g_no_curriculum"}
    assert set(results["models"]) == {"f", "g"} | ablations
    assert "certified" in results["models"]["g"] and "certified_note" in results["models"]["g_depth_kernel_3"]


def _script_value(name: str) -> str:
    """A single-quoted shell variable of bench/reproduce_gpu.sh."""
    script = (Path(__file__).parents[2] / "bench" / "reproduce_gpu.sh").read_text()
    line = next(row for row in script.splitlines() if row.startswith(f"{name}='"))
    return line.split("=", 1)[1].strip("'")


def test_the_gpu_scripts_order_stage_attacks_the_random_order_with_eot_over_several_draws(fake_cifar):
    """The `order` stage's overrides, as bench/reproduce_gpu.sh joins them, load against the GPU config: the one
    randomized model (random patch order) meets EOT attacks and is classified over 5 draws."""
    attacks = f"{_script_value('order_attacks')[:-1]}, {_script_value('eot_attacks')}]"
    config = load_config(
        REPRODUCE / "cifar10_gpu.yaml",
        [
            f"data.options.path={fake_cifar}/{{split}}.npz",
            "model.depth_kernel=3",
            "model.aggregation=mean_logits",
            "training.models=[g]",
            "evaluation.draws=5",
            "ablations=[identity_order, random_order]",
            f"attacks={attacks}",
        ],
    )
    eot = [a for a in config.attacks if a.options.get("eot_samples", 1) > 1]
    assert {a.name for a in eot} == {"sparse_pgd", "patch_pgd"}
    assert all(a.models == ["g_random_order"] for a in eot)
    full = load_config(
        REPRODUCE / "cifar10_gpu.yaml",
        [f"data.options.path={fake_cifar}/{{split}}.npz", "ablations=[]", f"attacks={_script_value('order_attacks')}"],
    )
    assert not any(a.options.get("eot_samples") for a in full.attacks)


def test_the_attack_bench_attacks_a_runs_f(fake_cifar, tmp_path):
    """bench/attacks.py --run: the issue-16 bench on the reproduction's own f (here a tiny one)."""
    import subprocess
    import sys

    sets = [*tiny(REPRODUCE / "cifar10_cpu.yaml", fake_cifar), "training.models=[f]", "attacks=[]"]
    run(load_config(REPRODUCE / "cifar10_cpu.yaml", sets), tmp_path / "run", device="cpu")
    bench = Path(__file__).parents[2] / "bench" / "attacks.py"
    out = tmp_path / "bench.json"
    command = [sys.executable, str(bench), "--cifar", "--data-dir", str(fake_cifar), "--run", str(tmp_path / "run")]
    command += ["--images", "2", "--accuracy-images", "4", "--attacks", "pixel_search", "--pixels", "1"]
    done = subprocess.run([*command, "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert "model f (voldefense run)" in result["model"]["source"]
    assert [row["attack"] for row in result["rows"]] == ["pixel_search"]
    missing = subprocess.run([*command[:-6], "--run", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert missing.returncode != 0 and "--run" in missing.stderr and "Traceback" not in missing.stderr


def test_the_summary_pools_seeds_and_says_when_their_schedules_differ(tmp_path):
    """bench/reproduce_summary.py: each seed's clean accuracy with its epochs, mean ± sd, and a warning when the
    extra seeds trained for fewer epochs (the CPU reproduction's seeds 1 and 2)."""
    import subprocess
    import sys

    def results(accuracy: float, epochs: int) -> dict:
        model = {"clean_accuracy": accuracy, "clean_images": 100, "epochs": epochs}
        certified = [{"area": 0.05, "square_side": 8, "images": 100, "accuracy": 0.25}]  # results.json v2: a list
        return {"models": {"f": dict(model), "g": {**model, "certified": certified}}, "rows": [], "worst_case": []}

    runs = []
    for name, accuracy, epochs in (("seed0", 0.8, 15), ("seed1", 0.7, 6), ("seed2", 0.6, 6)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(results(accuracy, epochs)))
        runs.append(str(tmp_path / name))
    bench = Path(__file__).parents[2] / "bench" / "reproduce_summary.py"
    done = subprocess.run([sys.executable, str(bench), *runs], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| f | clean | 3 | 80.0 (15), 70.0 (6), 60.0 (6) | 70.0 ± 10.0 |" in done.stdout
    assert "the spread mixes schedules" in done.stdout
    assert "5%: 25.0" in done.stdout  # g's certified cell
    # the one-row-per-model table: clean with its interval and n, certified by area, "-" where a model has none
    assert "| f | 80.0 [71.1, 86.7] (n=100) | - | - | - |" in done.stdout
    assert "| g | 80.0 [71.1, 86.7] (n=100) | 25.0 [17.5, 34.3] | - | - |" in done.stdout


def test_the_summary_recomputes_worst_cases_on_a_subset_of_images_attacks_and_models(tmp_path):
    """--images/--attacks/--models: a row of one run beside another run's rows (docs/defenses.md's g row)."""
    import subprocess
    import sys

    def row(model: str, attack: str, survived: list[bool]) -> dict:
        return {"model": model, "attack": attack, "size": 1, "size_unit": "pixels", "survived": survived}

    rows = [
        row("g", "sparse_pgd", [True, True, False, True]),
        row("g", "pixel_search", [True, False, True, False]),
        row("g", "pixel", [False, False, False, False]),  # left out by --attacks
        row("f", "sparse_pgd", [False, False, False, False]),
    ]
    results = {
        "models": {"f": {"clean_accuracy": 0.9, "clean_images": 4}, "g": {"clean_accuracy": 0.75, "clean_images": 4}},
        "rows": rows,
        "worst_case": [],
    }
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(results))
    bench = Path(__file__).parents[2] / "bench" / "reproduce_summary.py"
    command = [sys.executable, str(bench), str(tmp_path / "run")]
    done = subprocess.run(
        [*command, "--images", "3", "--attacks", "sparse_pgd,pixel_search", "--models", "g"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("## Clean and certified")[0]
    assert "| g | 75.0 [30.1, 95.4] (n=4) | 33.3 [6.1, 79.2] (n=3) |" in table  # image 0 survives both of 3
    assert "| f |" not in table
    wrong = subprocess.run([*command, "--attacks", "nope"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode != 0 and "--attacks: 'nope'" in wrong.stderr and "Traceback" not in wrong.stderr

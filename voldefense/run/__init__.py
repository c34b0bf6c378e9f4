"""The main job, one small module per step: a validated `Config` in; trained contenders (f, g, g's ablations,
baseline defenses), their attack results and a report out.

- `paths`: the run folder (`RunPaths`, `prepare_output`), signatures, metrics.jsonl
- `devices`, `data`: the device, the datasets and the fixed evaluation subset
- `resolve`: the only registry lookups of a run (`resolve(config) -> Resolved`)
- `ablations`, `contenders`: the report rows behind one protocol (build, fit-or-load, target, entry)
- `fit`: one fit-or-load for every network
- `grid`: the attack grid (one `voldefense.results.Row` per model, attack and size)
- `rigor`: worst case, gradient masking, budget convergence
- `pipeline`: `run`, `evaluate_run` and `load_finished_run`, short compositions of the above
"""

from voldefense.run.paths import RunPaths, default_output_dir, prepare_output
from voldefense.run.pipeline import FinishedRun, evaluate_run, load_finished_run, run

__all__ = [
    "FinishedRun",
    "RunPaths",
    "default_output_dir",
    "evaluate_run",
    "load_finished_run",
    "prepare_output",
    "run",
]

"""The results of a run as one typed record: what results.json holds, what resume reads back, what the report
and the plots draw.

`RunResults` holds one `ModelEntry` per report row (f, g, g's ablations, baseline defenses), one `AttackInfo`
per configured attack, one `Row` per model, attack and size (with each image's outcome as a boolean), the worst
case per model and budget (`WorstCaseCell`) and the rigor checks (`ConvergenceRecord`, `MaskingCheck`). The
records are frozen; the run builds new ones with `dataclasses.replace`.

`worst_case` is the one definition of the worst case over attacks (or over a defense's attack views): an image
counts as robust only if it survived every one of them, over the images they all ran on. The evaluation module,
the run's grid and the rigor checks all call it.

JSON: `to_json` writes version `RESULTS_VERSION` (strict JSON: NaN is written as null); `from_json` reads it
back, converts version 1 (per-image outcomes as '0101' strings, flat model entries) and refuses anything else in
one line. This module imports no torch.
"""

from voldefense.results.jsonform import from_json, read_results, to_dict, to_json
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
    WorstCaseCell,
    share,
    worst_case,
    worst_case_cells,
)

__all__ = [
    "RESULTS_VERSION",
    "AttackInfo",
    "CertifiedCell",
    "ConvergenceCheck",
    "ConvergenceRecord",
    "DatasetInfo",
    "MaskingCheck",
    "ModelEntry",
    "Row",
    "RunResults",
    "ViewFigures",
    "WorstCaseCell",
    "from_json",
    "read_results",
    "share",
    "to_dict",
    "to_json",
    "worst_case",
    "worst_case_cells",
]

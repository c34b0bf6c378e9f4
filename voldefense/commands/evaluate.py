"""`voldefense evaluate RUN_DIR [--attacks LABEL ...]`: re-run the evaluation of a finished run on its checkpoints.

Uses the run's own config.yaml. With ``--attacks`` only those attacks are re-run and the other rows of
results.json are kept; report.md and the plots are rewritten.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder of a finished `voldefense run`")
    parser.add_argument(
        "--attacks",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="re-run only these attacks (their label, or plugin name when unlabelled)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto = CUDA when available, else CPU",
    )


def main(args: argparse.Namespace) -> int:
    from voldefense.run import evaluate_run

    paths = evaluate_run(args.run_dir, attacks=args.attacks, device=args.device)
    logger.info("done: %s", paths.report)
    return 0

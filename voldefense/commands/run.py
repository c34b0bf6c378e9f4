"""`voldefense run CONFIG.yaml`: train f, g, g's ablations and the baseline defenses, attack them all and write the
report.

The whole configuration (file plus ``--set`` overrides) is validated before anything is trained; a mistake is one
line naming the key, the bad value and what is allowed, and the exit status is non-zero.
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml", help="run configuration (see docs/config.md)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override one config value, parsed as YAML (repeatable), e.g. --set training.epochs=2",
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: output.dir or runs/<config name>)")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto = CUDA with mixed precision when available, else CPU",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in its folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's outputs in the folder")


def main(args: argparse.Namespace) -> int:
    from voldefense.config import load_config
    from voldefense.run import default_output_dir, run

    config = load_config(args.config, args.overrides)
    out = args.out or default_output_dir(config, args.config)
    paths = run(config, out, device=args.device, resume=args.resume, overwrite=args.overwrite)
    logger.info("done: %s", paths.report)
    return 0

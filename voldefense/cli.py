"""The `voldefense` command line. Each subcommand lives in `voldefense.commands.<name>` with
`add_arguments(parser)` and `main(args) -> int`, imported only when that subcommand runs."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
import warnings

from voldefense.errors import VoldefenseError

SUBCOMMANDS = {
    "plugins": "list every registered plugin (kind, name, origin)",
    "volumize": "write a picture of an image's volume: its patches in rank order",
    "run": "train f and g from a YAML config, attack both and write the report",
    "evaluate": "re-run the evaluation of a finished run on its saved checkpoints",
}


# Kept under 80 columns by hand: the raw formatter (needed for the examples' layout) does not rewrap.
DESCRIPTION = """\
Make image classifiers robust to localized adversarial attacks (few-pixel
attacks and adversarial patches) by volumization, and measure that robustness
honestly: train an undefended CNN f and its volumized 3D counterpart g, attack
both with the same attacks, and write a report with the worst case over them."""

EPILOG = """\
examples:
  voldefense run configs/quickstart.yaml    train f and g, attack both and
                                            write runs/quickstart/report.md
  voldefense evaluate runs/quickstart       attack a finished run again
  voldefense volumize sample --out v.png    picture of an image's patches
  voldefense plugins                        every metric, backbone, loss,
                                            attack and defense installed

'voldefense COMMAND --help' describes a command; docs/ describes the rest."""


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voldefense")
    except PackageNotFoundError:  # run from a source tree that was never installed
        from voldefense import __version__

        return f"{__version__} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voldefense",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in SUBCOMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(_module=f"voldefense.commands.{name}")
        _module_for(name).add_arguments(command_parser)
    return parser


def _module_for(name: str):
    return importlib.import_module(f"voldefense.commands.{name}")


def _show_plugin_warnings_in_one_line() -> None:
    """A broken plugin's warning is one line on stderr (`warning: voldefense plugin NAME: problem`), not Python's
    two-line `file:line: PluginWarning: ...` plus the source line that raised it."""
    from voldefense.registry import PluginWarning

    show = warnings.showwarning
    if getattr(show, "_voldefense_one_line", False):
        return

    def one_line(message, category, filename, lineno, file=None, line=None):  # the signature of showwarning
        if issubclass(category, PluginWarning):
            print(f"warning: {' '.join(str(message).split())}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    one_line._voldefense_one_line = True  # type: ignore[attr-defined]
    warnings.showwarning = one_line


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _show_plugin_warnings_in_one_line()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except VoldefenseError as err:
        print(f"voldefense {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the environment (a full disk, a folder without permission), not a bug
        print(f"voldefense {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"voldefense {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - not a user error: a bug, shown in full so it can be reported
        traceback.print_exc()
        print(
            f"voldefense {args.command}: internal error (a bug, not a problem with your input); please report "
            f"this at {issues_url()} with the traceback above",
            file=sys.stderr,
        )
        return 1


def issues_url() -> str:
    """Where to report a bug: the installed distribution's ``Issues`` project URL."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("voldefense").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("issues", "bug tracker", "bugs"):
            return url.strip()
    return "the voldefense issue tracker"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

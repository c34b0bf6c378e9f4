"""The `voldefense` command line. Each subcommand lives in `voldefense.commands.<name>` with
`add_arguments(parser)` and `main(args) -> int`, imported only when that subcommand runs."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from voldefense.errors import VoldefenseError

SUBCOMMANDS = {
    "plugins": "list every registered plugin (kind, name, origin)",
    "volumize": "write a picture of an image's volume: its patches in rank order",
    "run": "train f and g from a YAML config, attack both and write the report",
    "evaluate": "re-run the evaluation of a finished run on its saved checkpoints",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voldefense", description=__doc__.splitlines()[0])
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
    except KeyboardInterrupt:
        print(f"voldefense {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

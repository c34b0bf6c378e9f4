"""`voldefense plugins [--json]`: list every registered plugin with its kind, name and origin package."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from voldefense.registry import PluginWarning, get_registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list of {kind, name, origin} objects")
    parser.add_argument("--strict", action="store_true", help="fail on any plugin problem instead of warning")


def main(args: argparse.Namespace) -> int:
    # The listing reports every plugin problem itself, below (also when the registry was built earlier in this
    # process): the warnings raised while building it would say each one a second time.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        registry = get_registry(strict=True if args.strict else None)
        entries = registry.entries()
    if args.json:
        rows = [{"kind": e.kind, "name": e.name, "origin": e.origin} for e in entries]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        width_kind = max([len("KIND"), *(len(e.kind) for e in entries)])
        width_name = max([len("NAME"), *(len(e.name) for e in entries)])
        width_origin = max([len("ORIGIN"), *(len(e.origin) for e in entries)])
        print(f"{'KIND':<{width_kind}}  {'NAME':<{width_name}}  {'ORIGIN':<{width_origin}}  DESCRIPTION")
        for e in entries:
            print(f"{e.kind:<{width_kind}}  {e.name:<{width_name}}  {e.origin:<{width_origin}}  {e.description}")
    for origin, message in registry.failures.items():
        print(f"warning: voldefense plugin {origin}: {' '.join(message.split())}", file=sys.stderr)
    return 1 if registry.failures and args.strict else 0

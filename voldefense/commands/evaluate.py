"""`voldefense evaluate` (being implemented)."""

from __future__ import annotations

import argparse

from voldefense.errors import VoldefenseError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    raise VoldefenseError("'voldefense evaluate' is not implemented yet")

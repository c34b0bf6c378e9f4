"""Subcommands of the `voldefense` command line, one module each."""

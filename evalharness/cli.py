"""`evalharness` command line: one subcommand per module in evalharness/commands/.

Each command module defines `add_parser(subparsers)` (registering itself with
`set_defaults(run=...)`) and a `run(args) -> int`. User mistakes raise
one of errors.USER_ERRORS and become one line on stderr with exit code 2, here and nowhere else.
"""
from __future__ import annotations

import argparse
import sys

from .errors import USER_ERRORS, one_line

COMMANDS = ("run", "generate", "execute", "report", "compare", "gate", "export", "prompt", "tasks", "checkpoint")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="evalharness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"evalharness.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"evalharness.commands.{name}":
                raise
            continue  # command not built yet
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as e:
        print(f"evalharness: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalharness: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

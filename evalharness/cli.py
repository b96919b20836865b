"""`evalharness` command line: one subcommand per module in evalharness/commands/.

Each command module defines `add_parser(subparsers)` (registering itself with
`set_defaults(run=...)`) and a `run(args) -> int`. User mistakes raise
one of errors.USER_ERRORS and become one line on stderr with exit code 2, here and nowhere else.
"""
from __future__ import annotations

import argparse
import functools
import os
import signal
import sys

from . import __version__
from .interrupts import exit_code, signals_interrupt

COMMANDS = ("run", "generate", "execute", "report", "compare", "gate", "export", "prompt", "tasks", "checkpoint",
            "repair")
EXIT_STDOUT_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        takes_value = action.nargs != 0
        if (action.option_strings and takes_value and "default" not in text.lower()
                and action.default not in (None, argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


class ArgumentParser(argparse.ArgumentParser):
    """One-line usage errors ("evalharness run: error: ... (see evalharness run --help)"): the
    usage block that argparse prints first would bury the line that matters."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = ArgumentParser(prog="evalharness", description=__doc__.splitlines()[0],
                            epilog="exit codes: 0 ok, 1 gate failed, 2 usage or input error (one line on stderr), "
                                   "130 interrupted (Ctrl-C), 143 terminated (SIGTERM): re-run to resume")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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


def quiet_when_stdout_closes(main):
    """`evalharness ... | head` ends quietly: when the reader of stdout goes away, no BrokenPipeError
    traceback, and exit 141 (as a shell reports for a writer killed by SIGPIPE), never 0 or 1 that a
    gate's caller could take for a verdict. A broken pipe elsewhere is a bug and still raises."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except BrokenPipeError:
            if not _stdout_closed():
                raise
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not fail again
            return EXIT_STDOUT_CLOSED

    return wrapper


def _stdout_closed() -> bool:
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a buffer (in-process capture): not a pipe
        return False
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))


@quiet_when_stdout_closes
def main(argv: list[str] | None = None) -> int:
    with signals_interrupt():  # before the commands load (0.1 s): a Ctrl-C then is no traceback either
        try:
            return _main(argv)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (interrupts.Interrupted)
            stopped = "terminated" if exit_code(e) == 128 + signal.SIGTERM else "interrupted"
            print(f"evalharness: {stopped}; re-run the same command to resume", file=sys.stderr)
            return exit_code(e)


def _main(argv: list[str] | None) -> int:
    from .errors import USER_ERRORS, one_line

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()  # stdout: what there is to choose from; stderr: the one-line error
        print("evalharness: error: no command given (see the commands above)", file=sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:  # an OSError, but no user's: see quiet_when_stdout_closes
        raise
    except USER_ERRORS as e:
        print(f"evalharness: error: {one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

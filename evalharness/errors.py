"""User mistakes: the error types the CLI turns into one line on stderr and exit code 2.

Code raises; only `cli.main` catches, once, everything in USER_ERRORS. A leaf's own
user-facing type (a task the data cannot serve, a sandbox tier this machine lacks, two
reports that cannot be compared) belongs in the tuple; so does OSError, which here is
always an input or output the user named (a read-only --out, a full disk, a missing dir).
"""
from __future__ import annotations

from evalharness.reports import ComparisonError
from evalharness.sandboxes import SandboxUnavailable
from evalharness.tasks import TaskError


class UsageError(Exception):
    """A user mistake (bad flag, bad file, mismatched run directory): exit 2, no traceback."""


USER_ERRORS: tuple[type[BaseException], ...] = (UsageError, TaskError, SandboxUnavailable, ComparisonError, OSError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (a message never spills into a second line of stderr)."""
    return " ".join(str(error).split()) or type(error).__name__

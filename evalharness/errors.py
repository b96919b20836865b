"""The one exception type the CLI turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """A user mistake (bad flag, bad file, mismatched run directory): exit 2, no traceback."""

"""Ctrl-C and SIGTERM end a command cleanly: one line on stderr, exit 130 or 143, nothing lost.

The first SIGINT or SIGTERM raises `Interrupted` (a KeyboardInterrupt) in the main thread, so every
`with` and `finally` on the way out runs: rows flushed, the execution thread stopped and joined,
sandbox workers stopped, the run's lock released last. SIGTERM (a CI runner's timeout) is handled
like Ctrl-C rather than killing the process where it stands, and exits 143 (128 + 15, what a shell
reports for it), so a caller still sees which signal ended the command. A second signal while that
runs exits at once (`os._exit`): as safe as SIGKILL, which a run survives (at most a torn last
line, which readers ignore; sandbox workers die with their lifeline pipe), and no traceback.

Imports nothing heavy: `cli` installs this before it loads the commands.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """The command was stopped by `signum`; code that stops for Ctrl-C stops for it too."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(e: KeyboardInterrupt) -> int:
    """128 + the signal, as a shell reports a process it ended (a bare KeyboardInterrupt: SIGINT)."""
    return 128 + getattr(e, "signum", signal.SIGINT)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted while the block runs (main thread only: signal handlers
    can be set nowhere else); the previous handlers come back after it. Once a signal came, the
    interpreter's exit ignores more: it resets Python's handlers to the default action (death by
    the signal, not the exit code the command returned) but leaves ignored signals ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def again(signum, frame):
        os.write(2, b"evalharness: interrupted again; stopped at once (re-run the same command to resume)\n")
        os._exit(128 + signum)

    def first(signum, frame):
        for s in SIGNALS:
            signal.signal(s, again)
        atexit.register(_ignore, SIGNALS)
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, first)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _ignore(signums) -> None:
    for s in signums:
        signal.signal(s, signal.SIG_IGN)

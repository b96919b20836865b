"""Records crossing the sandbox seam: what to run, under which limits, and the verdict."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

# Every status a verdict can carry. `error` verdicts name the exception type
# in `error_type`; the report shows them as "error:<Type>" (reports.status_label).
STATUSES = (
    "passed",
    "failed",  # an AssertionError escaped the checks
    "error",  # any other exception
    "syntax_error",
    "timeout",
    "out_of_memory",
    "output_limit",
    "sandbox_violation",  # a blocked syscall, file or network access
    "suspicious",  # ran to the end but used introspection / exit machinery
    "harness_error",  # the sandbox itself failed; not the program's fault
)


class SandboxUnavailable(ValueError):
    """A requested sandbox tier cannot run on this machine; the message is one line with the reason."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one program. `cpu_s` is the honest limit; `wall_s` a generous cap."""

    cpu_s: float = 3.0
    wall_s: float | None = None  # default: 2 * cpu_s + 1 (sleeping programs use no CPU)
    memory_mb: int = 4096  # RLIMIT_AS
    output_bytes: int = 1 << 20  # stdout+stderr captured at most; more is output_limit
    file_size_mb: int = 64  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE

    @property
    def wall_cap_s(self) -> float:
        return self.wall_s if self.wall_s is not None else 2 * self.cpu_s + 1


@dataclass(frozen=True)
class Job:
    """One program to run. `key` comes back with its verdict, untouched.

    `keep_output`: return the program's whole stdout+stderr in `Verdict.output` (for
    programs whose output is their answer, e.g. integrity mode's recorded results).
    """

    key: Hashable
    source: str
    limits: Limits = Limits()
    keep_output: bool = False


@dataclass(frozen=True)
class Verdict:
    status: str
    error_type: str | None = None
    detail: str = ""  # short tail of stderr / reason, at most a few hundred chars
    duration_s: float = 0.0
    # stdout+stderr (UTF-8, invalid bytes replaced), at most Limits.output_bytes: only for
    # Job.keep_output, and only when the program ended by itself (no timeout, no output_limit)
    output: str = field(default="", repr=False)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

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
    wall_s: float | None = None  # default: the wall-cap rule below (sleeping programs use no CPU)
    memory_mb: int = 4096  # RLIMIT_AS
    # bytes a program may write to its raw stdout/stderr file descriptors; more is output_limit.
    # print() and sys.stdout/sys.stderr are swallowed in the program (as the reference
    # executors do), so only os.write-style floods reach this cap.
    output_bytes: int = 1 << 20
    file_size_mb: int = 64  # RLIMIT_FSIZE
    open_files: int = 64  # RLIMIT_NOFILE

    # The default wall cap: WALL_PER_CPU * cpu_s + WALL_EXTRA_S.
    WALL_PER_CPU = 2
    WALL_EXTRA_S = 1

    @property
    def wall_cap_s(self) -> float:
        return self.wall_s if self.wall_s is not None else self.WALL_PER_CPU * self.cpu_s + self.WALL_EXTRA_S

    @classmethod
    def wall_cap_rule(cls) -> str:
        return f"{cls.WALL_PER_CPU:g}*cpu+{cls.WALL_EXTRA_S:g} s"


@dataclass(frozen=True)
class Job:
    """One program to run. `key` comes back with its verdict, untouched.

    `keep_output`: return the program's raw stdout+stderr in `Verdict.output` (for
    programs whose output is their answer, e.g. integrity mode's recorded results).

    With `checks`, `source` is only the solution, and the checks judge it from a namespace
    of their own that the solution cannot rebind: `prelude` runs there before the solution
    (trusted dataset code: HumanEval's prompt and test), `names` are copied from the
    solution's namespace after it ran (its functions wrapped, so that every value they
    return is inspected), `modules` are imported before the solution and watched for
    patches; `call_limits[i]` is the CPU seconds the i-th call of a wrapped function may take
    (EvalPlus's per-input limit; over it the program ends as a timeout). Without `checks`,
    `source` is the whole program.
    """

    key: Hashable
    source: str
    limits: Limits = Limits()
    keep_output: bool = False
    checks: str = ""
    prelude: str = ""
    names: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    call_limits: tuple[float, ...] = ()


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

"""The task seam: what every benchmark adapter gives the harness.

A task turns its dataset into ordered `Problem`s, each with the exact prompt a
model sees, cuts a raw completion at the task's stop sequences, and assembles
the test program(s) a sandbox runs. Nothing here knows about models,
sandboxes or reports.
"""
from __future__ import annotations

import ast
import hashlib
import json
import threading
import warnings
from dataclasses import dataclass, field
from typing import ClassVar, Mapping, Sequence


# Every task's version: 2 since verdicts follow the reference executors (main blocks do not run,
# output is swallowed, the checks judge from their own namespace, EvalPlus's time rule), which
# changes some results: a run made by version 1 does not resume under version 2.
TASK_VERSION = "2"


class TaskError(ValueError):
    """A user-facing problem with task data or a task request (one line, exit 2)."""


class NotLiteral(TaskError):
    """A problem whose checks cannot run in the trusted parent; the message is the one-line reason."""


@dataclass(frozen=True)
class LiteralChecks:
    """A problem's checks split for integrity mode: only literal inputs enter the sandbox.

    The sandbox runs `prefix + completion` and calls `entry_point` once per
    entry of `calls`, each the source of a literal `(args, kwargs)` pair. The
    trusted parent execs `setup` in a fresh namespace, binds `target` to a stub
    that replays the recorded results, and execs `checks`. Neither `setup` nor
    `checks` ever enters the sandbox.
    """

    entry_point: str
    calls: tuple[str, ...]  # e.g. "(([1, 2], 3), {})"
    setup: str  # HumanEval: the `test` text; MBPP: test_setup_code (+ test_imports)
    checks: str  # HumanEval: "check(candidate)"; MBPP: the asserts
    target: str  # the name `checks` calls the solution by
    prefix: str = ""  # what the standard program puts before the completion (HumanEval: the prompt)


@dataclass(frozen=True)
class TestProgram:
    """One suite's test program, split so the checks judge with names the completion cannot rebind.

    `text` is the single program the reference executors run (`evalharness prompt --program`
    prints it). The sandbox runs `solution` in a namespace of its own and the checks in
    another: `prelude` (trusted dataset code: HumanEval's prompt and test, the EvalPlus
    checks) runs there before the solution, `names` are then taken from the solution's
    namespace, and `checks` runs last. `modules` are the modules the checks can reach (their
    own imports and the prompt's and reference solution's), watched for patches. `call_limits`
    are executor settings, like a timeout, so they stay out of `text` (and the fingerprint):
    they come from this machine's reference times.
    """

    text: str
    solution: str
    checks: str
    prelude: str = ""
    names: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    call_limits: tuple[float, ...] = ()  # CPU seconds per call of the solution (EvalPlus), not in `text`


@dataclass(frozen=True)
class Problem:
    """One benchmark problem, exactly as the model and the tests will see it."""

    task_id: str
    prompt: str  # the exact text fed to the model
    reference: str  # a completion that must pass (canonical / reference solution)
    entry_point: str | None = None
    data: Mapping = field(default_factory=dict, compare=False, hash=False)  # raw record


@dataclass(frozen=True)
class Task:
    """A named, versioned benchmark variant.

    Subclasses implement `test_programs` (and may override `clean`). `suites` names the
    test programs it returns, in order; they are cumulative: a sample
    passes suite i only when suites 1..i all pass (e.g. EvalPlus
    ("base", "plus")). The harness's headline verdict is the last suite.
    """

    name: str
    version: str
    problems: tuple[Problem, ...]
    stop: tuple[str, ...] = ()
    timeout_s: float = 3.0
    default_k: tuple[int, ...] = (1, 10, 100)
    suites: tuple[str, ...] = ("test",)
    source: str = ""  # where the problems came from (file path or hub id)
    literal_checks_supported: ClassVar[bool] = False  # see literal_checks

    def problem(self, task_id: str) -> Problem:
        index = self._index()
        if task_id not in index:
            raise TaskError(f"unknown task_id {task_id!r} for task {self.name!r}")
        return index[task_id]

    def _index(self) -> dict[str, Problem]:
        cached = self.__dict__.get("_index_cache")
        if cached is None:
            cached = {p.task_id: p for p in self.problems}
            object.__setattr__(self, "_index_cache", cached)
        return cached

    def clean(self, problem: Problem, raw_completion: str) -> str:
        """Cut a raw model completion at the first stop sequence."""
        return truncate_at_stop(raw_completion, self.stop)

    def programs(self, problem: Problem, completion: str) -> dict[str, str]:
        """The test program of each suite for `completion`, keyed by suite name, as one text."""
        return {suite: program.text for suite, program in self.test_programs(problem, completion).items()}

    def test_programs(self, problem: Problem, completion: str) -> dict[str, TestProgram]:
        """The test program of each suite for `completion`, split into solution and checks."""
        raise NotImplementedError

    def literal_checks(self, problem: Problem) -> LiteralChecks:
        """The problem's checks for integrity mode, or NotLiteral saying why they cannot be split.

        Only tasks with `literal_checks_supported` (single-suite, assert-based) implement it.
        """
        raise NotLiteral(f"{problem.task_id}: task {self.name!r} has no literal checks")

    def timeout_for(self, problem: Problem, suite: str, base_s: float) -> float:
        """CPU seconds one program may take when the run allows `base_s` (the task's timeout_s
        unless --timeout); tasks whose references are slow on some problems raise it there."""
        return base_s

    def fingerprint(self) -> str:
        """Hash of everything that decides a score: prompts, tests, suites, stops.

        Computed once per task object (EvalPlus programs run to megabytes); a copy
        made with dataclasses.replace (e.g. --limit) hashes its own problems.
        """
        cached = self.__dict__.get("_fingerprint_cache")
        if cached is None:
            h = hashlib.sha256()
            h.update(json.dumps([self.name, self.version, list(self.stop), list(self.suites)]).encode())
            for p in self.problems:
                progs = self.programs(p, "<<COMPLETION>>")
                h.update(json.dumps([p.task_id, p.prompt, progs], sort_keys=True).encode())
            cached = h.hexdigest()[:16]
            object.__setattr__(self, "_fingerprint_cache", cached)
        return cached

    def describe(self) -> dict:
        """Manifest entry for this task."""
        return {
            "name": self.name,
            "version": self.version,
            "fingerprint": self.fingerprint(),
            "n_problems": len(self.problems),
            "stop": list(self.stop),
            "timeout_s": self.timeout_s,
            "suites": list(self.suites),
            "source": self.source,
        }


def first_stop(text: str, stop: Sequence[str]) -> int | None:
    """Index of the earliest stop sequence in `text` (empty ones never match), or None. The one
    definition of where a completion ends: the decoder halts a sample when it holds one, and
    truncate_at_stop cuts there."""
    hits = [i for i in (text.find(s) for s in stop if s) if i != -1]
    return min(hits) if hits else None


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut `text` at the earliest occurrence of any stop sequence."""
    cut = first_stop(text, stop)
    return text if cut is None else text[:cut]


def imported_modules(*sources: str, skip: frozenset = frozenset({"typing", "sys", "__future__"})) -> tuple[str, ...]:
    """Every module any of `sources` imports (at any depth), sorted. Left out: `typing` (prompts
    import it for annotations only; watching it would cost every call of the solution), `sys`
    (the sandbox sets its streams; nothing in it judges) and `__future__`."""
    found = set()
    for source in sources:
        tree = parse_quietly(source)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
    return tuple(sorted(found - skip))


def parse_quietly(source: str) -> ast.Module | None:
    """The AST of dataset code, or None where it does not parse."""
    try:
        return parse_source(source)
    except (SyntaxError, ValueError):
        return None


_PARSE_LOCK = threading.Lock()


def parse_source(source: str, mode: str = "exec") -> ast.AST:
    """ast.parse without warnings (datasets hold invalid escapes like "\\w" in plain strings), one
    call at a time: CPython 3.11 keeps the AST converter's recursion depth in interpreter-wide state,
    so two threads parsing at once can fail with "SystemError: AST constructor recursion depth
    mismatch" (seen in CI, where the hostile-program tests build three tiers' jobs in parallel)."""
    with _PARSE_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source, mode=mode)

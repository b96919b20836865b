"""Task adapters: benchmarks turned into prompts, cleaned completions and test programs."""
from __future__ import annotations

from typing import Callable, NamedTuple

from .base import LiteralChecks, NotLiteral, Problem, Task, TaskError, TestProgram, first_stop, truncate_at_stop
from .evalplus import EvalPlusTask, load_humaneval_plus, load_mbpp_plus
from .humaneval import HumanEvalTask, load_humaneval
from .mbpp import (MbppBigcodeTask, MbppSanitizedTask, MbppTask, load_mbpp, load_mbpp_bigcode,
                   load_mbpp_challenge, load_mbpp_sanitized)



class TaskEntry(NamedTuple):
    """A registered task: its loader, a one-line description, and the Task class the loader returns
    (class-level facts such as `literal_checks_supported` are known without loading any data)."""

    loader: Callable[..., Task]
    description: str
    kind: type[Task]


# Every loader takes the keywords problems_file=None and data_file=None (one local data file, two spellings).
TASKS: dict[str, TaskEntry] = {
    "humaneval": TaskEntry(load_humaneval, "HumanEval, 164 problems, zero-shot prompt as is (Chen et al. 2021)",
                           HumanEvalTask),
    "humaneval-plus": TaskEntry(load_humaneval_plus, "HumanEval+ (EvalPlus): HumanEval prompts, outputs vs the "
                                "reference on base + plus inputs", EvalPlusTask),
    "mbpp": TaskEntry(load_mbpp, "MBPP test split (500), 3-shot prompt of Austin et al. 2021, stop at [DONE]", MbppTask),
    "mbpp-challenge": TaskEntry(load_mbpp_challenge, "mbpp with the challenge_test_list tests added", MbppTask),
    "mbpp-sanitized": TaskEntry(load_mbpp_sanitized, "MBPP sanitized test split (257), same 3-shot format, "
                                "test_imports", MbppSanitizedTask),
    "mbpp-bigcode": TaskEntry(load_mbpp_bigcode, "MBPP test split, zero-shot docstring prompt of "
                              "bigcode-evaluation-harness", MbppBigcodeTask),
    "mbpp-plus": TaskEntry(load_mbpp_plus, "MBPP+ (EvalPlus, 378): docstring prompts, outputs vs the reference, "
                           "base + plus", EvalPlusTask),
}


def load_task(name: str, **options) -> Task:
    """Load a task by name; unknown names are a TaskError listing the known ones."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    entry = TASKS[name]
    task = entry.loader(**options)
    assert isinstance(task, entry.kind), (name, type(task))
    return task


__all__ = ["LiteralChecks", "NotLiteral", "Problem", "Task", "TaskError", "TaskEntry", "TestProgram", "TASKS", "load_task", "first_stop", "truncate_at_stop",
           "HumanEvalTask", "load_humaneval", "MbppTask", "MbppBigcodeTask", "MbppSanitizedTask",
           "load_mbpp", "load_mbpp_challenge", "load_mbpp_bigcode", "load_mbpp_sanitized",
           "EvalPlusTask", "load_humaneval_plus", "load_mbpp_plus"]

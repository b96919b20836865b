"""Task adapters: benchmarks turned into prompts, cleaned completions and test programs."""
from __future__ import annotations

from typing import Callable

from .base import Problem, Task, TaskError, truncate_at_stop
from .humaneval import HumanEvalTask, load_humaneval

# name -> (loader, one-line description). Loaders take keyword options
# (problems_file=..., data_file=...) and ignore none silently.
TASKS: dict[str, tuple[Callable[..., Task], str]] = {
    "humaneval": (lambda problems_file=None, data_file=None: load_humaneval(problems_file or data_file),
                  "HumanEval, 164 problems, zero-shot (Chen et al. 2021)"),
}


def load_task(name: str, **options) -> Task:
    """Load a task by name; unknown names are a TaskError listing the known ones."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    loader, _ = TASKS[name]
    return loader(**options)


__all__ = ["Problem", "Task", "TaskError", "TASKS", "load_task", "truncate_at_stop",
           "HumanEvalTask", "load_humaneval"]

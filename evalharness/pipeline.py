"""The stages of a run: execute samples in the sandbox, and build the report.

Stages pass typed records (Sample -> Result) and stream: `execute` consumes
its samples lazily, so a generator still producing samples overlaps with
execution.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Sequence

from evalharness import reports
from evalharness.sandboxes import Job, Limits
from evalharness.tasks import Problem, Task

from . import integrity
from .records import Result, Sample
from .runstore import RunDir


def execute(task: Task, samples: Iterable[Sample], pool, limits: Limits,
            served: integrity.Served | None = None) -> Iterator[Result]:
    """Run every suite of every sample through `pool`; yield one Result per sample as it completes.

    With `served` (strict integrity mode) the sandbox runs only the solution on literal
    inputs and the parent judges its recorded results with the problem's checks.
    """
    waiting: dict[tuple, dict] = {}

    def jobs() -> Iterator[Job]:
        for sample in samples:
            problem = task.problem(sample.task_id)
            if served is None:
                programs = task.programs(problem, sample.completion)
            else:  # strict: one program, the solution fed literal inputs (served tasks have one suite)
                programs = {task.suites[0]: integrity.program(served.checks[problem.task_id], sample.completion)}
            for suite, source in programs.items():
                # a task may need more CPU for some problems (EvalPlus: 4x the reference's time)
                cpu_s = task.timeout_for(problem, suite, limits.cpu_s)
                yield Job(key=(sample.key, suite), source=source, keep_output=served is not None,
                          limits=limits if cpu_s == limits.cpu_s else replace(limits, cpu_s=cpu_s))

    for (sample_key, suite), verdict in pool.run(jobs()):
        if served is not None:
            verdict = integrity.judge(served.checks[sample_key[0]], verdict)
        verdicts = waiting.setdefault(sample_key, {})
        verdicts[suite] = verdict
        if len(verdicts) == len(task.suites):
            del waiting[sample_key]
            yield Result.from_verdicts(sample_key, verdicts, task.suites)


def write_report(run: RunDir, task: Task, ks: tuple[int, ...], confidence: float = 0.9,
                 speed: dict | None = None, headline: dict[int, float] | None = None,
                 served: integrity.Served | None = None) -> dict:
    """Build report.json/.md/.html from the run's results (the source of truth on disk)."""
    report = reports.build_report(
        run.results(),
        task=task.name,
        task_fingerprint=task.fingerprint(),
        problem_ids=[p.task_id for p in task.problems],
        ks=ks,
        confidence=confidence,
        speed=speed,
        temperature_for_k=headline,
        integrity=served.describe() if served is not None else None,
    )
    run.write_json("report.json", report)
    run.write_text("report.md", reports.render_markdown(report))
    run.write_text("report.html", reports.render_html(report))
    return report



@dataclass(frozen=True)
class SamplingPass:
    """One sampling pass of a run: n samples per problem at one temperature (greedy when 0)."""

    temperature: float
    n: int


@dataclass(frozen=True)
class GenerationWork:
    """The samples still to generate for one problem in one pass."""

    problem: Problem
    sampling: SamplingPass
    sample_idxs: tuple[int, ...]


def plan_generation(task: Task, passes: Sequence[SamplingPass], done: set[tuple]) -> list[GenerationWork]:
    """Every (problem, pass) with the sample indices not yet in `done` (resume skips the rest)."""
    work = []
    for sampling in passes:
        for problem in task.problems:
            missing = tuple(i for i in range(sampling.n)
                            if (problem.task_id, i, sampling.temperature) not in done)
            if missing:
                work.append(GenerationWork(problem, sampling, missing))
    return work


def generate(task: Task, generator, work: Sequence[GenerationWork], settings, seed: int,
             batch_size: int | None) -> Iterator[Sample]:
    """Generate the planned samples, yielding each problem's samples as soon as they are done."""
    from dataclasses import replace

    from .decoding import Request
    from .seeds import sample_seed

    for temperature in dict.fromkeys(w.sampling.temperature for w in work):
        group = [w for w in work if w.sampling.temperature == temperature]
        requests = [
            Request(prompt=w.problem.prompt, n=len(w.sample_idxs),
                    seeds=tuple(sample_seed(seed, w.problem.task_id, i, temperature) for i in w.sample_idxs),
                    stop=task.stop)
            for w in group
        ]
        pass_settings = replace(settings, temperature=temperature)
        for index, completions in generator.generate(requests, pass_settings, batch_size):
            w = group[index]
            for sample_idx, c in zip(w.sample_idxs, completions):
                yield Sample(
                    w.problem.task_id, sample_idx, task.clean(w.problem, c.raw_text), temperature,
                    {"raw_completion": c.raw_text, "prompt_sha": _sha(w.problem.prompt), "tokens": c.tokens,
                     "finish_reason": c.finish_reason, "stats": c.stats},
                )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]

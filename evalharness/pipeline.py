"""The stages of a run: plan, generate, execute; and the main job that overlaps them, resumably.

Stages pass typed records (Sample -> Result) and stream. In `evaluate`, generation runs in
the calling thread (it owns the model) and execution in a second thread that feeds the
sandbox pool from a queue, so a run takes about max(generation, execution) rather than their
sum. Everything finished is on disk: re-running the same command skips it. Under torchrun
each rank generates its share into its own shard file; rank 0 merges and executes.
"""
from __future__ import annotations

import hashlib
import queue
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from evalharness import reports
from evalharness.sandboxes import Job, Limits, Verdict
from evalharness.tasks import Problem, Task, TestProgram

from .progress import Progress
from .records import Result, Sample, sample_row_problem
from .runspec import DecodingSpec, RunSpec, SamplingPass
from .runstore import JsonlAppender, RunDir, read_jsonl, row_key
from .scoring import Rejudge, Scoring

# ------------------------------------------------------------------------------------------- plan


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


# --------------------------------------------------------------------------------------- generate


def generate(task: Task, generator, work: Sequence[GenerationWork], decoding: DecodingSpec,
             seed: int) -> Iterator[Sample]:
    """Generate the planned samples, yielding each problem's samples as soon as they are done."""
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
        settings = replace(decoding.settings, temperature=temperature)
        for index, completions in generator.generate(requests, settings, decoding.batch_size):
            w = group[index]
            for sample_idx, c in zip(w.sample_idxs, completions):
                yield Sample(
                    w.problem.task_id, sample_idx, task.clean(w.problem, c.raw_text), temperature,
                    {"raw_completion": c.raw_text, "prompt_sha": _sha(w.problem.prompt), "tokens": c.tokens,
                     "finish_reason": c.finish_reason, "stats": c.stats},
                )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------- execute


def execute(scoring: Scoring, samples: Iterable[Sample], pool, limits: Limits,
            cancel: threading.Event | None = None) -> Iterator[Result]:
    """Judge every sample with `scoring`, its programs run through `pool`; yield one Result per sample
    as it completes. Samples the scoring hands on (Rejudge) are judged again once the stream is
    done (they are rare); their row carries the decision, e.g. "suspicious in standard mode (...);
    re-judged in strict mode: passed". Setting `cancel` ends the stream within about a second,
    programs still running abandoned (see SandboxPool.run)."""
    deferred: list[tuple[Sample, Rejudge]] = []
    for sample, outcome in _judge(scoring, samples, pool, limits, cancel):
        if isinstance(outcome, Rejudge):
            deferred.append((sample, outcome))
        else:
            yield outcome
    while deferred and not (cancel is not None and cancel.is_set()):
        groups: dict[int, tuple[Scoring, list[tuple[Sample, Rejudge]]]] = {}
        for sample, rejudge in deferred:
            groups.setdefault(id(rejudge.scoring), (rejudge.scoring, []))[1].append((sample, rejudge))
        deferred = []
        for again, items in groups.values():
            notes = {sample.key: rejudge.note for sample, rejudge in items}
            for sample, outcome in _judge(again, [sample for sample, _ in items], pool, limits, cancel):
                note = notes[sample.key]
                if isinstance(outcome, Rejudge):
                    deferred.append((sample, replace(outcome, note=f"{note}; {outcome.note}")))
                else:
                    label = reports.status_label(outcome)
                    yield replace(outcome, decision=f"{note}; re-judged in {again.name} mode: {label}")


def job_for(key, program: TestProgram | str, limits: Limits, keep_output: bool = False) -> Job:
    """The sandbox job for a task's test program (split into solution and checks) or a whole source."""
    if isinstance(program, str):
        return Job(key=key, source=program, limits=limits, keep_output=keep_output)
    return Job(key=key, source=program.solution, limits=limits, keep_output=keep_output, checks=program.checks,
               prelude=program.prelude, names=program.names, modules=program.modules,
               call_limits=program.call_limits)


def _judge(scoring: Scoring, samples: Iterable[Sample], pool, limits: Limits,
           cancel: threading.Event | None = None) -> Iterator[tuple[Sample, object]]:
    """(sample, Result or Rejudge) for each sample, in completion order."""
    task = scoring.task
    waiting: dict[tuple, tuple[Sample, Problem, dict[str, Verdict], int]] = {}

    def jobs() -> Iterator[Job]:
        for sample in samples:
            problem = task.problem(sample.task_id)
            programs = scoring.programs(problem, sample.completion)
            waiting[sample.key] = (sample, problem, {}, len(programs))
            for suite, program in programs.items():
                # a task may need more CPU for some problems (EvalPlus: 4x the reference's time)
                cpu_s = task.timeout_for(problem, suite, limits.cpu_s)
                yield job_for((sample.key, suite), program.source, keep_output=program.keep_output,
                              limits=limits if cpu_s == limits.cpu_s else replace(limits, cpu_s=cpu_s))

    for (key, suite), verdict in pool.run(jobs(), cancel=cancel):
        sample, problem, verdicts, expected = waiting[key]
        verdicts[suite] = verdict
        if len(verdicts) == expected:
            del waiting[key]
            yield sample, scoring.judge(key, problem, verdicts)


# ------------------------------------------------------------------------------------ the main job


@dataclass(frozen=True)
class Shard:
    """This process's place among torchrun ranks (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1


_END = object()


def evaluate(run: RunDir, spec: RunSpec, generator, pool, quiet: bool = False, shard: Shard = Shard()) -> dict | None:
    """Generate what is missing, execute what has no result; return the speed record (rank 0)."""
    if shard.world > 1:
        return _evaluate_distributed(run, spec, generator, pool, quiet, shard)
    t_start = time.monotonic()
    stored = _unique(run.samples())
    results_done = {row_key(r) for r in run.results()}
    pending = [Sample.from_row(r) for r in stored if row_key(r) not in results_done]
    work = plan_generation(spec.task, spec.decoding.passes, {row_key(r) for r in stored})

    samples_q: queue.Queue = queue.Queue()
    exec_state = {"error": None, "programs": 0, "end": None}
    stop = threading.Event()  # set when the main thread fails or is interrupted: execution ends early
    # Waited on instead of Thread.join: Python 3.11's join, once interrupted by Ctrl-C, takes the
    # thread for finished (its lock released on the way out) and returns at once the next time.
    executed = threading.Event()

    def sample_stream():
        for item in pending:
            if stop.is_set():
                return
            yield item
        while not stop.is_set():
            item = samples_q.get()
            if item is _END:
                return
            yield item

    n_to_execute = len(pending) + sum(len(w.sample_idxs) for w in work)

    def execute_all():
        try:
            exec_state["programs"] = _execute_to(run, spec, sample_stream(), pool, n_to_execute, quiet, cancel=stop)
        except BaseException as e:  # surfaced in the main thread
            exec_state["error"] = e
        finally:
            exec_state["end"] = time.monotonic()
            executed.set()

    executor = threading.Thread(target=execute_all, name="execute", daemon=True)
    executor.start()
    generated: list[Sample] = []
    try:
        t_gen = time.monotonic()
        # A result can reach disk before its sample row did (separate flush batches): such a
        # regenerated sample is identical (seeded) and is not executed twice.
        _generate_to(run.samples_path, spec, generator, work, quiet,
                     on_sample=lambda s: (generated.append(s), s.key in results_done or samples_q.put(s)))
        gen_s = time.monotonic() - t_gen
        samples_q.put(_END)
        executed.wait()  # Ctrl-C lands here too while execution finishes
    except BaseException:
        # Execution ends, its rows flushed, before the caller closes the pool and releases the
        # run's lock: no row is written, and no worker started, after that.
        stop.set()
        samples_q.put(_END)
        executed.wait()
        raise
    if exec_state["error"] is not None:
        raise exec_state["error"]
    return speed_record(_decode_stats(generated), gen_s, exec_state["programs"],
                        exec_state["end"] - t_start, time.monotonic() - t_start)


def generate_only(run: RunDir, spec: RunSpec, generator, quiet: bool = False, shard: Shard = Shard()) -> dict | None:
    """Fill the run's samples.jsonl (resumably) without executing anything; the speed record on rank 0.
    Under torchrun every rank generates its share and rank 0 merges (see _generate_sharded)."""
    if shard.world > 1:
        gathered = _generate_sharded(run, spec, generator, quiet, shard)
        if shard.rank != 0:
            return None
        elapsed = max(g for g, _ in gathered)
        return speed_record([row for _, rows in gathered for row in rows], elapsed, 0, 0.0, elapsed)
    work = plan_generation(spec.task, spec.decoding.passes, {row_key(r) for r in run.samples()})
    generated: list[Sample] = []
    t0 = time.monotonic()
    _generate_to(run.samples_path, spec, generator, work, quiet, on_sample=generated.append)
    elapsed = time.monotonic() - t0
    return speed_record(_decode_stats(generated), elapsed, 0, 0.0, elapsed)


def execute_samples(run: RunDir, spec: RunSpec, samples: Sequence[Sample], pool, quiet: bool = False) -> dict:
    """Record the samples of the run's problems (new keys only) and execute those without a result;
    return the speed record of this invocation."""
    wanted = {p.task_id for p in spec.task.problems}
    samples = [s for s in samples if s.task_id in wanted]  # --limit, strict mode's served problems
    stored = {row_key(row) for row in run.samples()}
    with JsonlAppender(run.samples_path) as log:
        log.extend(s.to_row() for s in samples if s.key not in stored)
    done = {row_key(row) for row in run.results()}
    todo = [s for s in samples if s.key not in done]
    t0 = time.monotonic()
    programs = _execute_to(run, spec, todo, pool, len(todo), quiet)
    elapsed = time.monotonic() - t0
    return {"execute_s": round(elapsed, 3), "programs": programs,
            "programs_per_s": round(programs / elapsed, 2) if programs and elapsed > 0 else None}


def _execute_to(run: RunDir, spec: RunSpec, samples: Iterable[Sample], pool, total: int, quiet: bool,
                cancel: threading.Event | None = None) -> int:
    """Append a result row for every sample (until `cancel` is set); return how many were executed."""
    count = 0
    with JsonlAppender(run.results_path) as log, Progress(total, "execute", quiet=quiet) as progress:
        for result in execute(spec.scoring, samples, pool, spec.limits, cancel):
            log.append(result.to_row())
            count += 1
            progress.update()
    return count


def _generate_to(path: Path, spec: RunSpec, generator, work: Sequence[GenerationWork], quiet: bool,
                 on_sample=None) -> None:
    total = sum(len(w.sample_idxs) for w in work)
    if not total:
        return
    with JsonlAppender(path) as log, Progress(total, "generate", quiet=quiet) as progress:
        for sample in generate(spec.task, generator, work, spec.decoding, spec.seed):
            log.append(sample.to_row())
            progress.update()
            if on_sample is not None:
                on_sample(sample)


def _evaluate_distributed(run: RunDir, spec: RunSpec, generator, pool, quiet: bool, shard: Shard) -> dict | None:
    t_start = time.monotonic()
    gathered = _generate_sharded(run, spec, generator, quiet, shard)
    if shard.rank != 0:
        return None
    nothing_to_generate = replace(spec, decoding=replace(spec.decoding, passes=()))
    speed = evaluate(run, nothing_to_generate, generator, pool, quiet)
    decode_stats = [row for _, rows in gathered for row in rows]
    gen_wall = max(g for g, _ in gathered)
    return speed_record(decode_stats, gen_wall, speed["programs"], speed["execute_s"], time.monotonic() - t_start)


def _generate_sharded(run: RunDir, spec: RunSpec, generator, quiet: bool,
                      shard: Shard) -> list[tuple[float, list[dict]]]:
    """This rank's share of the missing samples into its own shard file; then rank 0 merges every
    shard into samples.jsonl (one writer). Returns each rank's (generation seconds, decode stats)."""
    import torch.distributed as dist

    shard_paths = [run.path / f"samples.rank{r}.jsonl" for r in range(shard.world)]
    stored = run.samples() + [row for p in shard_paths for row in read_jsonl(p, check=sample_row_problem)]
    work = plan_generation(spec.task, spec.decoding.passes, {row_key(r) for r in stored})
    mine = work[shard.rank::shard.world]
    generated: list[Sample] = []
    t_gen = time.monotonic()
    _generate_to(shard_paths[shard.rank], spec, generator, mine, quiet or shard.rank > 0, on_sample=generated.append)
    gen_s = time.monotonic() - t_gen
    gathered: list = [None] * shard.world
    dist.all_gather_object(gathered, (gen_s, _decode_stats(generated)))
    dist.barrier()
    if shard.rank == 0:
        merge_shards(run, shard_paths)
    return gathered


def merge_shards(run: RunDir, shard_paths: Sequence[Path]) -> None:
    """Fold rank shard files into samples.jsonl (keys already there win), then remove them."""
    have = {row_key(r) for r in run.samples()}
    with JsonlAppender(run.samples_path) as log:
        for path in shard_paths:
            for row in read_jsonl(path, check=sample_row_problem):
                if row_key(row) not in have:
                    have.add(row_key(row))
                    log.append(row)
    for path in shard_paths:
        path.unlink(missing_ok=True)


def _unique(rows: list[dict]) -> list[dict]:
    return list({row_key(r): r for r in rows}.values())


def _decode_stats(samples: Sequence[Sample]) -> list[dict]:
    """Per-sample token count and decoding stats: {"tokens": int, "forwards": int, ...}."""
    return [{"tokens": s.extra.get("tokens", 0), **(s.extra.get("stats") or {})} for s in samples]


def speed_record(stats: Sequence[dict], generate_s: float, programs: int, execute_s: float,
                 total_s: float) -> dict:
    """The report's `speed` object for what this invocation did."""
    speed = reports.decoding_totals(list(stats))
    tokens = speed["tokens_generated"]
    return {
        **speed,
        "tokens_per_s": round(tokens / generate_s, 2) if generate_s > 0 and tokens else None,
        "programs": programs,
        "programs_per_s": round(programs / execute_s, 2) if programs and execute_s > 0 else None,
        "generate_s": round(generate_s, 3),
        "execute_s": round(execute_s, 3),
        "total_s": round(total_s, 3),
    }

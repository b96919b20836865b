"""The main job: generate samples and execute them at the same time, resumably.

Generation runs in the calling thread (it owns the model); execution runs in a
second thread that feeds the sandbox pool from a queue, so a run takes about
max(generation, execution) rather than their sum. Everything finished is on
disk: re-running the same command skips it. Under torchrun each rank
generates its share into its own shard file; rank 0 merges and executes.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from evalharness import reports
from evalharness.sandboxes import Limits
from evalharness.tasks import Task

from .integrity import Served
from .pipeline import GenerationWork, SamplingPass, execute, generate, plan_generation
from .progress import Progress
from .records import Sample
from .runstore import JsonlAppender, RunDir, key_of, read_jsonl


@dataclass(frozen=True)
class GenerationPlan:
    passes: tuple[SamplingPass, ...]
    settings: object  # decoding.SamplingSettings; temperature is set per pass
    seed: int
    batch_size: int | None  # decoding slots; None: the engine sizes them (--batch-size auto)


@dataclass(frozen=True)
class Shard:
    """This process's place among torchrun ranks (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1


_END = object()


def evaluate(run: RunDir, task: Task, generator, plan: GenerationPlan, pool, limits: Limits,
             quiet: bool = False, shard: Shard = Shard(), served: Served | None = None) -> dict | None:
    """Generate what is missing, execute what has no result; return the speed record (rank 0).
    `served`: strict integrity mode (see integrity.py); `task` is then the served problems."""
    if shard.world > 1:
        return _evaluate_distributed(run, task, generator, plan, pool, limits, quiet, shard, served)
    t_start = time.monotonic()
    stored = _unique(run.samples())
    results_done = {key_of(r) for r in run.results()}
    pending = [Sample.from_row(r) for r in stored if key_of(r) not in results_done]
    work = plan_generation(task, plan.passes, {key_of(r) for r in stored})

    samples_q: queue.Queue = queue.Queue()
    exec_state = {"error": None, "programs": 0, "end": None}
    stop = threading.Event()

    def sample_stream():
        yield from pending
        while not stop.is_set():
            item = samples_q.get()
            if item is _END:
                return
            yield item

    n_to_execute = len(pending) + sum(len(w.sample_idxs) for w in work)

    def execute_all():
        try:
            with JsonlAppender(run.results_path) as log, \
                    Progress(n_to_execute, "execute", quiet=quiet) as progress:
                for result in execute(task, sample_stream(), pool, limits, served):
                    log.append(result.to_row())
                    exec_state["programs"] += 1
                    progress.update()
        except BaseException as e:  # surfaced in the main thread
            exec_state["error"] = e
        finally:
            exec_state["end"] = time.monotonic()

    executor = threading.Thread(target=execute_all, name="execute", daemon=True)
    executor.start()
    generated: list[Sample] = []
    try:
        t_gen = time.monotonic()
        # A result can reach disk before its sample row did (separate flush batches): such a
        # regenerated sample is identical (seeded) and is not executed twice.
        _generate_to(run.samples_path, task, generator, work, plan, quiet,
                     on_sample=lambda s: (generated.append(s),
                                          s.key in results_done or samples_q.put(s)))
        gen_s = time.monotonic() - t_gen
    except BaseException:
        stop.set()
        samples_q.put(_END)
        raise
    samples_q.put(_END)
    executor.join()
    if exec_state["error"] is not None:
        raise exec_state["error"]
    return speed_record(_decode_stats(generated), gen_s, exec_state["programs"],
                        exec_state["end"] - t_start, time.monotonic() - t_start)


def _generate_to(path: Path, task: Task, generator, work: Sequence[GenerationWork], plan: GenerationPlan,
                 quiet: bool, on_sample=None) -> None:
    total = sum(len(w.sample_idxs) for w in work)
    if not total:
        return
    with JsonlAppender(path) as log, Progress(total, "generate", quiet=quiet) as progress:
        for sample in generate(task, generator, work, plan.settings, plan.seed, plan.batch_size):
            log.append(sample.to_row())
            progress.update()
            if on_sample is not None:
                on_sample(sample)


def _evaluate_distributed(run: RunDir, task: Task, generator, plan: GenerationPlan, pool, limits: Limits,
                          quiet: bool, shard: Shard, served: Served | None) -> dict | None:
    t_start = time.monotonic()
    gathered = _generate_sharded(run, task, generator, plan, quiet, shard)
    if shard.rank != 0:
        return None
    speed = evaluate(run, task, generator, GenerationPlan((), plan.settings, plan.seed, plan.batch_size),
                     pool, limits, quiet, served=served)
    decode_stats = [row for _, rows in gathered for row in rows]
    gen_wall = max(g for g, _ in gathered)
    return speed_record(decode_stats, gen_wall, speed["programs"], speed["execute_s"],
                        time.monotonic() - t_start)


def _generate_sharded(run: RunDir, task: Task, generator, plan: GenerationPlan, quiet: bool,
                      shard: Shard) -> list[tuple[float, list[dict]]]:
    """This rank's share of the missing samples into its own shard file; then rank 0 merges every
    shard into samples.jsonl (one writer). Returns each rank's (generation seconds, decode stats)."""
    import torch.distributed as dist

    shard_paths = [run.path / f"samples.rank{r}.jsonl" for r in range(shard.world)]
    stored = run.samples() + [row for p in shard_paths for row in read_jsonl(p)]
    work = plan_generation(task, plan.passes, {key_of(r) for r in stored})
    mine = work[shard.rank::shard.world]
    generated: list[Sample] = []
    t_gen = time.monotonic()
    _generate_to(shard_paths[shard.rank], task, generator, mine, plan, quiet or shard.rank > 0,
                 on_sample=generated.append)
    gen_s = time.monotonic() - t_gen
    gathered: list = [None] * shard.world
    dist.all_gather_object(gathered, (gen_s, _decode_stats(generated)))
    dist.barrier()
    if shard.rank == 0:
        merge_shards(run, shard_paths)
    return gathered


def merge_shards(run: RunDir, shard_paths: Sequence[Path]) -> None:
    """Fold rank shard files into samples.jsonl (keys already there win), then remove them."""
    have = {key_of(r) for r in run.samples()}
    with JsonlAppender(run.samples_path) as log:
        for path in shard_paths:
            for row in read_jsonl(path):
                if key_of(row) not in have:
                    have.add(key_of(row))
                    log.append(row)
    for path in shard_paths:
        path.unlink(missing_ok=True)


def _unique(rows: list[dict]) -> list[dict]:
    return list({key_of(r): r for r in rows}.values())


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


def generate_only(run: RunDir, task: Task, generator, plan: GenerationPlan, quiet: bool = False,
                  shard: Shard = Shard()) -> dict | None:
    """Fill the run's samples.jsonl (resumably) without executing anything; the speed record on rank 0.
    Under torchrun every rank generates its share and rank 0 merges (see _generate_sharded)."""
    if shard.world > 1:
        gathered = _generate_sharded(run, task, generator, plan, quiet, shard)
        if shard.rank != 0:
            return None
        elapsed = max(g for g, _ in gathered)
        return speed_record([row for _, rows in gathered for row in rows], elapsed, 0, 0.0, elapsed)
    work = plan_generation(task, plan.passes, {key_of(r) for r in run.samples()})
    generated: list[Sample] = []
    t0 = time.monotonic()
    _generate_to(run.samples_path, task, generator, work, plan, quiet, on_sample=generated.append)
    elapsed = time.monotonic() - t0
    return speed_record(_decode_stats(generated), elapsed, 0, 0.0, elapsed)

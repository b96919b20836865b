"""`evalharness generate --model PATH --task NAME`: generation only, scored later by `execute`.

Under `torchrun --nproc-per-node G -m evalharness -- generate ...` every rank generates its share
on its own device into its own shard file; rank 0 merges them into samples.jsonl.
"""
from __future__ import annotations

import argparse
import sys

from ..pipeline import generate_only
from ..runstore import GENERATION, RunDir
from .options import add_decoding_options, add_model_options, add_task_options, scoring_from_args
from .run import barrier, decoding_from_args, prepare, sharded


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate samples into a run directory (no execution)",
                       description=__doc__)
    add_model_options(p)
    add_task_options(p)
    add_decoding_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--out", help="run directory (default: runs/<task>-<model>-<settings hash>)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    scoring, decoding = scoring_from_args(args), decoding_from_args(args)
    with sharded() as shard:
        spec, generator = prepare(args, "generate", scoring, decoding)
        # rank 0's open() takes the run's lock, held until generation.json is written
        with spec.open() if shard.rank == 0 else RunDir(spec.out) as run_dir:
            barrier(shard)
            speed = generate_only(run_dir, spec, generator, quiet=args.quiet, shard=shard)
            if speed is None:  # a rank other than 0: rank 0 reports
                return 0
            run_dir.write_json(GENERATION, speed)  # `execute` of these samples reports this speed
    print(f"{speed['samples_generated']} samples generated ({speed['tokens_generated']} tokens, "
          f"{speed['tokens_per_s']} tokens/s) -> {run_dir.samples_path}", file=sys.stdout)
    print(f"score them with: evalharness execute {run_dir.samples_path} --task {spec.task.name}", file=sys.stdout)
    return 0

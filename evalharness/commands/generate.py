"""`evalharness generate --model PATH --task NAME`: generation only, scored later by `execute`.

Under `torchrun --nproc-per-node G -m evalharness -- generate ...` every rank generates its share
on its own device into its own shard file; rank 0 merges them into samples.jsonl.
"""
from __future__ import annotations

import argparse
import sys

from ..evaluate import generate_only
from .options import add_decoding_options, add_model_options, add_task_options
from .run import _barrier, prepare, sharded


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
    with sharded() as shard:
        task, generator, plan, _, run_dir, manifest, identity, _ = prepare(args, "generate")
        if shard.rank == 0:
            run_dir.open(manifest, identity)
        _barrier(shard)
        speed = generate_only(run_dir, task, generator, plan, quiet=args.quiet, shard=shard)
    if speed is None:  # a rank other than 0: rank 0 reports
        return 0
    print(f"{speed['samples_generated']} samples generated ({speed['tokens_generated']} tokens, "
          f"{speed['tokens_per_s']} tokens/s) -> {run_dir.samples_path}", file=sys.stdout)
    print(f"score them with: evalharness execute {run_dir.samples_path} --task {task.name}", file=sys.stdout)
    return 0

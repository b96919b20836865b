"""`evalharness run --model PATH --task NAME`: checkpoint to report in one command, resumable.

Under `torchrun --nproc-per-node G -m evalharness run ...` the ranks share the
generation; rank 0 executes and reports.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Iterator

from evalharness.sandboxes import Limits, SandboxPool

from ..errors import UsageError
from ..pipeline import Shard, evaluate
from ..reporting import report_and_details, write_report
from ..runspec import DecodingSpec, RunSpec, SamplingPass, prepare_generation
from ..runstore import RunDir
from ..scoring import Scoring
from ..summary import print_summary
from .options import (add_decoding_options, add_integrity_option, add_model_options, add_report_options,
                      add_sandbox_options, add_task_options, scoring_from_args)

PAPER_TEMPERATURES, PAPER_N = (0.1, 0.8), 200
PAPER_HEADLINE = {1: 0.1, 10: 0.8, 100: 0.8}  # which pass each pass@k comes from (Gloeckle et al.)


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="generate with a model, execute, and report", description=__doc__)
    add_model_options(p)
    add_task_options(p)
    add_decoding_options(p)
    add_sandbox_options(p)
    add_integrity_option(p)
    add_report_options(p)
    p.add_argument("--out", help="run directory (default: runs/<task>-<model>-<settings hash>)")
    p.set_defaults(run=run)


def decoding_from_args(args: argparse.Namespace) -> DecodingSpec:
    """The sampling passes and settings the decoding flags ask for (checked before any model loads)."""
    from ..decoding import SamplingSettings

    headline, top_p = None, 1.0 if args.top_p is None else args.top_p
    if args.protocol == "mtp-paper":
        # a flag the protocol overrides is refused, not dropped: the run would not be what was asked
        for flag, value in (("--temperatures", args.temperatures), ("--temperature", args.temperature),
                            ("--top-p", args.top_p)):
            if value is not None:
                raise UsageError(f"--protocol mtp-paper fixes the temperatures and top-p; drop {flag}")
        # an explicit --n (e.g. a cheaper first look) keeps the protocol's temperatures and top-p
        passes = tuple(SamplingPass(t, args.n or PAPER_N) for t in PAPER_TEMPERATURES)
        headline, top_p = PAPER_HEADLINE, 0.95
    elif args.temperatures:
        if args.temperature is not None:
            raise UsageError("--temperatures gives the temperatures of a sweep; drop --temperature")
        passes = tuple(SamplingPass(t, args.n or 1) for t in args.temperatures)
    else:
        temperature = args.temperature or 0.0
        if temperature == 0 and (args.n or 1) > 1:
            print("evalharness: note: --n > 1 with greedy decoding repeats the same sample; "
                  "set --temperature for pass@k > 1", file=sys.stderr)
        passes = (SamplingPass(temperature, args.n or 1),)
    settings = SamplingSettings(temperature=0.0, top_p=top_p, top_k=args.top_k,
                                max_new_tokens=args.max_new_tokens, speculative=args.speculative)
    return DecodingSpec(passes, settings, args.batch_size, args.protocol, headline, args.compile)


def prepare(args: argparse.Namespace, command: str, scoring: Scoring, decoding: DecodingSpec,
            limits: Limits | None = None) -> tuple[RunSpec, object]:
    """(RunSpec, generator) of `run` and `generate`: loads the model the flags name."""
    return prepare_generation(command, scoring, decoding, model=args.model, device=args.device, dtype=args.dtype,
                              tokenizer=args.tokenizer, seed=args.seed, out=args.out, limits=limits,
                              quiet=args.quiet)


def run(args: argparse.Namespace) -> int:
    with sharded() as shard:
        return _run(args, shard)


def _run(args: argparse.Namespace, shard: Shard) -> int:
    scoring = scoring_from_args(args)
    decoding = decoding_from_args(args)
    limits = Limits(cpu_s=args.timeout or scoring.task.timeout_s)
    if shard.rank == 0:
        _leave_cores_to_the_sandbox(args.workers)
    # the sandbox first: a tier this machine lacks is refused before minutes of model loading
    with SandboxPool(workers=args.workers, tier=args.sandbox) if shard.rank == 0 else _NoPool() as pool:
        spec, generator = prepare(args, "run", scoring, decoding, limits)
        # rank 0's open() takes the run's lock, held until the report is written
        with spec.open(pool.describe()) if shard.rank == 0 else RunDir(spec.out) as run_dir:
            barrier(shard)
            speed = evaluate(run_dir, spec, generator, pool, quiet=args.quiet, shard=shard)
            if shard.rank != 0:
                return 0
            report, details = report_and_details(run_dir.path, ks=args.k or spec.task.default_k,
                                                 confidence=args.confidence, speed=speed)
            write_report(run_dir, report, details)
    print_summary(report, run_dir.path)
    return 0


def _leave_cores_to_the_sandbox(workers: int | None) -> None:
    """On CPU, generation shares the cores with the sandbox workers running alongside it.

    Oversubscribed intra-op threads spin against the workers: measured here,
    a tiny model decoded 12x slower with 2 threads than with 1 next to 2 workers.
    """
    import os

    import torch

    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cores - (workers or cores))))


@contextlib.contextmanager
def sharded() -> Iterator[Shard]:
    """This process's Shard for the command's lifetime (torchrun: one process group, left at the end)."""
    shard = _init_distributed()
    try:
        yield shard
    finally:
        if shard.world > 1:  # exiting with a live gloo group aborts the process
            import torch.distributed as dist

            dist.destroy_process_group()


def _init_distributed() -> Shard:
    """torchrun sets WORLD_SIZE/RANK; gloo on CPU, nccl on GPUs, each rank on GPU LOCAL_RANK. A
    WORLD_SIZE without the rest of torchrun's environment (another launcher's, a stray export) is a
    one-line UsageError, not torch's rendezvous traceback."""
    import os

    text = os.environ.get("WORLD_SIZE", "1")
    try:
        world = int(text)
    except ValueError:
        world = 0
    if world < 1:
        raise UsageError(f"WORLD_SIZE={text!r} in the environment is not a process count; unset it, or launch "
                         "with torchrun")
    if world == 1:
        return Shard()
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise UsageError(f"WORLD_SIZE={world} is set but {', '.join(missing)} not: launch with torchrun "
                         "(see README), or unset WORLD_SIZE")
    import datetime

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=12))
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Shard(dist.get_rank(), dist.get_world_size())


def barrier(shard: Shard) -> None:
    if shard.world > 1:
        import torch.distributed as dist

        dist.barrier()


class _NoPool:
    """Ranks other than 0 generate only; they hold no sandbox."""

    def describe(self) -> dict:
        return {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

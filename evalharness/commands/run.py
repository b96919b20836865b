"""`evalharness run --model PATH --task NAME`: checkpoint to report in one command, resumable.

Under `torchrun --nproc-per-node G -m evalharness run ...` the ranks share the
generation; rank 0 executes and reports.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from pathlib import Path
from typing import Iterator

from evalharness.sandboxes import Limits, SandboxPool

from .. import integrity
from ..errors import UsageError
from ..evaluate import GenerationPlan, Shard, evaluate
from ..manifest import base_manifest
from ..pipeline import SamplingPass, write_report
from ..runstore import RunDir
from ..summary import print_summary
from .options import (add_decoding_options, add_integrity_option, add_model_options, add_report_options,
                      add_sandbox_options, add_task_options, limit_task,
                      load_task_from_args)

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


def sampling_passes(args: argparse.Namespace) -> tuple[tuple[SamplingPass, ...], dict | None, float]:
    """(passes, pass@k -> temperature headline rule or None, top_p) from the decoding flags."""
    if args.protocol == "mtp-paper":
        if args.temperatures:
            raise UsageError("--protocol mtp-paper fixes the temperatures; drop --temperatures")
        # an explicit --n (e.g. a cheaper first look) keeps the protocol's temperatures and top-p
        return tuple(SamplingPass(t, args.n or PAPER_N) for t in PAPER_TEMPERATURES), PAPER_HEADLINE, 0.95
    n = args.n or 1
    if args.temperatures:
        return tuple(SamplingPass(t, n) for t in args.temperatures), None, args.top_p
    if args.temperature == 0 and n > 1:
        print("evalharness: note: --n > 1 with greedy decoding repeats the same sample; "
              "set --temperature for pass@k > 1", file=sys.stderr)
    return (SamplingPass(args.temperature, n),), None, args.top_p


def prepare(args: argparse.Namespace, command: str):
    """Everything `run` and `generate` share: task, model, plan, run directory identity, and in
    strict integrity mode the served problems (the task is narrowed to them: nothing else is generated)."""
    from ..backends import load_generator, resolve_device
    from ..decoding import SamplingSettings

    task = limit_task(load_task_from_args(args), args.limit)
    served = integrity.serve_or_none(task, getattr(args, "integrity", "standard"))
    if served is not None:
        task = served.task
    passes, headline, top_p = sampling_passes(args)
    if not 0 < top_p <= 1:
        raise UsageError("--top-p must be in (0, 1]")
    if args.speculative < 0:
        raise UsageError("--speculative must be >= 0")
    device = resolve_device(args.device)
    if device.type == "cuda" and device.index is None:  # under torchrun: this rank's GPU (LOCAL_RANK)
        import torch

        device = torch.device("cuda", torch.cuda.current_device())
    generator, model_info = load_generator(args.model, device=device, dtype=args.dtype, tokenizer=args.tokenizer,
                                           compile=args.compile)
    n_heads = model_info.get("n_future_tokens", 1)
    if args.speculative > n_heads:
        raise UsageError(f"--speculative {args.speculative} needs that many heads; the model has {n_heads}")
    settings = SamplingSettings(temperature=0.0, top_p=top_p, top_k=args.top_k,
                                max_new_tokens=args.max_new_tokens, speculative=args.speculative)
    plan = GenerationPlan(passes, settings, args.seed, args.batch_size)
    decoding = {"passes": [{"temperature": p.temperature, "n": p.n} for p in passes], "top_p": top_p,
                "top_k": args.top_k, "max_new_tokens": args.max_new_tokens, "speculative": args.speculative,
                "protocol": args.protocol, "headline": headline and {f"pass@{k}": t for k, t in headline.items()}}
    identity = {"task": task.name, "task_fingerprint": task.fingerprint(),
                "model_fingerprint": model_info.get("fingerprint"), "dtype": model_info.get("dtype"),
                "decoding": decoding, "seed": args.seed}
    manifest = base_manifest(command, task)
    # how the engine ran (not identity: samples do not depend on it)
    engine = {"batch_size": args.batch_size or "auto", "compile": generator.compile}
    manifest.update(model=model_info, decoding={**decoding, **engine}, seed=args.seed)
    integrity.stamp(served, identity, manifest)
    manifest["environment"]["device"] = model_info.get("device_name", str(device))
    out = Path(args.out) if args.out else _default_out(task.name, args.model, identity)
    return task, generator, plan, headline, RunDir(out), manifest, identity, served


def run(args: argparse.Namespace) -> int:
    with sharded() as shard:
        return _run(args, shard)


def _run(args: argparse.Namespace, shard: Shard) -> int:
    task, generator, plan, headline, run_dir, manifest, identity, served = prepare(args, "run")
    if shard.rank == 0:
        _leave_cores_to_the_sandbox(args.workers)
    limits = Limits(cpu_s=args.timeout or task.timeout_s)
    identity["limits"] = {"cpu_s": limits.cpu_s, "memory_mb": limits.memory_mb}
    with SandboxPool(workers=args.workers, tier=args.sandbox) if shard.rank == 0 else _NoPool() as pool:
        manifest["sandbox"] = pool.describe()
        if shard.rank == 0:
            run_dir.open(manifest, identity)
        _barrier(shard)
        speed = evaluate(run_dir, task, generator, plan, pool, limits, quiet=args.quiet, shard=shard, served=served)
    if shard.rank != 0:
        return 0
    ks = args.k or task.default_k
    report = write_report(run_dir, task, ks, args.confidence, speed=speed, headline=headline, served=served)
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


def _default_out(task_name: str, model: str, identity: dict) -> Path:
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    return Path("runs") / f"{task_name}-{Path(model).name or 'model'}-{digest}"


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
    """torchrun sets WORLD_SIZE/RANK; gloo on CPU, nccl on GPUs, each rank on GPU LOCAL_RANK."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Shard()
    import datetime

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=12))
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return Shard(dist.get_rank(), dist.get_world_size())


def _barrier(shard: Shard) -> None:
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

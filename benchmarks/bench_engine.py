#!/usr/bin/env python
"""The generation engine on the paper's sampling workload: continuous batching and the compiled step,
each against an anchor measured in the same run.

HumanEval prompts, n samples each (default 200) at T=0.8, top-p 0.95, 512 new tokens, HumanEval's
stop sequences, with the demo model (or --model DIR, a Meta-format checkpoint) on CPU in fp32:

  engine      slots refilled as samples finish (the default)
  fixed       the same engine with refill off: a batch of slots waits for its slowest sample, as the
              generator before the engine did (it also dropped finished rows; this one idles them)
  unchunked   the engine without batch-invariant matmuls (batch_invariant=False): what the fixed
              row chunks cost; its samples may differ from the engine's by a float rounding
  compiled    the engine with the decode step under torch.compile (timed after a warm-up pass
              that pays for the compiles)
  old         optional (--old-python PY): the generator of an older checkout, run by that checkout's
              python in a subprocess on the same workload; e.g. the generator before the engine:
              `git archive 2b451af | tar -x -C /tmp/old` and a PY script that runs this venv's
              python with PYTHONPATH=/tmp/old

Every configuration but unchunked must produce the same samples (asserted: samples depend on seeds
alone). Printed:
tokens/s per configuration and the ratios; the last line reads
`refill_speedup=<engine/fixed> compile_speedup=<compiled/engine>`.

On a CPU a forward costs about its rows times their cache length, and fixed batches drop finished
rows, so refilling gains little here; on a GPU a decode forward of a 7B model costs the bytes it
reads, 12 GB of weights whatever the row count plus each row's cache. The script therefore also
replays each schedule's forwards (slots, cache lengths) through that cost model for a 7B model
(bf16, 4096 x 29 cached blocks) and prints the modeled GPU ratio of the two schedules: a model of
the same workload's schedules, not a measurement.

    python benchmarks/bench_engine.py [--quick] [--problems 4] [--n 200] [--batch-size 32] [--no-compile]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from evalharness import tasks
from evalharness.assets import DEMO_CHECKPOINT
from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.decoding.generator import CPU_BATCH_SIZE
from evalharness.models import load_mtp_checkpoint
from evalharness.seeds import sample_seed

OLD_RUNNER = """
import json, sys, time, torch
from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.models import load_mtp_checkpoint
job = json.loads(sys.argv[1])
torch.set_num_threads(job["threads"])
model, tok, _ = load_mtp_checkpoint(job["model"], device="cpu", dtype=torch.float32)
requests = [Request(r["prompt"], len(r["seeds"]), tuple(r["seeds"]), tuple(r["stop"])) for r in job["requests"]]
settings = SamplingSettings(**job["settings"])
t0 = time.perf_counter()
out = [[c.raw_text for c in cs] for _, cs in sorted(Generator(model, tok, "cpu").generate(requests, settings, job["batch"]))]
print(json.dumps({"seconds": time.perf_counter() - t0, "raw": out}))
"""


def workload(problems: int, n: int, seed: int = 0):
    task = tasks.load_task("humaneval")
    chosen = task.problems[:problems]
    return [Request(p.prompt, n, tuple(sample_seed(seed, p.task_id, i, 0.8) for i in range(n)), tuple(task.stop))
            for p in chosen]


WEIGHT_BYTES_7B = 6.1e9 * 2  # trunk + head 1 + embeddings/unembedding of a 7B MTP model in bf16
KV_BYTES_7B = 29 * 2 * 4096 * 2  # per cached token: 29 blocks, keys and values, dim 4096, bf16


class ByteModel:
    """Adds up what a schedule's decode forwards would read on a memory-bound GPU (Generator.on_round)."""

    def __init__(self):
        self.bytes = 0.0

    def __call__(self, forwards: int, slots: int, kv_len) -> None:
        lanes = kv_len if isinstance(kv_len, tuple) else (kv_len,)
        cache = sum(slots // len(lanes) * length for length in lanes) * KV_BYTES_7B
        self.bytes += forwards * (WEIGHT_BYTES_7B + cache)


def timed(generator: Generator, requests, settings, batch_size) -> tuple[float, list]:
    t0 = time.perf_counter()
    got = dict(generator.generate(requests, settings, batch_size))
    seconds = time.perf_counter() - t0
    return seconds, [c for i in range(len(requests)) for c in got[i]]


def run_old(python: str, model: Path, requests, settings: SamplingSettings, batch: int, threads: int) -> tuple[float, list]:
    job = {"model": str(model), "threads": threads, "batch": batch,
           "settings": {f: getattr(settings, f) for f in ("temperature", "top_p", "top_k", "max_new_tokens", "speculative")},
           "requests": [{"prompt": r.prompt, "seeds": list(r.seeds), "stop": list(r.stop)} for r in requests]}
    proc = subprocess.run([python, "-c", OLD_RUNNER, json.dumps(job)], capture_output=True, text=True, cwd="/")
    if proc.returncode != 0:
        raise SystemExit(f"--old-python run failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["seconds"], [text for texts in result["raw"] for text in texts]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEMO_CHECKPOINT, help="Meta-format MTP checkpoint (default: demo)")
    ap.add_argument("--problems", type=int, default=4, help="the first N HumanEval problems")
    ap.add_argument("--n", type=int, default=200, help="samples per problem")
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--speculative", type=int, default=0, help="heads to draft with (0 = plain sampling)")
    ap.add_argument("--batch-size", type=int, default=CPU_BATCH_SIZE, help="slots (default: the CPU auto size)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on a shared 2-core machine two intra-op threads spin against "
                         "other work and the figures scatter 2-3x; 0: torch's default)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled configuration")
    ap.add_argument("--old-python", metavar="PY", help="also time the generator of the checkout this python runs")
    ap.add_argument("--quick", action="store_true", help="1 problem (n=200): under 5 minutes on 2 cores")
    args = ap.parse_args(argv)
    if args.quick:
        args.problems = 1
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok, info = load_mtp_checkpoint(args.model, device="cpu", dtype=torch.float32)
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens,
                                speculative=args.speculative)
    requests = workload(args.problems, args.n)
    B = args.batch_size
    print(f"model {info.path.name}: {info.n_params / 1e6:.2f}M parameters, fp32 on CPU, {torch.get_num_threads()} "
          f"threads; {len(requests)} HumanEval problems x n={args.n}, T=0.8 top-p 0.95, {args.max_new_tokens} new "
          f"tokens, speculative {args.speculative}, {B} slots", flush=True)

    results: dict[str, tuple[float, list]] = {}
    modeled = {"engine": ByteModel(), "fixed": ByteModel()}
    results["engine"] = timed(Generator(model, tok, "cpu", compile=False, on_round=modeled["engine"]),
                              requests, settings, B)
    results["fixed"] = timed(Generator(model, tok, "cpu", compile=False, refill=False, on_round=modeled["fixed"]),
                             requests, settings, B)
    results["unchunked"] = timed(Generator(model, tok, "cpu", compile=False, batch_invariant=False),
                                 requests, settings, B)
    compile_s = None
    if not args.no_compile:
        compiled = Generator(model, tok, "cpu", compile=True)
        t0 = time.perf_counter()
        # warm-up: the same pass once, so every shape the timed pass meets (slot counts of the tail,
        # cache-length buckets) is compiled before it; a shorter warm-up left recompiles in the timing
        timed(compiled, requests, settings, B)
        compile_s = time.perf_counter() - t0
        results["compiled"] = timed(compiled, requests, settings, B)
        if compiled._compiled is None:
            print("note: torch.compile failed; 'compiled' ran eagerly")
    if args.old_python:
        results["old"] = run_old(args.old_python, args.model, requests, settings, B, torch.get_num_threads())

    reference = [c.raw_text for c in results["engine"][1]]
    tokens = sum(c.tokens for c in results["engine"][1])
    lengths = sorted(c.tokens for c in results["engine"][1])
    for name, (_, got) in results.items():
        texts = got if name == "old" else [c.raw_text for c in got]
        same = texts == reference
        assert same or name in ("old", "unchunked"), f"{name} produced other samples than the engine"
        if not same:
            print(f"note: {name}'s samples differ from the engine's in "
                  f"{sum(a != b for a, b in zip(texts, reference))} of {len(texts)}")
    rate = {name: tokens / seconds for name, (seconds, _) in results.items()}
    print(f"\n{tokens} tokens in {len(lengths)} samples (median {lengths[len(lengths) // 2]}, "
          f"max {lengths[-1]}); identical samples in every configuration but unchunked")
    print(f"{'configuration':12s} {'seconds':>8s} {'tokens/s':>9s} {'vs engine':>9s}")
    for name, (seconds, _) in results.items():
        print(f"{name:12s} {seconds:8.1f} {rate[name]:9.0f} {rate[name] / rate['engine']:8.2f}x")
    if compile_s is not None:
        print(f"(compiled: warm-up pass with compiles {compile_s:.0f} s)")
    print(f"modeled on a GPU, 7B bf16, same schedules: the engine reads {modeled['engine'].bytes / 1e12:.1f} TB, "
          f"fixed batches {modeled['fixed'].bytes / 1e12:.1f} TB: refill {modeled['fixed'].bytes / modeled['engine'].bytes:.2f}x")
    refill = rate["engine"] / rate["fixed"]
    compiled = rate["compiled"] / rate["engine"] if "compiled" in rate else float("nan")
    print(f"refill_speedup={refill:.2f} compile_speedup={compiled:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

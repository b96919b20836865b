"""`evalharness run` end to end: wall time per stage and how much generation and execution overlap.

Runs `evalharness run` (HumanEval, n samples per problem, the given model) and then, as the
anchor measured in the same run, `evalharness execute` alone on the same samples. Without
overlap a run would take generate + execute-alone; with it, about the larger of the two.

    python benchmarks/bench_run.py                      # full HumanEval, n=200, tiny model
    python benchmarks/bench_run.py --limit 20 --n 50    # quicker
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--task", default="humaneval")
    p.add_argument("--limit", type=int)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=200)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run_dir, exec_dir = Path(tmp) / "run", Path(tmp) / "exec"
        limit = ["--limit", str(args.limit)] if args.limit else []
        cli = [sys.executable, "-m", "evalharness"]
        wall = timed(cli + ["run", "--model", args.model, "--task", args.task, *limit, "--n", str(args.n),
                            "--temperature", "0.8", "--max-new-tokens", str(args.max_new_tokens),
                            "--batch-size", str(args.batch_size), "--out", str(run_dir), "--quiet"])
        speed = json.loads((run_dir / "report.json").read_text())["speed"]
        exec_wall = timed(cli + ["execute", str(run_dir / "samples.jsonl"), "--task", args.task, *limit,
                                 "--out", str(exec_dir), "--quiet"])
        exec_alone = json.loads((exec_dir / "report.json").read_text())["speed"]["execute_s"]

    gen, total = speed["generate_s"], speed["total_s"]
    print(f"{args.task} x{args.n} ({speed['samples_generated']} samples, {speed['tokens_generated']} tokens), "
          f"model {args.model}")
    print(f"  generation          {gen:8.1f} s  ({speed['tokens_per_s']} tokens/s)")
    print(f"  execution alone     {exec_alone:8.1f} s  (anchor: `evalharness execute` on the same samples)")
    print(f"  run, overlapped     {total:8.1f} s  (whole command {wall:.1f} s, execution ended at "
          f"{speed['execute_s']:.1f} s, {speed['programs_per_s']} programs/s)")
    print(f"  sum of the stages   {gen + exec_alone:8.1f} s")
    print(f"  overlap: run / (generation + execution) = {total / (gen + exec_alone):.2f}; "
          f"run / max(stage) = {total / max(gen, exec_alone):.2f}")


if __name__ == "__main__":
    main()

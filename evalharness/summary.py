"""The short table printed at the end of a command."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_summary(report: dict, run_path: Path, file: TextIO | None = None) -> None:
    file = file or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    conf = report.get("confidence", 0.9)
    print(f"{report['task']}: {report['n_problems']} problems, {report['n_samples']} samples  ->  {run_path}",
          file=file)
    print(f"{'metric':<10} {'estimate':>9}  {int(round(conf * 100))}% CI", file=file)
    sections = {"": report["pass_at_k"], **{f"{s} ": v for s, v in (report.get("pass_at_k_by_suite") or {}).items()}}
    for prefix, table in sections.items():
        for name, e in table.items():
            if e["computable"]:
                ci = f"[{_pct(e['ci_low'])}, {_pct(e['ci_high'])}]" if e.get("ci_low") is not None else ""
                at = f"  at T={e['temperature']:g}" if e.get("temperature") is not None else ""
                print(f"{prefix + name:<10} {_pct(e['estimate']):>9}  {ci}{at}", file=file)
            else:
                print(f"{prefix + name:<10} {'n/a':>9}  ({e['reason']})", file=file)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["status_counts"].items(), key=lambda kv: -kv[1]))
    print(f"status: {counts}", file=file)
    integrity = report.get("integrity")
    if integrity:
        ids = [r["task_id"] for r in integrity["not_served"]]
        left_out = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "") if ids else "none"
        print(f"integrity: {integrity['mode']}, {integrity['served']} of {integrity['total']} problems served "
              f"(pass@k over these); not served: {left_out}", file=file)

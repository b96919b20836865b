"""The short table printed at the end of a command."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from evalharness import reports


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_summary(report: dict, run_path: Path, file: TextIO | None = None) -> None:
    file = file or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    conf = report.get("confidence", 0.9)
    print(f"{report['task']}: {report['n_problems']} problems, {report['n_samples']} samples  ->  {run_path}",
          file=file)
    header = report.get("header") or {}
    if (header.get("model") or {}).get("name"):
        print(f"model: {reports.run_label(header)}", file=file)
    elif header.get("samples_file"):
        fmt = f" ({header['samples_format']})" if header.get("samples_format") else ""
        print(f"samples: {header['samples_file']}{fmt}", file=file)
    sections = {"": report["pass_at_k"], **{f"{s} ": v for s, v in (report.get("pass_at_k_by_suite") or {}).items()}}
    width = max(len("metric"), *(len(prefix + name) for prefix, table in sections.items() for name in table))
    print(f"{'metric':<{width}} {'estimate':>9}  {int(round(conf * 100))}% CI", file=file)
    not_computable: dict[str, list[str]] = {}  # reason -> metrics: one line each, not a row of n/a per metric
    for prefix, table in sections.items():
        for name, e in table.items():
            if e["computable"]:
                ci = f"[{_pct(e['ci_low'])}, {_pct(e['ci_high'])}]" if e.get("ci_low") is not None else ""
                t = e.get("temperature")
                at = "" if t is None else "  greedy" if t == 0 else f"  at T={t:g}"
                print(f"{prefix + name:<{width}} {_pct(e['estimate']):>9}  {ci}{at}", file=file)
            else:
                not_computable.setdefault(e["reason"], []).append(prefix + name)
    for reason, names in not_computable.items():
        print(f"not computable: {', '.join(names)} ({reason})", file=file)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report["status_counts"].items(), key=lambda kv: -kv[1]))
    print(f"status: {counts}", file=file)
    truncated = report.get("truncated") or {}
    if truncated.get("samples"):
        print(f"truncated at the token budget: {truncated['samples']} of {truncated['of']} completions", file=file)
    speed = speed_line(report)
    if speed:
        print(f"speed: {speed}", file=file)
    integrity = report.get("integrity")
    if integrity:
        ids = [r["task_id"] for r in integrity["not_served"]]
        left_out = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "") if ids else "none"
        print(f"integrity: {integrity['mode']}, {integrity['served']} of {integrity['total']} problems served "
              f"(pass@k over these); not served: {left_out}", file=file)


def speed_line(report: dict) -> str | None:
    """'2.83 tokens per forward, 950 tokens/s; draft acceptance heads 2-4: 82% 73% 82%' (what is known)."""
    speed = report.get("speed") or {}
    parts = []
    if isinstance(speed.get("tokens_per_forward"), (int, float)):
        parts.append(f"{speed['tokens_per_forward']:.2f} tokens per forward")
    if isinstance(speed.get("tokens_per_s"), (int, float)):
        parts.append(f"{speed['tokens_per_s']:,.0f} tokens/s")
    text = ", ".join(parts)
    groups = [g for g in report.get("decoding_stats") or [] if g.get("acceptance_per_draft_head")
              and any(a is not None for a in g["acceptance_per_draft_head"])]
    for g in groups:
        rates = " ".join("-" if a is None else f"{100 * a:.0f}%" for a in g["acceptance_per_draft_head"])
        t = g.get("temperature")
        where = "" if len(groups) == 1 or t is None else f" at T={t:g}"
        text += f"; draft acceptance heads 2-{len(g['acceptance_per_draft_head']) + 1}{where}: {rates}"
    return text or None

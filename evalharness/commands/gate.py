"""`evalharness gate RUN --baseline BASELINE`: CI regression gate on a run's pass@k (or speed).

Exit 1 when the metric dropped by more than --max-drop percentage points AND
the drop is significant at --confidence; 0 otherwise; 2 when the comparison
itself is invalid (missing or malformed run or report, unknown metric, runs of
different tasks, an unwritable --out). Prints a Markdown table fit for a
pull-request comment naming both runs and the problems that flipped; with
--out, the file is written in every case, on exit 2 with the reason.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from evalharness import reports

from ..errors import UsageError
from ..reporting import load_report


def drop_limit(text: str) -> float:
    """--max-drop: a finite number >= 0 (nan, inf and negatives would make any drop pass or every run fail)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def add_parser(sub) -> None:
    p = sub.add_parser("gate", help="fail (exit 1) on a significant pass@k drop against a baseline",
                       description=__doc__)
    p.add_argument("run_path", metavar="RUN", help="run directory or report.json to check")
    p.add_argument("--baseline", required=True, metavar="RUN_OR_REPORT", help="baseline run directory or report.json")
    p.add_argument("--metric", default="pass@1",
                   help="pass@K, or a speed figure: tokens_per_forward, tokens_per_s (default pass@1)")
    p.add_argument("--max-drop", type=drop_limit, default=1.0, metavar="POINTS",
                   help="allowed drop: percentage points of pass@k, or percent of the baseline's speed "
                        "(default 1.0)")
    p.add_argument("--confidence", type=float, default=0.9, help="confidence level of the test (default 0.9)")
    p.add_argument("--allow-partial", action="store_true",
                   help="compare on the common problems even if the run lacks some of the baseline's "
                        "(e.g. a --limit'ed run against a full baseline)")
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format (default md)")
    p.add_argument("--out", metavar="FILE", help="also write the output to FILE (e.g. for a PR comment); "
                                                 "written on exit 2 too, with the reason")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else None
    if out is not None:
        _check_writable(out)
    try:
        decision = _decide(args)
    except UsageError as e:
        if out is not None:
            _write(out, reports.render_gate_refusal(str(e)) if args.format == "md"
                   else json.dumps({"passed": None, "error": str(e)}, indent=2) + "\n")
        raise
    for warning in decision.get("warnings") or []:
        print(f"evalharness: warning: {warning}", file=sys.stderr)
    text = json.dumps(decision, indent=2) if args.format == "json" else reports.render_gate_markdown(decision)
    print(text)
    if out is not None:
        _write(out, text + "\n")
    return 0 if decision["passed"] else 1


def _decide(args: argparse.Namespace) -> dict:
    try:
        speed = reports.speed_metric(args.metric)
        ks = None if speed else tuple(sorted({1, 10, 100, reports.parse_metric(args.metric)}))
        return reports.gate(load_report(args.run_path, ks=ks), load_report(args.baseline, ks=ks),
                            metric=speed or args.metric, max_drop=args.max_drop, confidence=args.confidence,
                            allow_partial=args.allow_partial)
    except reports.ComparisonError as e:
        raise UsageError(str(e)) from None


def _check_writable(out: Path) -> None:
    """Refuse an --out the gate could not write before deciding anything (exit 2, not 1 after a pass)."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--out {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise UsageError(f"--out {out} is not writable")


def _write(out: Path, text: str) -> None:
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot write --out {out}: {e.strerror or e}") from None

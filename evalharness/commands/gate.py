"""`evalharness gate RUN --baseline BASELINE`: CI regression gate on a run's pass@k.

Exit 1 when the metric dropped by more than --max-drop percentage points AND
the drop is significant at --confidence; 0 otherwise; 2 on bad input
(missing run, unknown metric, runs of different tasks). Prints a Markdown
table fit for a pull-request comment, naming the problems that flipped.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from evalharness import reports

from ..reporting import load_report


def add_parser(sub) -> None:
    p = sub.add_parser("gate", help="fail (exit 1) on a significant pass@k drop against a baseline",
                       description=__doc__)
    p.add_argument("run_path", metavar="RUN", help="run directory or report.json to check")
    p.add_argument("--baseline", required=True, metavar="RUN_OR_REPORT", help="baseline run directory or report.json")
    p.add_argument("--metric", default="pass@1", help="metric to gate on (default pass@1)")
    p.add_argument("--max-drop", type=float, default=1.0, metavar="POINTS",
                   help="allowed drop in percentage points (default 1.0)")
    p.add_argument("--confidence", type=float, default=0.9, help="confidence level of the test (default 0.9)")
    p.add_argument("--allow-partial", action="store_true",
                   help="compare on the common problems even if the run lacks some of the baseline's")
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format (default md)")
    p.add_argument("--out", metavar="FILE", help="also write the output to FILE (e.g. for a PR comment)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    k = reports.parse_metric(args.metric)
    ks = tuple(sorted({1, 10, 100, k}))
    decision = reports.gate(load_report(args.run_path, ks=ks), load_report(args.baseline, ks=ks),
                            metric=args.metric, max_drop=args.max_drop, confidence=args.confidence,
                            allow_partial=args.allow_partial)
    text = json.dumps(decision, indent=2) if args.format == "json" else reports.render_gate_markdown(decision)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0 if decision["passed"] else 1

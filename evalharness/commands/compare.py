"""`evalharness compare RUN_A RUN_B`: paired comparison of two runs of the same task (B - A).

Each side is a run directory or a report.json, named in the output by its
model and decoding settings. Differences come with a paired bootstrap CI over
problems and a p-value (McNemar's exact test for runs with one sample per
problem), the problems that flipped each way are listed, and where both runs
generated, their speed side by side (e.g. speculative against plain).
"""
from __future__ import annotations

import argparse
import json
import sys

from evalharness import reports

from .options import k_list
from ..reporting import load_report


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="paired comparison of two runs of the same task", description=__doc__)
    p.add_argument("run_a", metavar="RUN_A", help="run directory or report.json (the reference)")
    p.add_argument("run_b", metavar="RUN_B", help="run directory or report.json (compared against A)")
    p.add_argument("--k", type=k_list, metavar="K,..", help="pass@k values (default: those both reports have)")
    p.add_argument("--confidence", type=float, default=0.9, help="confidence level (default 0.9)")
    p.add_argument("--allow-partial", action="store_true",
                   help="compare a --limit'ed run with a full one on their common problems")
    p.add_argument("--format", choices=("md", "json"), default="md", help="output format (default md)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    a = load_report(args.run_a, ks=args.k)
    b = load_report(args.run_b, ks=args.k)
    result = reports.compare(a, b, ks=args.k, confidence=args.confidence, subset=args.allow_partial)
    for warning in result["warnings"]:
        print(f"evalharness: warning: {warning}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"A = `{args.run_a}`, B = `{args.run_b}`\n")
        print(reports.render_comparison_markdown(result))
    return 0

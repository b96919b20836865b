"""`evalharness report RUN`: rebuild a run's report from its results.jsonl and render it (md, html, json).

The report is rebuilt from the files on disk, so it always matches them. The
rendering is written into the run directory (report.json plus report.<format>)
unless --out names another file; Markdown and JSON are also printed.
"""
from __future__ import annotations

import argparse
import json
import sys

from evalharness import reports

from ..reporting import report_and_details
from ..runstore import MANIFEST, RunDir, write_output_file
from .options import k_list


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="rebuild and render a run's report", description=__doc__)
    p.add_argument("run_path", metavar="RUN", help="run directory (with manifest.json and results.jsonl)")
    p.add_argument("--format", choices=("md", "html", "json"), default="md", help="rendering (default md)")
    p.add_argument("--k", type=k_list, metavar="K,..", help="pass@k values (default: the run's previous ones)")
    p.add_argument("--confidence", type=float, help="confidence level of intervals (default: the run's, or 0.9)")
    p.add_argument("--out", metavar="FILE", help="write the rendering here ('-' for stdout only) "
                                                 "(default: report.<format> in the run directory)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    run_dir = RunDir(args.run_path)
    if not args.out and (run_dir.path / MANIFEST).is_file():
        run_dir.lock()  # the run's report files are rewritten: not while another process writes the run
    with run_dir:
        report, details = report_and_details(args.run_path, ks=args.k, confidence=args.confidence)
        text = render(report, args.format, details)
        if args.out == "-":
            sys.stdout.write(text)
            return 0
        if args.out:
            write_output_file(args.out, text)
            print(args.out)
            return 0
        run_dir.write_json("report.json", report)
        run_dir.write_text(f"report.{args.format}", text)
        if args.format == "html":
            print(run_dir.path / "report.html")
        else:
            sys.stdout.write(text)
        return 0


def render(report: dict, fmt: str, details: dict | None = None) -> str:
    """report.json / .md / .html text; `details` (reporting.run_details) add the per-problem drill-down."""
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return reports.render_html(report, details)
    return reports.render_markdown(report, details)

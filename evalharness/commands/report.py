"""`evalharness report RUN`: rebuild a run's report from its results.jsonl and render it (md, html, json).

The report is rebuilt from the files on disk, so it always matches them. The
rendering is written into the run directory (report.json plus report.<format>)
unless --out names another file; Markdown and JSON are also printed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evalharness import reports

from ..errors import UsageError
from ..runstore import MANIFEST, RunDir, read_jsonl
from .options import k_list

DEFAULT_KS = (1, 10, 100)


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="rebuild and render a run's report", description=__doc__)
    p.add_argument("run_path", metavar="RUN", help="run directory (with manifest.json and results.jsonl)")
    p.add_argument("--format", choices=("md", "html", "json"), default="md", help="rendering (default md)")
    p.add_argument("--k", type=k_list, metavar="K,..", help="pass@k values (default: the run's previous ones)")
    p.add_argument("--confidence", type=float, help="confidence level of intervals (default: the run's, or 0.9)")
    p.add_argument("--out", metavar="FILE", help="write the rendering here ('-' for stdout only) "
                                                 "instead of into the run directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = rebuild_report(args.run_path, ks=args.k, confidence=args.confidence)
    text = render(report, args.format, run_details(args.run_path))
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(args.out)
        return 0
    run_dir = RunDir(args.run_path)
    run_dir.write_json("report.json", report)
    run_dir.write_text(f"report.{args.format}", text)
    if args.format == "html":
        print(run_dir.path / "report.html")
    else:
        sys.stdout.write(text)
    return 0


def render(report: dict, fmt: str, details: dict | None = None) -> str:
    """report.json / .md / .html text; `details` (run_details) add the per-problem drill-down."""
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return reports.render_html(report, details)
    return reports.render_markdown(report, details)


def run_details(path, prompts: dict[str, str] | None = None) -> dict:
    """The drill-down of a run directory: each problem's prompt and samples with their verdicts.
    Prompts come from `prompts`, else from the run's task when it loads with the recorded fingerprint."""
    run_dir = RunDir(path)
    if prompts is None:
        task = _recorded_task((run_dir.manifest() or {}).get("task") or {})
        prompts = {p.task_id: p.prompt for p in task.problems} if task is not None else {}
    return reports.drilldown(run_dir.samples(), run_dir.results(), prompts)


def write_report_files(run_dir: RunDir, report: dict, details: dict | None = None) -> None:
    """report.json, report.md and report.html into the run directory."""
    run_dir.write_json("report.json", report)
    run_dir.write_text("report.md", reports.render_markdown(report, details))
    run_dir.write_text("report.html", reports.render_html(report, details))


def rebuild_report(path, ks=None, confidence: float | None = None) -> dict:
    """report.json rebuilt from a run directory's results, keeping what results cannot tell (speed, extras)."""
    run_dir = RunDir(path)
    if not run_dir.path.is_dir():
        raise UsageError(f"run directory not found: {run_dir.path}")
    manifest = run_dir.manifest()
    if manifest is None:
        raise UsageError(f"{run_dir.path} has no {MANIFEST}; not a run directory")
    task = manifest.get("task") or {}
    previous = _previous_report(run_dir.path)
    results = run_dir.results()
    if not results:
        raise UsageError(f"{run_dir.path} has no results yet (results.jsonl is empty or missing)")
    ks = tuple(ks or previous.get("ks") or DEFAULT_KS)
    confidence = confidence if confidence is not None else previous.get("confidence", 0.9)
    if not 0 < confidence < 1:
        raise UsageError("--confidence must be between 0 and 1")
    samples = run_dir.samples()
    speed = previous.get("speed") or reports.speed_from_samples(samples)
    extra = {k: v for k, v in previous.items() if k not in reports.REPORT_KEYS}
    return reports.build_report(
        results, task=task.get("name"), task_fingerprint=task.get("fingerprint"),
        header=reports.report_header(manifest), samples=samples,
        problem_ids=_problem_ids(task, previous, results, run_dir, manifest.get("integrity")),
        ks=ks, confidence=confidence, seed=(previous.get("bootstrap") or {}).get("seed", 0),
        speed=speed, extra=extra, temperature_for_k=_headline_rule(manifest),
        integrity=manifest.get("integrity") or previous.get("integrity"))


def _headline_rule(manifest: dict) -> dict[int, float] | None:
    """The fixed temperature per k of a protocol run (mtp-paper), as `run` reported it."""
    rule = (manifest.get("decoding") or {}).get("headline")
    return {int(name.removeprefix("pass@")): t for name, t in rule.items()} if rule else None


def load_report(path, ks=None, confidence: float | None = None) -> dict:
    """A report from a run directory (rebuilt) or a report.json file (as stored, checked against
    the report schema: a malformed one is a one-line UsageError)."""
    p = Path(path)
    if p.is_dir():
        return rebuild_report(p, ks=ks, confidence=confidence)
    if not p.is_file():
        raise UsageError(f"no run directory or report file at {p}")
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError):
        raise UsageError(f"{p} is not a JSON report") from None
    except OSError as e:
        raise UsageError(f"cannot read {p}: {e.strerror or e}") from None
    try:
        return reports.validate_report(report, source=str(p))
    except reports.ReportFormatError as e:
        raise UsageError(str(e)) from None


def _previous_report(path: Path) -> dict:
    p = path / "report.json"
    try:
        report = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return report if isinstance(report, dict) else {}


def _recorded_task(task: dict, integrity: dict | None = None):
    """The run's task loaded from its recorded source (in strict integrity mode: less the problems not
    served), when it still has the recorded fingerprint; else None."""
    from dataclasses import replace

    try:
        from evalharness.tasks import load_task
    except ImportError:
        return None
    source = task.get("source")
    # The recorded source first; the task's default data only when none was recorded.
    for options in ([{"problems_file": source}, {"data_file": source}] if source else [{}]):
        try:
            loaded = load_task(task.get("name"), **options)
        except Exception:  # noqa: BLE001 - any failure just means: fall back to the run's own ids
            continue
        if integrity:
            left_out = {r["task_id"] for r in integrity.get("not_served", [])}
            loaded = replace(loaded, problems=tuple(p for p in loaded.problems if p.task_id not in left_out))
        if loaded.fingerprint() == task.get("fingerprint"):
            return loaded
    return None


def _problem_ids(task: dict, previous: dict, results: list[dict], run_dir: RunDir,
                 integrity: dict | None = None) -> list[str]:
    """All problems of the run's task: from the task itself when it loads with the same fingerprint
    (in strict integrity mode: less the problems not served), else from the previous report
    (evaluated + missing) and the run's rows."""
    loaded = _recorded_task(task, integrity)
    if loaded is not None:
        return [p.task_id for p in loaded.problems]
    ids = [r["task_id"] for r in previous.get("per_problem", [])] + list(previous.get("missing_problems", []))
    ids += [r["task_id"] for r in read_jsonl(run_dir.samples_path)] + [r["task_id"] for r in results]
    return list(dict.fromkeys(ids))

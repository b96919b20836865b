"""A run's report from its directory alone: rebuilt from results.jsonl and manifest.json, written as
report.json/.md/.html, or loaded from a report.json file.

The manifest holds what the report needs besides the results (task name and fingerprint, the
problem ids, the integrity record, the headline rule), so re-rendering a report, or reading
`Run.report` in a notebook, never loads a task, downloads data or runs reference solutions.
Used by the commands, `gate`, `compare` and the notebook API.
"""
from __future__ import annotations

from pathlib import Path

from evalharness import reports
from evalharness.tasks.data import parse_json

from .errors import UsageError
from .runstore import RunDir

DEFAULT_KS = (1, 10, 100)


def rebuild_report(path, ks=None, confidence: float | None = None, speed: dict | None = None) -> dict:
    """report.json rebuilt from a run directory's results, keeping what results cannot tell (speed, extras).
    `speed`: this invocation's speed record (default: the previous report's, else the samples' stats); one
    of an invocation that executed nothing (a re-run of a finished run) measured nothing and counts as none."""
    return _rebuild(RunDir(path), ks, confidence, speed)[0]


def report_and_details(path, ks=None, confidence: float | None = None,
                       speed: dict | None = None) -> tuple[dict, dict]:
    """rebuild_report and run_details from one read of the run's samples and results."""
    run_dir = RunDir(path)
    report, samples, results = _rebuild(run_dir, ks, confidence, speed)
    return report, reports.drilldown(samples, results, run_dir.prompts())


def _rebuild(run_dir: RunDir, ks, confidence, speed) -> tuple[dict, list[dict], list[dict]]:
    """rebuild_report's report, and the samples and results it was built from."""
    manifest = run_dir.existing_manifest()
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
    if speed is not None and not speed.get("programs"):
        speed = None
    speed = speed or previous.get("speed") or reports.speed_from_samples(samples)
    extra = {k: v for k, v in previous.items() if k not in reports.REPORT_KEYS}
    report = reports.build_report(
        results, task=task.get("name"), task_fingerprint=task.get("fingerprint"),
        header=reports.report_header(manifest), samples=samples,
        problem_ids=_problem_ids(manifest, previous, samples, results),
        ks=ks, confidence=confidence, seed=(previous.get("bootstrap") or {}).get("seed", 0),
        speed=speed, extra=extra, temperature_for_k=_headline_rule(manifest),
        integrity=manifest.get("integrity") or previous.get("integrity"))
    return report, samples, results


def run_details(path) -> dict:
    """The drill-down of a run directory: each problem's prompt (prompts.json, written when the run
    was opened) and samples with their verdicts."""
    run_dir = RunDir(path)
    return reports.drilldown(run_dir.samples(), run_dir.results(), run_dir.prompts())


def write_report(run_dir: RunDir, report: dict, details: dict) -> None:
    """report.json, report.md and report.html (with the drill-down `details`) into the run directory."""
    run_dir.write_json("report.json", report)
    run_dir.write_text("report.md", reports.render_markdown(report, details))
    run_dir.write_text("report.html", reports.render_html(report, details))


def load_report(path, ks=None, confidence: float | None = None) -> dict:
    """A report from a run directory (rebuilt) or a report.json file (as stored, checked against
    the report schema: a malformed one is a one-line UsageError)."""
    p = Path(path)
    if p.is_dir():
        return rebuild_report(p, ks=ks, confidence=confidence)
    if not p.is_file():
        raise UsageError(f"no run directory or report file at {p}")
    try:
        report = parse_json(p.read_bytes())
    except ValueError as e:
        raise UsageError(f"{p} is not a JSON report ({e})") from None
    try:
        return reports.validate_report(report, source=str(p))
    except reports.ReportFormatError as e:
        raise UsageError(str(e)) from None


def _headline_rule(manifest: dict) -> dict[int, float] | None:
    """The fixed temperature per k of a protocol run (mtp-paper), as `run` reported it."""
    rule = (manifest.get("decoding") or {}).get("headline")
    return {int(name.removeprefix("pass@")): t for name, t in rule.items()} if rule else None


def _previous_report(path: Path) -> dict:
    p = path / "report.json"
    try:
        report = parse_json(p.read_bytes()) if p.is_file() else {}
    except ValueError:  # not JSON (the report is rebuilt without what it kept)
        return {}
    return report if isinstance(report, dict) else {}


def _problem_ids(manifest: dict, previous: dict, samples: list[dict], results: list[dict]) -> list[str]:
    """The problems the run covers, as its manifest lists them. Runs made before the manifest did
    (0.1.x): the previous report's (evaluated + missing) and the run's rows."""
    ids = manifest.get("problem_ids")
    if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
        return ids
    ids = [r["task_id"] for r in previous.get("per_problem", [])] + list(previous.get("missing_problems", []))
    ids += [r["task_id"] for r in samples] + [r["task_id"] for r in results]
    return list(dict.fromkeys(ids))


__all__ = ["DEFAULT_KS", "load_report", "rebuild_report", "report_and_details", "run_details", "write_report"]

"""Notebook API: a run directory as pandas DataFrames, comparisons between runs, and plots.

    run = load_run("out/humaneval.run")
    run.problems.sort_values("pass@1").head()
    run.pass_at_k([1, 10], confidence=0.95)
    run.compare(load_run("out/baseline.run"))
    df = load_runs("out/*.run"); plot_runs(df, "pass@1")
"""
from __future__ import annotations

import glob as globlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evalharness import reports

from .errors import UsageError
from .runstore import MANIFEST, RunDir, row_key, read_jsonl

_SAMPLE_COLUMNS = {"task_id": "string", "sample_idx": "int64", "completion": "string"}
_RESULT_COLUMNS = {"task_id": "string", "sample_idx": "int64", "passed": "bool", "duration_s": "float64"}


def _frame(rows: list[dict], dtypes: dict) -> pd.DataFrame:
    """Rows as a DataFrame: core columns first with fixed dtypes, any other fields kept as they are."""
    df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(dtypes))
    for column, dtype in dtypes.items():
        if column not in df:
            df[column] = pd.Series(dtype=dtype)
        df[column] = df[column].astype(dtype)
    if "temperature" in df:
        df["temperature"] = df["temperature"].astype("float64")
    return df[list(dtypes) + [c for c in df.columns if c not in dtypes]]


@dataclass
class Run:
    """One run directory. DataFrames are built on load; the report is the stored one when it is
    up to date with results.jsonl, else rebuilt."""

    path: Path
    manifest: dict
    samples: pd.DataFrame
    results: pd.DataFrame
    _result_rows: list[dict] = field(repr=False, default_factory=list)
    _report: dict | None = field(repr=False, default=None)

    @property
    def task(self) -> str | None:
        return (self.manifest.get("task") or {}).get("name")

    @property
    def report(self) -> dict:
        if self._report is None:
            stored = self.path / "report.json"
            report = None
            if stored.is_file():
                try:
                    report = json.loads(stored.read_text(encoding="utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    report = None
            executed = len({row_key(r) for r in self._result_rows})
            if not report or report.get("n_samples") != executed:
                from .reporting import rebuild_report

                report = rebuild_report(self.path)
            self._report = report
        return self._report

    @property
    def problems(self) -> pd.DataFrame:
        """Per problem (and temperature, for sweeps): n, c, solve rate and pass@k (NaN where k > n)."""
        df = pd.DataFrame.from_records(self.report["per_problem"])
        if df.empty:
            return df
        df["task_id"] = df["task_id"].astype("string")
        df[["n", "c"]] = df[["n", "c"]].astype("int64")
        for column in [c for c in df.columns if c.startswith("pass@")]:
            df[column] = df[column].astype("float64")
        df["solve_rate"] = df["c"] / df["n"]
        return df

    def pass_at_k(self, ks=(1, 10, 100), confidence: float = 0.9) -> pd.DataFrame:
        """pass@k with bootstrap CIs, one row per metric (best temperature per k for sweeps)."""
        report = reports.build_report(
            self._result_rows, task=self.task, task_fingerprint=self.report.get("task_fingerprint"),
            problem_ids=_all_problem_ids(self.report), ks=ks, confidence=confidence,
            seed=(self.report.get("bootstrap") or {}).get("seed", 0))
        return pass_at_k_frame(report["pass_at_k"])

    def compare(self, other: "Run", ks=None, confidence: float = 0.9) -> dict:
        """other versus self (other - self), paired over problems; see reports.compare."""
        return reports.compare(self.report, other.report, ks=ks, confidence=confidence)


def pass_at_k_frame(table: dict) -> pd.DataFrame:
    df = pd.DataFrame.from_dict(table, orient="index")
    df.index.name = "metric"
    for column in ("estimate", "ci_low", "ci_high"):
        df[column] = df[column].astype("float64")
    return df


def _all_problem_ids(report: dict) -> list[str]:
    return list(dict.fromkeys([r["task_id"] for r in report["per_problem"]] + report.get("missing_problems", [])))


def load_run(path) -> Run:
    """Load a run directory (manifest.json, samples.jsonl, results.jsonl; a torn last line is ignored)."""
    run_dir = RunDir(path)
    manifest = run_dir.manifest()
    if manifest is None:
        raise UsageError(f"{run_dir.path} is not a run directory (no {MANIFEST})")
    samples = read_jsonl(run_dir.samples_path)
    results = read_jsonl(run_dir.results_path)
    results_df = _frame(results, _RESULT_COLUMNS)
    if "status" in results_df:
        results_df["status"] = results_df["status"].astype("category")
    samples_df = _frame(samples, _SAMPLE_COLUMNS)
    if "finish_reason" in samples_df:
        samples_df["finish_reason"] = samples_df["finish_reason"].astype("category")
    return Run(run_dir.path, manifest, samples_df, results_df, results)


def load_runs(pattern: str, metrics=("pass@1", "pass@10", "pass@100")) -> pd.DataFrame:
    """One row per run directory matching the glob: path, task, model, estimates and CIs."""
    rows = []
    for path in sorted(globlib.glob(str(pattern))):
        if not (Path(path) / MANIFEST).is_file():
            continue
        run = load_run(path)
        report = run.report
        row = {"path": str(path), "task": run.task, "task_fingerprint": report.get("task_fingerprint"),
               "model": _model_label(run.manifest), "created": run.manifest.get("created"),
               "n_problems": report["n_problems"], "n_samples": report["n_samples"]}
        for metric in metrics:
            e = report["pass_at_k"].get(metric) or {}
            row[metric] = e.get("estimate")
            row[f"{metric} ci_low"] = e.get("ci_low")
            row[f"{metric} ci_high"] = e.get("ci_high")
        rows.append(row)
    df = pd.DataFrame.from_records(rows)
    for metric in metrics:
        for column in (metric, f"{metric} ci_low", f"{metric} ci_high"):
            if column in df:
                df[column] = df[column].astype("float64")
    return df


def _model_label(manifest: dict) -> str | None:
    model = manifest.get("model")
    if isinstance(model, dict):
        return model.get("name") or model.get("path") or model.get("checkpoint") or json.dumps(model, sort_keys=True)
    return model


def plot_runs(df: pd.DataFrame, metric: str = "pass@1", ax=None, label: str = "model"):
    """Horizontal error bars of `metric` (in %) per run of a load_runs DataFrame; returns the Axes."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 0.4 * len(df) + 1.2))
    names = [str(x) if x is not None and x == x else str(p) for x, p in zip(df.get(label, df["path"]), df["path"])]
    est = 100 * df[metric].to_numpy(dtype=float)
    low = 100 * df[f"{metric} ci_low"].to_numpy(dtype=float)
    high = 100 * df[f"{metric} ci_high"].to_numpy(dtype=float)
    y = np.arange(len(df))
    ax.errorbar(est, y, xerr=[est - low, high - est], fmt="o", capsize=3)
    ax.set_yticks(y, names)
    ax.set_xlabel(f"{metric} (%)")
    ax.grid(axis="x", alpha=0.3)
    return ax

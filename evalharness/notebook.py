"""Notebook API: a run directory as pandas DataFrames, comparisons between runs, and plots.

    run = load_run("out/humaneval.run")          # repr: one line naming model, settings, pass@1
    run.problems.sort_values("pass@1").head()
    run.pass_at_k([1, 10], confidence=0.95)
    run.joined()                                 # samples with their results, one row per sample
    run.compare(load_run("out/baseline.run"))    # a DataFrame, one row per metric
    df = load_runs("out/*.run", ks=(1, 5))       # tidy: one row per run and metric
    plot_runs(df, "pass@1")
"""
from __future__ import annotations

import glob as globlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evalharness import reports
from evalharness.tasks.data import parse_json

from .errors import UsageError
from .runstore import RunDir, row_key

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


@dataclass(repr=False)
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
                    report = reports.validate_report(parse_json(stored.read_bytes()))
                except ValueError:  # not JSON, or not a valid report: rebuilt below
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
            problem_ids=_all_problem_ids(self.report), ks=_check_ks(ks), confidence=confidence,
            seed=(self.report.get("bootstrap") or {}).get("seed", 0))
        return pass_at_k_frame(report["pass_at_k"])

    @property
    def header(self) -> dict:
        """What was evaluated (model, decoding, task, harness), from the manifest."""
        return reports.report_header(self.manifest)

    @property
    def label(self) -> str:
        """The run's name in tables and plots: model and settings, e.g. 'demo (greedy, 512 new tokens)'."""
        return reports.run_label(self.header, fallback=self.path.name)

    def __repr__(self) -> str:
        e = (self.report.get("pass_at_k") or {}).get("pass@1") or {}
        score = f", pass@1 {100 * e['estimate']:.1f}%" if e.get("estimate") is not None else ""
        return f"<Run {self.task}: {self.label}, {len(self.results)} results{score} at {self.path}>"

    def joined(self) -> pd.DataFrame:
        """One row per sample: its samples.jsonl fields and its result (status, passed, error_type, ...)."""
        keys = ["task_id", "sample_idx"] + (["temperature"] if "temperature" in self.samples
                                            and "temperature" in self.results else [])
        results = self.results.drop(columns=[c for c in self.results.columns
                                             if c in self.samples.columns and c not in keys])
        return self.samples.merge(results, on=keys, how="left", validate="one_to_one")

    def compare(self, other: "Run", ks=None, confidence: float = 0.9) -> pd.DataFrame:
        """other versus self (other - self), paired over problems: one row per metric with both estimates,
        the difference, its CI and p-value (see reports.compare). `.attrs` holds the flipped problems
        ("lost", "gained"), both runs' labels, warnings and the whole comparison ("comparison")."""
        result = reports.compare(self.report, other.report, ks=ks, confidence=confidence)
        rows = [{"metric": name, "a": m["a"], "b": m["b"], "difference": m["difference"], "ci_low": m["ci_low"],
                 "ci_high": m["ci_high"], "p_value": m["p_value"], "test": m["test"], "n_common": m["n_common"],
                 "reason": m["reason"]} for name, m in result["metrics"].items()]
        df = pd.DataFrame.from_records(rows).set_index("metric")
        for column in ("a", "b", "difference", "ci_low", "ci_high", "p_value"):
            df[column] = df[column].astype("float64")
        df.attrs.update(lost=result["lost"], gained=result["gained"], a=self.label, b=other.label,
                        warnings=result["warnings"], comparison=result)
        return df


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
    manifest = run_dir.existing_manifest()
    samples, results = run_dir.samples(), run_dir.results()  # rows of the wrong shape: one line naming them
    results_df = _frame(results, _RESULT_COLUMNS)
    if "status" in results_df:
        results_df["status"] = results_df["status"].astype("category")
    samples_df = _frame(samples, _SAMPLE_COLUMNS)
    if "finish_reason" in samples_df:
        samples_df["finish_reason"] = samples_df["finish_reason"].astype("category")
    return Run(run_dir.path, manifest, samples_df, results_df, results)


def _check_ks(ks) -> tuple[int, ...]:
    """ks as a tuple of positive integers; anything else is a ValueError (pass@0 is no metric, and
    an empty tuple left no column to read)."""
    ks = (ks,) if isinstance(ks, (int, np.integer)) else tuple(ks)
    if not ks or not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"ks must be one or more integers >= 1, got {ks!r}")
    return ks


def load_runs(pattern, ks=(1, 10, 100), confidence: float = 0.9) -> pd.DataFrame:
    """A tidy frame: one row per run directory matching the glob (or any of a list of globs and paths)
    and metric pass@k (any k), with the estimate, its CI, and the run's model, decoding and speed
    columns. Directories that are not finished runs (no manifest or no results yet) are skipped with
    a warning."""
    ks = _check_ks(ks)
    patterns = [pattern] if isinstance(pattern, (str, Path)) else list(pattern)
    rows = []
    for path in dict.fromkeys(p for pat in patterns for p in sorted(globlib.glob(str(pat)))):
        if not Path(path).is_dir():
            continue
        try:
            run = load_run(path)
            if run.results.empty:
                raise UsageError("no results yet")
            table = run.pass_at_k(ks, confidence)
        except UsageError as e:
            warnings.warn(f"skipping {path}: {e}", stacklevel=2)
            continue
        about = _run_columns(run)
        for metric, e in table.iterrows():
            rows.append({**about, "metric": metric, "k": int(str(metric).removeprefix("pass@")),
                         "estimate": e["estimate"], "ci_low": e["ci_low"], "ci_high": e["ci_high"],
                         "temperature": e.get("temperature"), "computable": bool(e["computable"])})
    columns = ["path", "run", "task", "model", "decoding", "metric", "k", "estimate", "ci_low", "ci_high"]
    df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=columns)
    for column in ("estimate", "ci_low", "ci_high", "temperature", "tokens_per_s", "tokens_per_forward"):
        if column in df:
            df[column] = df[column].astype("float64")
    return df[columns + [c for c in df.columns if c not in columns]]


def _run_columns(run: Run) -> dict:
    """Per-run columns of load_runs: what was evaluated and how fast."""
    header = run.header
    model, decoding = header["model"], header["decoding"]
    speed = run.report.get("speed") or {}
    return {"path": str(run.path), "run": run.label, "task": run.task, "model": model["name"],
            "decoding": reports.decoding_label(header), "created": header["created"],
            "harness_version": header["harness_version"], "model_fingerprint": model["fingerprint"],
            "heads": model["heads"], "speculative": decoding["speculative"],
            "max_new_tokens": decoding["max_new_tokens"], "top_p": decoding["top_p"],
            "sandbox": header["sandbox"]["tier"], "n_problems": run.report["n_problems"],
            "n_samples": run.report["n_samples"], "tokens_per_s": _number(speed.get("tokens_per_s")),
            "tokens_per_forward": _number(speed.get("tokens_per_forward"))}


def _number(value) -> float | None:
    """A speed figure as a number; None for anything else (a hand-edited report's "x" must not stop load_runs)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def plot_runs(df: pd.DataFrame, metric: str = "pass@1", ax=None, label: str = "run"):
    """Horizontal error bars of `metric` (in %) per run of a load_runs frame, each run labelled by its
    model and settings (the `run` column); returns the Axes."""
    rows = df[df["metric"] == metric] if "metric" in df else df
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    names = [x if isinstance(x, str) else str(p) for x, p in zip(rows.get(label, rows["path"]), rows["path"])]
    est = 100 * rows["estimate"].to_numpy(dtype=float)
    low = 100 * rows["ci_low"].to_numpy(dtype=float)
    high = 100 * rows["ci_high"].to_numpy(dtype=float)
    y = np.arange(len(rows))
    ax.errorbar(est, y, xerr=[est - low, high - est], fmt="o", capsize=3)
    ax.set_yticks(y, names)
    ax.set_xlabel(f"{metric} (%)")
    ax.grid(axis="x", alpha=0.3)
    return ax

"""Paired comparison of two runs of the same task, and the CI regression gate built on it.

Both take report dicts (their per_problem rows carry n and c) or lists of
result rows. The comparison is paired over the problems both runs evaluated:
the same bootstrap resamples apply to both sides. Runs with one sample per
problem on both sides also get McNemar's exact test, the classic test for
greedy pass/fail pairs, which then decides significance.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .build import build_report, per_problem_pass_at_k
from .header import decoding_differences, run_label
from .stats import DEFAULT_RESAMPLES, check_confidence, mcnemar_exact, paired_bootstrap

_METRIC = re.compile(r"pass@([1-9][0-9]*)")
# Speed figures the gate takes as --metric (from each report's "speed"), with their display names.
SPEED_METRICS = {"tokens_per_forward": "tokens per forward", "tokens_per_s": "tokens per second"}
SPEED_ALIASES = {"tokens/forward": "tokens_per_forward", "tokens-per-forward": "tokens_per_forward",
                 "tokens/s": "tokens_per_s", "tokens-per-s": "tokens_per_s"}


class ComparisonError(ValueError):
    """The two runs cannot be compared as asked (other task, bad metric, missing problems)."""


@dataclass(frozen=True)
class Side:
    """One run reduced to what a comparison needs: per-problem (n, c) per temperature."""

    task: str | None
    fingerprint: str | None
    counts: dict  # temperature -> {task_id: (n, c)}
    headline: dict  # "pass@k" -> temperature chosen for the report's headline
    header: dict | None = None  # what was evaluated (report.json schema 2)
    speed: dict | None = None

    @classmethod
    def of(cls, report_or_rows, ks=(1, 10, 100)) -> "Side":
        report = report_or_rows
        if isinstance(report_or_rows, (list, tuple)):
            ids = list(dict.fromkeys(r["task_id"] for r in report_or_rows))
            report = build_report(list(report_or_rows), task=None, task_fingerprint=None, problem_ids=ids,
                                  ks=ks, n_resamples=1)
        if not isinstance(report, dict) or "per_problem" not in report:
            raise ComparisonError("expected a report (with per_problem rows) or a list of result rows")
        counts: dict = {}
        for row in report["per_problem"]:
            counts.setdefault(row.get("temperature"), {})[row["task_id"]] = (int(row["n"]), int(row["c"]))
        headline = {name: e.get("temperature") for name, e in (report.get("pass_at_k") or {}).items()}
        return cls(report.get("task"), report.get("task_fingerprint"), counts, headline, report.get("header"),
                   report.get("speed") if isinstance(report.get("speed"), dict) else None)

    @property
    def version(self):
        return ((self.header or {}).get("task") or {}).get("version")

    def temperature_for(self, metric: str):
        if metric in self.headline:
            return self.headline[metric]
        if len(self.counts) == 1:
            return next(iter(self.counts))
        raise ComparisonError(f"{metric} is not in the report; re-render it with that k")


def parse_metric(metric: str) -> int:
    m = _METRIC.fullmatch(metric)
    if not m:
        raise ComparisonError(f"unknown metric {metric!r}; expected pass@K (e.g. pass@1), tokens_per_forward "
                              "or tokens_per_s")
    return int(m.group(1))


def speed_metric(metric: str) -> str | None:
    """The speed key a --metric names (tokens_per_forward, tokens_per_s), or None for pass@k."""
    metric = SPEED_ALIASES.get(metric, metric)
    return metric if metric in SPEED_METRICS else None


def compare(a, b, *, ks=None, confidence: float = 0.9, seed: int = 0,
            n_resamples: int = DEFAULT_RESAMPLES, subset: bool = False) -> dict:
    """b versus a: per-k difference (b - a) with paired bootstrap CI and p-value, and flipped problems.

    `a` and `b` are reports or lists of result rows. Reports of different task
    fingerprints are refused (ComparisonError), unless `subset`: then runs of the
    same task name and version whose fingerprints differ (a --limit'ed run against
    a full one) compare on their common problem ids, with a warning saying so.
    """
    try:
        check_confidence(confidence)
    except ValueError as e:
        raise ComparisonError(str(e)) from None
    side_a, side_b = Side.of(a, ks or (1, 10, 100)), Side.of(b, ks or (1, 10, 100))
    warnings = []
    if side_a.fingerprint and side_b.fingerprint and side_a.fingerprint != side_b.fingerprint:
        same_task = side_a.task == side_b.task and side_a.version == side_b.version
        if same_task and not subset:
            raise ComparisonError(f"runs are of different tasks or problem subsets of {side_a.task} (fingerprints "
                                  f"{side_a.fingerprint} vs {side_b.fingerprint}); for a --limit'ed run against a "
                                  "full one pass --allow-partial to compare on the common problems")
        if not same_task:
            raise ComparisonError(f"runs are of different tasks: {side_a.task} ({side_a.fingerprint}) vs "
                                  f"{side_b.task} ({side_b.fingerprint}); only runs of the same task compare")
        warnings.append(f"task fingerprints differ ({side_a.fingerprint} vs {side_b.fingerprint}: a --limit'ed "
                        f"or partial run of {side_a.task}); compared on the problems both evaluated, by id")
    warnings += [f"decoding settings differ: {d}" for d in decoding_differences(side_a.header, side_b.header)]
    if ks is None:
        ks = sorted({parse_metric(m) for m in side_a.headline} & {parse_metric(m) for m in side_b.headline}) or [1]
    metrics = {f"pass@{k}": _compare_metric(side_a, side_b, k, confidence, seed, n_resamples) for k in ks}
    first = next(iter(metrics.values()))
    return {
        "task": side_a.task or side_b.task,
        "task_fingerprint": side_a.fingerprint or side_b.fingerprint,
        "a": {"label": run_label(side_a.header, "A"), "header": side_a.header, "speed": _speed_figures(side_a)},
        "b": {"label": run_label(side_b.header, "B"), "header": side_b.header, "speed": _speed_figures(side_b)},
        "warnings": warnings,
        "confidence": confidence,
        "n_common": first["n_common"],
        "only_a": first["only_a"],
        "only_b": first["only_b"],
        "metrics": metrics,
        "lost": first["lost"],
        "gained": first["gained"],
    }


def _compare_metric(side_a: Side, side_b: Side, k: int, confidence, seed, n_resamples) -> dict:
    metric = f"pass@{k}"
    temp_a, temp_b = side_a.temperature_for(metric), side_b.temperature_for(metric)
    by_id_a, by_id_b = side_a.counts.get(temp_a, {}), side_b.counts.get(temp_b, {})
    common = [t for t in by_id_a if t in by_id_b]
    n_a, c_a = (np.array([by_id_a[t][j] for t in common], dtype=np.int64) for j in (0, 1))
    n_b, c_b = (np.array([by_id_b[t][j] for t in common], dtype=np.int64) for j in (0, 1))
    out = {"metric": metric, "n_common": len(common),
           "only_a": [t for t in by_id_a if t not in by_id_b], "only_b": [t for t in by_id_b if t not in by_id_a],
           "a": None, "b": None, "difference": None, "ci_low": None, "ci_high": None, "p_value": None,
           "test": None, "computable": False, "reason": None,
           # flipped: some sample passed on one side, none on the other (pass/fail for greedy runs)
           "lost": [t for t, x, y in zip(common, c_a, c_b) if x > 0 and y == 0],
           "gained": [t for t, x, y in zip(common, c_a, c_b) if x == 0 and y > 0]}
    if temp_a is not None or temp_b is not None:
        out.update(temperature_a=temp_a, temperature_b=temp_b)
    if not common:
        out["reason"] = "no problems evaluated by both runs"
        return out
    fewest = int(min(n_a.min(), n_b.min()))
    if k > fewest:
        out["reason"] = f"k={k} > n={fewest} samples for some problems"
        return out
    values_a, values_b = per_problem_pass_at_k(n_a, c_a, k), per_problem_pass_at_k(n_b, c_b, k)
    boot = paired_bootstrap(values_a, values_b, confidence, n_resamples, seed)
    out.update(a=float(values_a.mean()), b=float(values_b.mean()), difference=boot["difference"],
               ci_low=boot["ci_low"], ci_high=boot["ci_high"], p_value=boot["p_value"], test="paired bootstrap",
               computable=True)
    if k == 1 and n_a.max() == 1 and n_b.max() == 1:  # greedy pairs: McNemar's exact test decides
        out.update(p_value=mcnemar_exact(len(out["lost"]), len(out["gained"])), test="McNemar exact",
                   bootstrap_p_value=boot["p_value"])
    return out


def _speed_figures(side: Side) -> dict:
    return {key: side.speed[key] for key in SPEED_METRICS
            if side.speed and isinstance(side.speed.get(key), (int, float)) and not isinstance(side.speed[key], bool)}


def gate(candidate, baseline, *, metric: str = "pass@1", max_drop: float = 1.0, confidence: float = 0.9,
         seed: int = 0, allow_partial: bool = False, n_resamples: int = DEFAULT_RESAMPLES) -> dict:
    """Fail when `metric` dropped by more than `max_drop` percentage points AND the drop is significant.

    Significant means p < 1 - confidence (two-sided), the test being McNemar's for
    single-sample runs, the paired bootstrap otherwise. A candidate that did not
    evaluate every baseline problem is refused unless allow_partial. A speed metric
    (tokens_per_forward, tokens_per_s) fails when it fell by more than `max_drop`
    percent of the baseline's figure (a tolerance: speed has no per-problem pairing).
    """
    if not (isinstance(max_drop, (int, float)) and math.isfinite(max_drop) and max_drop >= 0):
        raise ComparisonError(f"--max-drop must be a finite number >= 0, got {max_drop}")
    speed_key = speed_metric(metric)
    if speed_key is not None:
        return _speed_gate(candidate, baseline, speed_key, max_drop, confidence)
    k = parse_metric(metric)
    cmp = compare(baseline, candidate, ks=[k], confidence=confidence, seed=seed, n_resamples=n_resamples,
                  subset=allow_partial)
    m = cmp["metrics"][metric]
    if cmp["only_a"] and not allow_partial:
        raise ComparisonError(f"the run lacks {len(cmp['only_a'])} problem(s) the baseline has "
                              f"(e.g. {cmp['only_a'][0]}); finish the run or pass --allow-partial")
    if not m["computable"]:
        raise ComparisonError(f"{metric} is not computable: {m['reason']}")
    drop = -100.0 * m["difference"]
    significant = m["p_value"] < 1.0 - confidence
    failed = drop > max_drop and significant
    if failed:
        verdict = f"{metric} dropped {drop:.1f} points (> {max_drop:g} allowed) and the drop is significant"
    elif drop > max_drop:
        verdict = f"{metric} dropped {drop:.1f} points but the drop is not significant (p={m['p_value']:.3g})"
    elif drop > 0:
        verdict = f"{metric} dropped {drop:.1f} points, within the {max_drop:g} allowed"
    else:
        verdict = f"{metric} did not drop ({-drop:+.1f} points)"
    return {
        "passed": not failed,
        "verdict": verdict,
        "metric": metric,
        "max_drop": max_drop,
        "confidence": confidence,
        "baseline": m["a"],
        "candidate": m["b"],
        "drop_points": drop,
        "ci_low_points": 100.0 * m["ci_low"],
        "ci_high_points": 100.0 * m["ci_high"],
        "p_value": m["p_value"],
        "test": m["test"],
        "significant": bool(significant),
        "n_common": cmp["n_common"],
        "only_baseline": cmp["only_a"],
        "only_candidate": cmp["only_b"],
        "lost": m["lost"],
        "gained": m["gained"],
        "task": cmp["task"],
        "task_fingerprint": cmp["task_fingerprint"],
        "baseline_run": _named(cmp["a"], "baseline"),
        "candidate_run": _named(cmp["b"], "run"),
        "warnings": cmp["warnings"],
    }


def _named(side: dict, name: str) -> dict:
    """A side without a header (a report of 0.1.x) is named by its role, saying so."""
    return side if side.get("header") else {**side, "label": f"{name} (a report without a header: made by 0.1.x)"}


def _speed_gate(candidate, baseline, key: str, max_drop: float, confidence: float) -> dict:
    """The gate on a speed figure: fail when it fell by more than max_drop percent of the baseline's."""
    side_c, side_b = Side.of(candidate), Side.of(baseline)
    if side_c.fingerprint and side_b.fingerprint and side_c.fingerprint != side_b.fingerprint and \
            side_c.task != side_b.task:
        raise ComparisonError(f"runs are of different tasks: {side_b.task} vs {side_c.task}")
    values = {}
    for name, side in (("baseline", side_b), ("run", side_c)):
        value = _speed_figures(side).get(key)
        if value is None or not math.isfinite(value) or value <= 0:
            raise ComparisonError(f"the {name} report has no {SPEED_METRICS[key]} figure (speed.{key}); "
                                  "gate speed on reports of runs that generated")
        values[name] = float(value)
    drop = 100.0 * (values["baseline"] - values["run"]) / values["baseline"]
    failed = drop > max_drop
    label = SPEED_METRICS[key]
    verdict = (f"{label} fell {drop:.1f}% (> {max_drop:g}% allowed)" if failed else
               f"{label} fell {drop:.1f}%, within the {max_drop:g}% allowed" if drop > 0 else
               f"{label} did not fall ({-drop:+.1f}%)")
    warnings = [f"decoding settings differ: {d}" for d in decoding_differences(side_b.header, side_c.header)]
    return {"passed": not failed, "verdict": verdict, "metric": key, "kind": "speed", "max_drop": max_drop,
            "max_drop_unit": "percent of the baseline", "confidence": confidence,
            "baseline": values["baseline"], "candidate": values["run"], "drop_percent": drop,
            "test": "tolerance (no significance test: speed has no per-problem pairing)",
            "task": side_c.task or side_b.task, "task_fingerprint": side_c.fingerprint or side_b.fingerprint,
            "baseline_run": {"label": run_label(side_b.header, "baseline"), "header": side_b.header},
            "candidate_run": {"label": run_label(side_c.header, "run"), "header": side_c.header},
            "warnings": warnings}

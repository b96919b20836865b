import ast
import math
from pathlib import Path

import numpy as np
import pytest

from evalharness import reports
from evalharness.reports.stats import resample_counts
from test_reports_fixtures import greedy_outcomes, outcome_rows


def build(results, ids=None, **kw):
    ids = ids or list(dict.fromkeys(r["task_id"] for r in results))
    return reports.build_report(results, task="synthetic", task_fingerprint="fp", problem_ids=ids, **kw)


def test_reports_imports_nothing_of_the_spine_or_other_leaves():
    for path in Path(reports.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                assert name.split(".")[0] not in {"evalharness", "tasks", "sandboxes"}, (path.name, name)


def test_report_counts_statuses_missing_problems_and_not_computable_k():
    _, results = outcome_rows({"P/0": [True, False, "error:NameError", "timeout"],
                               "P/1": [True, True, True, "error:NameError"]})
    report = build(results, ids=["P/0", "P/1", "P/2"], ks=(1, 2, 10))
    assert report["n_problems"] == 2 and report["n_problems_total"] == 3
    assert report["missing_problems"] == ["P/2"]
    assert report["n_samples"] == 8
    assert report["status_counts"] == {"passed": 4, "error:NameError": 2, "failed": 1, "timeout": 1}
    p1 = report["pass_at_k"]["pass@1"]
    assert p1["computable"] and p1["estimate"] == pytest.approx((1 / 4 + 3 / 4) / 2)
    assert p1["ci_low"] <= p1["estimate"] <= p1["ci_high"]
    p10 = report["pass_at_k"]["pass@10"]
    assert p10 == {"estimate": None, "ci_low": None, "ci_high": None, "computable": False,
                   "reason": "k=10 > n=4 samples for some problems"}
    rows = {r["task_id"]: r for r in report["per_problem"]}
    assert (rows["P/0"]["n"], rows["P/0"]["c"], rows["P/0"]["pass@10"]) == (4, 1, None)
    assert rows["P/0"]["pass@2"] == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    taxonomy = {f["label"]: f for f in report["failure_taxonomy"]}
    assert taxonomy["error:NameError"]["count"] == 2 and taxonomy["error:NameError"]["n_problems"] == 2
    assert sum(f["share"] for f in report["failure_taxonomy"]) == pytest.approx(1.0)
    assert [s["task_id"] for s in report["slowest_problems"]] == sorted(
        rows, key=lambda t: -np.mean([r["duration_s"] for r in results if r["task_id"] == t]))


def test_same_seed_same_intervals_other_seed_other_intervals():
    _, results = outcome_rows({f"P/{i}": [i % 2 == 0, i % 3 == 0] for i in range(40)})
    a, b, c = (build(results, n_resamples=100, seed=seed) for seed in (0, 0, 1))
    assert a == b
    assert a["pass_at_k"]["pass@1"]["ci_low"] != c["pass_at_k"]["pass@1"]["ci_low"] or \
        a["pass_at_k"]["pass@1"]["ci_high"] != c["pass_at_k"]["pass@1"]["ci_high"]


def test_rerun_key_keeps_the_last_row_and_unknown_ids_are_listed():
    _, results = outcome_rows({"P/0": [False]})
    results.append({**results[0], "status": "passed", "passed": True})
    results.append({**results[0], "task_id": "Other/9"})
    report = build(results, ids=["P/0"])
    assert report["n_samples"] == 1 and report["pass_at_k"]["pass@1"]["estimate"] == 1.0
    assert report["unknown_task_ids"] == ["Other/9"]


def test_multi_suite_rows_get_pass_at_k_by_suite():
    _, results = outcome_rows({"P/0": [True, False], "P/1": [False, False]})
    suites = [({"passed": True}, {"passed": True}), ({"passed": True}, {"passed": False}),
              ({"passed": True}, {"passed": False}), ({"passed": False}, {"passed": False})]
    for r, (base, plus) in zip(results, suites):
        r["suites"] = {"base": {"status": "x", "error_type": None, **base},
                       "plus": {"status": "x", "error_type": None, **plus}}
    report = build(results, ks=(1,))
    assert report["pass_at_k_by_suite"]["base"]["pass@1"]["estimate"] == pytest.approx((2 / 2 + 1 / 2) / 2)
    assert report["pass_at_k_by_suite"]["plus"]["pass@1"]["estimate"] == pytest.approx(1 / 4)
    assert report["per_problem"][0]["c_by_suite"] == {"base": 2, "plus": 1}


def test_temperature_sweep_reports_each_temperature_and_the_best_per_k():
    outcomes_low = {f"P/{i}": [True] * 3 + [False] * 7 if i % 2 else [False] * 10 for i in range(20)}
    outcomes_high = {f"P/{i}": [True] * 2 + [False] * 8 for i in range(20)}
    _, low = outcome_rows(outcomes_low, temperature=0.1)
    _, high = outcome_rows(outcomes_high, temperature=0.8)
    report = build(low + high, ks=(1, 5, 20))
    assert report["temperatures"] == [0.1, 0.8]
    by_t = report["by_temperature"]
    assert by_t["0.1"]["pass_at_k"]["pass@1"]["estimate"] == pytest.approx(0.15)
    assert by_t["0.8"]["pass_at_k"]["pass@1"]["estimate"] == pytest.approx(0.2)
    # pass@5: half the problems at 1 - C(7,5)/C(10,5) vs all problems at 1 - C(8,5)/C(10,5)
    low5 = 0.5 * (1 - math.comb(7, 5) / math.comb(10, 5))
    high5 = 1 - math.comb(8, 5) / math.comb(10, 5)
    assert by_t["0.1"]["pass_at_k"]["pass@5"]["estimate"] == pytest.approx(low5)
    assert report["best_temperature"]["pass@5"]["temperature"] == 0.8
    assert report["pass_at_k"]["pass@5"]["estimate"] == pytest.approx(high5)
    assert report["pass_at_k"]["pass@5"]["temperature"] == 0.8
    assert not report["pass_at_k"]["pass@20"]["computable"] and "pass@20" not in report["best_temperature"]
    assert len(report["per_problem"]) == 40 and {r["temperature"] for r in report["per_problem"]} == {0.1, 0.8}


def test_extra_fields_are_added_but_never_overwrite():
    _, results = outcome_rows({"P/0": [True]})
    assert build(results, extra={"model": "m"})["model"] == "m"
    with pytest.raises(ValueError, match="overwrite"):
        build(results, extra={"pass_at_k": {}})


def test_bootstrap_matrix_product_equals_explicit_resampling():
    values = np.random.default_rng(3).random((30, 2))
    means = reports.bootstrap_means(values, n_resamples=50, seed=7)
    rng = np.random.default_rng(7)
    draws = rng.integers(0, 30, size=(50, 30), dtype=np.int32)
    assert np.allclose(means, values[draws].mean(axis=1))
    counts = next(resample_counts(30, 50, seed=7))
    assert (counts.sum(axis=1) == 30).all()


def coverage(reps: int, seed: int, ks=(1, 5)) -> dict:
    """Synthetic benchmarks of 100 problems with Beta(2, 3) pass rates, 10 samples each: the truth is the
    population mean of pass@k, E[1 - (1 - p)^k]. Returns the share of 90% intervals covering it, per k."""
    a, b, n_problems, n = 2.0, 3.0, 100, 10
    rng = np.random.default_rng(seed)
    correct = rng.binomial(n, rng.beta(a, b, size=(n_problems, reps)))
    out = {}
    for k in ks:
        truth = 1 - np.prod([(b + j) / (a + b + j) for j in range(k)])
        values = np.stack([reports.estimate_pass_at_k(np.full(n_problems, n), correct[:, r], k)
                           for r in range(reps)], axis=1)
        low, high = reports.bootstrap_ci(values, confidence=0.9, n_resamples=2000, seed=1)
        out[k] = float(np.mean((low <= truth) & (truth <= high)))
    return out


def test_ci_covers_known_true_pass_rate_about_90_percent_of_the_time():
    for k, share in coverage(reps=200, seed=12345).items():
        assert 0.85 <= share <= 0.95, (k, share)


@pytest.mark.slow
def test_ci_coverage_is_close_to_90_percent_over_many_repetitions():
    for k, share in coverage(reps=2000, seed=2024).items():
        assert 0.88 <= share <= 0.92, (k, share)


def test_mcnemar_exact_matches_the_binomial_test():
    assert reports.mcnemar_exact(0, 0) == 1.0
    assert reports.mcnemar_exact(15, 0) == pytest.approx(2 * 0.5 ** 15)
    assert reports.mcnemar_exact(3, 3) == 1.0
    assert reports.mcnemar_exact(1, 7) == pytest.approx(2 * 9 / 256)
    stats = pytest.importorskip("scipy.stats")
    for x, y in [(4, 11), (10, 2), (20, 25)]:
        assert reports.mcnemar_exact(x, y) == pytest.approx(stats.binomtest(x, x + y, 0.5).pvalue)


def test_paired_bootstrap_is_null_for_identical_runs_and_finds_a_large_drop():
    a = np.array([1.0] * 60 + [0.0] * 40)
    same = reports.paired_bootstrap(a, a)
    assert same["difference"] == 0 and same["p_value"] == 1.0 and same["ci_low"] == same["ci_high"] == 0
    b = a.copy()
    b[:15] = 0
    drop = reports.paired_bootstrap(a, b, confidence=0.9)
    assert drop["difference"] == pytest.approx(-0.15) and drop["ci_high"] < 0 and drop["p_value"] < 0.01


def test_compare_refuses_other_tasks_and_lists_flips():
    _, base = outcome_rows(greedy_outcomes(30))
    _, new = outcome_rows(greedy_outcomes(30, flipped=4))
    ra, rb = build(base, ks=(1,)), build(new, ks=(1,))
    cmp = reports.compare(ra, rb)
    m = cmp["metrics"]["pass@1"]
    assert m["difference"] == pytest.approx(-4 / 30)
    assert m["test"] == "McNemar exact" and m["p_value"] == pytest.approx(2 * 0.5 ** 4)
    assert cmp["lost"] == ["Syn/1", "Syn/2", "Syn/4", "Syn/5"] and cmp["gained"] == []
    assert reports.compare(rb, ra)["gained"] == cmp["lost"]
    assert reports.compare(base, new)["metrics"]["pass@1"]["difference"] == pytest.approx(-4 / 30)  # raw rows
    with pytest.raises(reports.ComparisonError, match="different tasks") as e:
        reports.compare(ra, {**rb, "task_fingerprint": "other"})
    assert isinstance(e.value, ValueError)


def test_compare_of_sweeps_pairs_each_sides_headline_temperature():
    _, a_low = outcome_rows({f"P/{i}": [i < 10, False] for i in range(20)}, 0.1)
    _, a_high = outcome_rows({f"P/{i}": [i < 4, i < 4] for i in range(20)}, 0.8)
    _, b_high = outcome_rows({f"P/{i}": [i < 16, i < 16] for i in range(20)}, 0.8)
    a, b = build(a_low + a_high, ks=(1, 2)), build(b_high, ks=(1, 2))
    m = reports.compare(a, b)["metrics"]
    assert (m["pass@1"]["temperature_a"], m["pass@1"]["temperature_b"]) == (0.1, 0.8)
    assert m["pass@1"]["difference"] == pytest.approx(16 / 20 - 10 / 40)
    assert m["pass@2"]["temperature_a"] == 0.1 and m["pass@2"]["difference"] == pytest.approx(16 / 20 - 10 / 20)
    assert m["pass@1"]["test"] == "paired bootstrap" and m["pass@1"]["p_value"] < 0.01


def test_empty_results_give_a_report_with_nothing_computable():
    report = build([], ids=["P/0"])
    assert report["missing_problems"] == ["P/0"] and "temperatures" not in report
    assert report["pass_at_k"]["pass@1"]["reason"] == "no problems evaluated"
    assert "## pass@k" in reports.render_markdown(report) and "<html" in reports.render_html(report)

"""pass@k intervals that stay honest at 0% and 100%: Wilson for 0/1 problem values, BCa otherwise."""
import numpy as np
import pytest

from evalharness import reports
from evalharness.reports.stats import bca_interval, wilson_interval
from test_reports_fixtures import outcome_rows

stats = pytest.importorskip("scipy.stats")


def table(outcomes, ks=(1,), confidence=0.9):
    _, rows = outcome_rows(outcomes)
    ids = list(outcomes)
    return reports.build_report(rows, task="t", task_fingerprint="fp", problem_ids=ids, ks=ks,
                                confidence=confidence)["pass_at_k"]


@pytest.mark.parametrize("solved", [0, 3, 10])
def test_greedy_run_gets_the_wilson_interval_scipy_computes(solved):
    entry = table({f"P/{i}": [i < solved] for i in range(10)})["pass@1"]
    ref = stats.binomtest(solved, 10).proportion_ci(confidence_level=0.9, method="wilson")
    assert entry["interval"] == "wilson"
    assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_nothing_solved_is_not_a_point_interval_at_zero():
    """The percentile bootstrap said 0.0 [0.0, 0.0] for 0 of 10 solved: no uncertainty at all."""
    none = table({f"P/{i}": [False] * 5 for i in range(10)}, ks=(1, 5))
    for name in ("pass@1", "pass@5"):
        assert none[name]["estimate"] == 0.0 and none[name]["ci_low"] == 0.0
        assert none[name]["ci_high"] == pytest.approx(0.2127, abs=1e-3)  # 90% Wilson, 0 of 10
    every = table({f"P/{i}": [True] * 5 for i in range(10)})["pass@1"]
    assert every["ci_high"] == 1.0 and every["ci_low"] == pytest.approx(1 - 0.2127, abs=1e-3)


def test_sampled_runs_get_a_bca_interval_close_to_scipys():
    rng = np.random.default_rng(5)
    values = rng.beta(0.6, 1.4, size=60)  # skewed per-problem pass rates, as real benchmarks have
    dist = reports.bootstrap_means(values, n_resamples=20_000, seed=3)
    low, high = bca_interval(values, dist, 0.9)
    ref = stats.bootstrap((values,), np.mean, confidence_level=0.9, method="BCa", n_resamples=20_000,
                          random_state=np.random.default_rng(4)).confidence_interval
    # two independent sets of resamples: they agree to Monte Carlo error (about 0.002 here)
    assert float(low[0]) == pytest.approx(ref.low, abs=0.006)
    assert float(high[0]) == pytest.approx(ref.high, abs=0.006)
    pct_low, pct_high = reports.percentile_interval(dist, 0.9)
    assert abs(float(low[0]) - pct_low) > 1e-4  # BCa shifts a skewed interval; it is not the percentile one


def test_report_names_the_interval_method():
    report_table = table({f"P/{i}": [i % 2 == 0, i % 3 == 0] for i in range(20)}, ks=(1, 2))
    assert report_table["pass@1"]["interval"] == "bca"
    assert report_table["pass@2"]["interval"] == "wilson"  # n = 2: pass@2 of a problem is 0 or 1
    _, rows = outcome_rows({"P/0": [True]})
    report = reports.build_report(rows, task="t", task_fingerprint="fp", problem_ids=["P/0"], ks=(1,))
    assert "BCa" in report["bootstrap"]["method"] and "Wilson" in report["bootstrap"]["method"]
    md = reports.render_markdown(report)
    assert "Wilson" in md and "BCa" in md


def coverage_at_the_edge(p: float, problems: int, reps: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    solved = rng.binomial(problems, p, size=reps)
    low, high = wilson_interval(solved, problems, 0.9)
    return float(np.mean((low <= p) & (p <= high)))


def test_greedy_interval_covers_a_rare_pass_rate():
    """At a 3% true rate on 40 problems most runs solve 0-2: the percentile bootstrap's [0, 0] covers
    nothing there; the Wilson interval keeps close to its nominal 90%."""
    assert coverage_at_the_edge(0.03, 40, 4000, seed=1) >= 0.85
    assert coverage_at_the_edge(0.97, 40, 4000, seed=2) >= 0.85


def test_sampled_interval_coverage_with_bca():
    """Beta(2, 3) pass rates, 100 problems x 10 samples: the report's BCa intervals cover the true
    population pass@k about 90% of the time."""
    a, b, reps = 2.0, 3.0, 150
    rng = np.random.default_rng(77)
    correct = rng.binomial(10, rng.beta(a, b, size=(100, reps)))
    for k in (1, 5):
        truth = 1 - np.prod([(b + j) / (a + b + j) for j in range(k)])
        hits = 0
        for r in range(reps):
            entry = reports.pass_at_k_table(np.full(100, 10), correct[:, r], [k], 0.9, n_resamples=2000)[f"pass@{k}"]
            hits += entry["ci_low"] <= truth <= entry["ci_high"]
        assert 0.83 <= hits / reps <= 0.97, (k, hits / reps)

"""Bootstrap confidence intervals over problems, paired differences, and McNemar's exact test.

Every interval resamples *problems* (the unit the benchmark samples from a
population of possible problems), with a fixed seed so a report is
reproducible byte for byte. Resamples are drawn once as a count matrix
(resample x problem) and applied to every metric with one matrix product, so
all k, all suites and both sides of a paired comparison share the same draws.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

DEFAULT_RESAMPLES = 10_000
_CHUNK = 2_000  # resamples per block: bounds memory at chunk * problems counts


def resample_counts(n_problems: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0):
    """Yield blocks of bootstrap count matrices: entry [b, i] = times problem i is drawn in resample b."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        draws = rng.integers(0, n_problems, size=(size, n_problems), dtype=np.int32)
        flat = draws + (np.arange(size, dtype=np.int64) * n_problems)[:, None]
        counts = np.bincount(flat.ravel(), minlength=size * n_problems).reshape(size, n_problems)
        yield counts.astype(np.float64)  # float: the matrix product then runs in BLAS


def bootstrap_means(values, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of the column means of `values` (problems x metrics) -> (resamples x metrics).

    A 1-D `values` is one metric; the result is then 1-D too.
    """
    values = np.asarray(values, dtype=np.float64)
    one_metric = values.ndim == 1
    matrix = np.ascontiguousarray(values[:, None] if one_metric else values)
    n = matrix.shape[0]
    if n == 0:
        raise ValueError("bootstrap needs at least one problem")
    blocks = [counts @ matrix for counts in resample_counts(n, n_resamples, seed)]
    means = np.concatenate(blocks) / n
    return means[:, 0] if one_metric else means


def percentile_interval(distribution, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """The central `confidence` interval of a bootstrap distribution (along axis 0)."""
    check_confidence(confidence)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(distribution, [tail, 1.0 - tail], axis=0)
    return low, high


def bootstrap_ci(values, confidence: float = 0.9, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0):
    """Percentile interval of the mean over problems of `values` (per column when 2-D)."""
    return percentile_interval(bootstrap_means(values, n_resamples, seed), confidence)


def bca_interval(values, distribution, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Bias-corrected and accelerated (BCa, Efron 1987) interval of the mean, per column.

    `values` are the per-problem values (problems x metrics), `distribution` their
    bootstrap means (resamples x metrics). The bias correction uses the mid-rank share
    of resamples below the estimate, the acceleration the jackknife skewness of the mean
    (for the mean it has the closed form sum(d^3) / (6 sum(d^2)^1.5), d = x - mean).
    A column without spread (every problem the same value) gets the point interval.
    """
    check_confidence(confidence)
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    distribution = np.asarray(distribution, dtype=np.float64).reshape(len(distribution), -1)
    estimate = values.mean(axis=0)
    low, high = estimate.copy(), estimate.copy()
    normal = NormalDist()
    tail = (1.0 - confidence) / 2
    for j in range(values.shape[1]):
        d = values[:, j] - estimate[j]
        spread = float(np.sum(d * d))
        if spread == 0.0:
            continue
        boot = distribution[:, j]
        below = (np.count_nonzero(boot < estimate[j]) + np.count_nonzero(boot <= estimate[j])) / (2 * len(boot))
        z0 = normal.inv_cdf(min(max(below, 1e-12), 1 - 1e-12))
        accel = float(np.sum(d ** 3)) / (6.0 * spread ** 1.5)
        levels = []
        for alpha in (tail, 1.0 - tail):
            z = z0 + normal.inv_cdf(alpha)
            levels.append(normal.cdf(z0 + z / (1.0 - accel * z)))
        low[j], high[j] = np.quantile(boot, levels)
    return low, high


def wilson_interval(successes, trials: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (per entry of `successes`).

    Unlike a bootstrap it stays honest at the edges: 0 of 10 gives [0, 0.21] at 90%, not [0, 0].
    """
    check_confidence(confidence)
    if trials < 1:
        raise ValueError("a binomial interval needs at least one trial")
    x = np.asarray(successes, dtype=np.float64)
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2)
    center = (x + z * z / 2) / (trials + z * z)
    half = z / (trials + z * z) * np.sqrt(x * (trials - x) / trials + z * z / 4)
    return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)


def paired_bootstrap(values_a, values_b, confidence: float = 0.9, n_resamples: int = DEFAULT_RESAMPLES,
                     seed: int = 0) -> dict:
    """Mean difference b - a over the same problems, its percentile CI and a two-sided p-value.

    Both sides are resampled with the same problem indices (a paired design).
    The p-value inverts the percentile interval: about the smallest alpha at which
    the (1 - alpha) interval excludes 0, so "p < 1 - confidence" and "the CI
    excludes 0" agree.
    """
    a = np.asarray(values_a, dtype=np.float64)
    b = np.asarray(values_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired values need the same problems on both sides")
    diffs = b - a
    dist = bootstrap_means(diffs, n_resamples, seed)
    low, high = percentile_interval(dist, confidence)
    tail = min(np.count_nonzero(dist <= 0), np.count_nonzero(dist >= 0))
    p = min(1.0, 2.0 * (tail + 1) / (n_resamples + 1))  # +1: a finite resampling never proves p = 0
    return {"difference": float(diffs.mean()), "ci_low": float(low), "ci_high": float(high), "p_value": float(p)}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts (binomial test at 1/2)."""
    total = only_a + only_b
    if total == 0:
        return 1.0
    smaller = min(only_a, only_b)
    tail = sum(math.comb(total, i) for i in range(smaller + 1)) / 2.0**total
    return min(1.0, 2.0 * tail)


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")

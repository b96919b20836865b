"""Bootstrap confidence intervals over problems, paired differences, and McNemar's exact test.

Every interval resamples *problems* (the unit the benchmark samples from a
population of possible problems), with a fixed seed so a report is
reproducible byte for byte. Resamples are drawn once as a count matrix
(resample x problem) and applied to every metric with one matrix product, so
all k, all suites and both sides of a paired comparison share the same draws.
"""
from __future__ import annotations

import math

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

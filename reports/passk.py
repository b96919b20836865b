"""The unbiased pass@k estimator of Chen et al. (2021), vectorized over problems."""
from __future__ import annotations

import numpy as np


def estimate_pass_at_k(n, c, k: int) -> np.ndarray:
    """Per-problem pass@k = 1 - C(n-c, k) / C(n, k) for arrays of sample counts n and correct counts c.

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which is exact in floating point
    for the sizes used here. Requires k <= n for every problem (callers check).
    """
    n = np.asarray(n, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    if np.any(k > n):
        raise ValueError("pass@k needs k <= n for every problem")
    if n.size == 0:
        return np.zeros(0)
    # Row j multiplies (1 - k/i) for i in (n_j - c_j, n_j]; pad with factor 1 elsewhere.
    width = int(c.max(initial=0))
    if width == 0:
        return np.zeros(n.shape, dtype=np.float64)
    offsets = np.arange(width)
    i = n[:, None] - offsets[None, :]  # n, n-1, ..., n-width+1
    active = offsets[None, :] < c[:, None]
    factors = np.where(active, 1.0 - k / np.where(active, i, 1), 1.0)
    out = 1.0 - np.prod(factors, axis=1)
    return np.where(n - c < k, 1.0, out)


def pass_at_k_entry(n, c, k: int) -> dict:
    """The report.json entry for one k: estimate over problems, or not computable with a reason."""
    n = np.asarray(n)
    entry = {"estimate": None, "ci_low": None, "ci_high": None, "computable": False, "reason": None}
    if n.size == 0:
        entry["reason"] = "no problems evaluated"
    elif k > n.min():
        entry["reason"] = f"k={k} > n={int(n.min())} samples for some problems"
    else:
        entry["estimate"] = float(estimate_pass_at_k(n, c, k).mean())
        entry["computable"] = True
    return entry

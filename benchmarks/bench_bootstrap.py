#!/usr/bin/env python
"""Bootstrap CI cost: 10,000 resamples of 500 problems, against anchors measured in the same run.

Anchors: one pass@k computation over the same problems (n=200 samples each),
and a plain per-resample loop (`values[idx].mean()`), timed on 1,000
resamples and scaled. Prints absolute times and ratios.
"""
from __future__ import annotations

import time

import numpy as np

from evalharness import reports

PROBLEMS, SAMPLES, RESAMPLES, KS = 500, 200, 10_000, (1, 10, 100)


def best_of(fn, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    n = np.full(PROBLEMS, SAMPLES)
    c = rng.binomial(SAMPLES, rng.beta(1, 2, PROBLEMS))
    values = np.stack([reports.estimate_pass_at_k(n, c, k) for k in KS], axis=1)

    passk = best_of(lambda: reports.estimate_pass_at_k(n, c, 10))
    boot_one = best_of(lambda: reports.bootstrap_ci(values[:, 0], 0.9, RESAMPLES))
    boot_all = best_of(lambda: reports.bootstrap_ci(values, 0.9, RESAMPLES))
    report = best_of(lambda: reports.pass_at_k_table(n, c, KS, 0.9), repeat=3)
    percentile = best_of(lambda: reports.percentile_interval(reports.bootstrap_means(values, RESAMPLES), 0.9))

    def loop():
        r = np.random.default_rng(0)
        return [values[r.integers(0, PROBLEMS, PROBLEMS), 0].mean() for _ in range(RESAMPLES // 10)]

    naive = best_of(loop, repeat=3) * 10

    print(f"{PROBLEMS} problems x {SAMPLES} samples, {RESAMPLES} resamples")
    print(f"anchor  pass@10 over all problems      {passk * 1e3:8.2f} ms")
    print(f"anchor  per-resample loop (scaled)      {naive * 1e3:8.2f} ms")
    print(f"bootstrap CI, one metric                {boot_one * 1e3:8.2f} ms  "
          f"= {boot_one / passk:6.1f}x pass@10, {naive / boot_one:5.1f}x faster than the loop")
    print(f"bootstrap CI, pass@1/10/100 at once     {boot_all * 1e3:8.2f} ms  = {boot_all / passk:6.1f}x pass@10")
    print(f"pass_at_k_table (estimates + CIs, 3 k)  {report * 1e3:8.2f} ms  = {report / passk:6.1f}x pass@10, "
          f"{report / percentile:4.2f}x the percentile intervals alone (BCa adds the jackknife and bias terms)")


if __name__ == "__main__":
    main()

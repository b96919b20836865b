"""Per-sample seeds: a pure function of (run seed, task_id, sample_idx, temperature).

Any batching, sharding or resume therefore regenerates exactly the samples an
uninterrupted single-process run would.
"""
from __future__ import annotations

import hashlib


def sample_seed(seed: int, task_id: str, sample_idx: int, temperature: float | None = None) -> int:
    text = f"{seed}\x00{task_id}\x00{sample_idx}\x00{temperature!r}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)

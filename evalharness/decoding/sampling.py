"""Turning logits into tokens: processed distributions, counter-based random numbers, inverse-CDF draws.

Every random number is a pure function of (sample seed, token index, purpose), computed on the
device with an integer hash. A sample therefore does not depend on which other rows share its
batch, on the batch size, or on whether the run was resumed.
"""
from __future__ import annotations

import torch

from .records import SamplingSettings

# Purposes of a random draw; a draft from head j (j >= 1, 0-based) uses DRAFT + j.
SAMPLE = 0  # the token itself, drawn from head 1 (or from the rejection residual)
ACCEPT = 1  # the accept/reject test of a speculative draft
DRAFT = 2
PURPOSES = 64  # purposes are < PURPOSES, so (token index, purpose) -> index * PURPOSES + purpose is one-to-one

_MASK32 = 0xFFFFFFFF
# A 32-bit xorshift-multiply avalanche hash (constants from Wellons' hash-prospector). Both
# multipliers are below 2**31, so a 32-bit value times one fits in int64 without overflow.
_M1, _M2 = 0x21F0AAAD, 0x735A2D97


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """The hash on an int64 tensor of values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * _M1) & _MASK32
    x = x ^ (x >> 15)
    x = (x * _M2) & _MASK32
    return x ^ (x >> 15)


def _mix32_int(x: int) -> int:
    """The same hash on a Python int."""
    x ^= x >> 16
    x = (x * _M1) & _MASK32
    x ^= x >> 15
    x = (x * _M2) & _MASK32
    return x ^ (x >> 15)


def split_seeds(seeds, device) -> torch.Tensor:
    """Python int seeds (any size; 64 bits are used) -> int64 tensor [B, 2] of two hashed 32-bit keys."""
    keys = []
    for seed in seeds:
        seed &= 2**64 - 1
        high = _mix32_int((seed >> 32) ^ 0x9E3779B9)
        keys.append((_mix32_int((seed & _MASK32) ^ high), high))
    return torch.tensor(keys, dtype=torch.int64, device=device).reshape(-1, 2)


def uniform(seeds: torch.Tensor, index: torch.Tensor, purpose: int | torch.Tensor) -> torch.Tensor:
    """U[0, 1) in float64 for each (seed row, token index, purpose); index broadcasts against seeds[:, :1].

    A pure function of its arguments, computed on the device: no generator state, no host sync.
    """
    shape = seeds.shape[:1] + (1,) * (index.dim() - 1)
    code = (index * PURPOSES + purpose) & _MASK32
    x = _mix32(code ^ seeds[:, 1].reshape(shape))
    x = _mix32(x ^ seeds[:, 0].reshape(shape))
    return x.double() / 2.0**32


def probabilities(logits: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """The processed sampling distribution (temperature, then top-k, then top-p) over the last axis, fp32."""
    logits = logits.float() / settings.temperature
    if 0 < settings.top_k < logits.shape[-1]:
        kth = logits.topk(settings.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if settings.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True, stable=True)
        mass_before = sorted_p.cumsum(-1) - sorted_p
        drop_sorted = mass_before >= settings.top_p  # the first token is always kept
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw: the token whose CDF interval holds u * total (unnormalized probs allowed).

    The CDF is accumulated in float64, so a zero-probability token is never returned.
    """
    cdf = probs.double().cumsum(-1)
    threshold = u.unsqueeze(-1) * cdf[..., -1:]
    return (cdf <= threshold).sum(-1).clamp_(max=probs.shape[-1] - 1)


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Where to sample after rejecting a draft from q when the target is p: normalize(max(0, p - q)).

    Unnormalized (draw() normalizes). Falls back to p where the difference is all zero (p == q).
    """
    r = (p - q).clamp_(min=0.0)
    empty = r.sum(-1, keepdim=True) <= 0
    return torch.where(empty, p, r)

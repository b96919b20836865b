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

_MASK32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2**32 for 0 <= x < 2**32, computed without int64 overflow."""
    lo, hi = x & 0xFFFF, x >> 16
    return (lo * c + (((hi * (c & 0xFFFF)) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche hash (xorshift-multiply, constants from Wellons' 'lowbias32')."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _mix32_int(x: int) -> int:
    """_mix32 on a Python int (keeps scalar purposes off the device: no host-to-device copy)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def split_seeds(seeds, device) -> torch.Tensor:
    """Python int seeds (any size) -> int64 tensor [B, 2] of their low and high 32-bit words."""
    words = [((s & (2**64 - 1)) & _MASK32, (s & (2**64 - 1)) >> 32) for s in seeds]
    return torch.tensor(words, dtype=torch.int64, device=device).reshape(-1, 2)


def uniform(seeds: torch.Tensor, index: torch.Tensor, purpose: int | torch.Tensor) -> torch.Tensor:
    """U[0, 1) in float64 for each (seed row, token index, purpose); index broadcasts against seeds[:, :1]."""
    if isinstance(purpose, int):
        x = _mix32((index & _MASK32) ^ _mix32_int((purpose + 0x9E3779B9) & _MASK32))
    else:
        x = _mix32((index & _MASK32) ^ _mix32((purpose + 0x9E3779B9) & _MASK32))
    x = _mix32(x ^ seeds[:, 1:2].reshape(seeds.shape[:1] + (1,) * (index.dim() - 1)))
    x = _mix32(x ^ seeds[:, 0:1].reshape(seeds.shape[:1] + (1,) * (index.dim() - 1)))
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

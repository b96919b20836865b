"""Oracle drafts for the decoding benchmarks (bench_decode.py, gpu_check.py)."""
from __future__ import annotations

import torch


class OracleDrafts(torch.nn.Module):
    """The model with heads 2..n drafting the known continuation `reference` (token ids from position 0,
    the prompt included, one sequence shared by every row): the upper bound of self-speculative
    decoding, k tokens per forward, at the model's real cost. Passes the engine's cache protocol through."""

    def __init__(self, inner, reference: list[int]):
        super().__init__()
        self.inner, self.n_future_tokens = inner, inner.n_future_tokens
        device = next(inner.parameters()).device
        self.register_buffer("reference", torch.tensor(reference + [0] * 8, device=device), persistent=False)
        self.setup_cache, self.copy_cache, self.stack_heads = inner.setup_cache, inner.copy_cache, inner.stack_heads
        self.cache_bytes = inner.cache_bytes

    def forward(self, tokens, start_pos=None, n_heads=None, logits_at=None, kv_len=None, rows=None):
        logits = self.inner(tokens, start_pos, n_heads, kv_len=kv_len, rows=rows)
        B, T, H, V = logits.shape
        positions = start_pos[:, None] + torch.arange(T, device=tokens.device)
        for j in range(1, H):
            target = self.reference[(positions + 1 + j).clamp(max=len(self.reference) - 1)]
            logits[:, :, j] = -1e4
            logits[:, :, j].scatter_(-1, target[..., None], 1e4)
        return logits if logits_at is None else logits[torch.arange(B, device=tokens.device)[:, None], logits_at.view(B, -1)]

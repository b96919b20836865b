"""Meta's multi-token-prediction transformer (Gloeckle et al. 2024), gpt-fast style.

A Llama-2 trunk with n output heads side by side: `layers[:-1]` is the trunk,
`layers[-1]` is head 1, `extra_heads[j]` is head j+2. Every head is one Llama
block reading the trunk output; all heads share the final `norm` and `output`.
Parameter names are exactly Meta's, so `consolidated.pth` loads as is.

The KV cache is indexed by position per row: a query at position p attends to
its row's cache slots 0..p. Stale slots beyond p (a speculative rewind, the
right padding of a shorter prompt) are therefore never read, and rewinding is
just calling forward with a smaller start_pos.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class ModelArgs:
    """Llama-2 ModelArgs + n_future_tokens; defaults are Meta's 7B MTP models."""

    dim: int = 4096
    n_layers: int = 32  # ALL blocks: trunk + head 1 + the n-1 extra heads
    n_heads: int = 32
    n_kv_heads: int | None = None
    vocab_size: int = -1  # -1: take it from the tokenizer
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    n_future_tokens: int = 1
    max_seq_len: int = 2048

    @classmethod
    def from_params(cls, params: dict) -> "ModelArgs":
        """Build from a params.json dict, ignoring keys this model does not use (max_batch_size, ...)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in known})

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn_hidden_dim(self) -> int:
        """Llama-2 rule: 2/3 of 4*dim, times the multiplier, rounded up to multiple_of."""
        hidden = int(2 * 4 * self.dim / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return self.multiple_of * ((hidden + self.multiple_of - 1) // self.multiple_of)


def rope_frequencies(head_dim: int, length: int, theta: float, device=None) -> Tensor:
    """Meta's `precompute_freqs_cis`: complex64 (length, head_dim // 2), e^{i * pos * theta^(-2k/d)}."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), freqs)
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate interleaved pairs (x0,x1),(x2,x3).. of x (B,T,H,D) by freqs (B,T,D/2), in float32 as Meta does."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs.unsqueeze(2)).flatten(3).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


class KVCache(nn.Module):
    """Preallocated keys and values of one block, (batch, kv_heads, max_seq_len, head_dim)."""

    def __init__(self, batch: int, kv_heads: int, max_seq_len: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, kv_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, positions: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write k, v (B,T,Hkv,D) of rows 0..B-1 at `positions` (B,T); return those rows' full caches."""
        rows = torch.arange(k.shape[0], device=k.device).unsqueeze(1)
        self.k[rows, :, positions] = k.to(self.k.dtype)
        self.v[rows, :, positions] = v.to(self.v.dtype)
        return self.k[: k.shape[0]], self.v[: k.shape[0]]

    def reorder(self, index: Tensor) -> None:
        self.k = self.k.index_select(0, index)
        self.v = self.v.index_select(0, index)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, self.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, self.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.cache: KVCache | None = None

    def forward(self, x: Tensor, freqs: Tensor, positions: Tensor | None, mask: Tensor | None) -> Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, freqs), apply_rope(k, freqs)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if positions is not None:
            if self.cache is None:
                raise RuntimeError("forward with start_pos needs setup_cache() first")
            k, v = self.cache.update(positions, k.transpose(1, 2), v.transpose(1, 2))
        if self.n_kv_heads != self.n_heads:  # GQA: query head i reads kv head i // n_rep (Meta's repeat_kv)
            n_rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        hidden = args.ffn_hidden_dim
        self.w1 = nn.Linear(args.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, args.dim, bias=False)
        self.w3 = nn.Linear(args.dim, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x: Tensor, freqs: Tensor, positions: Tensor | None, mask: Tensor | None) -> Tensor:
        h = x + self.attention(self.attention_norm(x), freqs, positions, mask)
        return h + self.feed_forward(self.ffn_norm(h))


class MTPTransformer(nn.Module):
    """Trunk + n parallel heads; forward returns logits (B, T, n_heads, V) in the model's dtype."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        n = args.n_future_tokens
        if not 1 <= n <= args.n_layers:
            raise ValueError(f"n_future_tokens={n} must be in 1..n_layers={args.n_layers}")
        if args.vocab_size < 1:
            raise ValueError("vocab_size must be set (params.json -1 is resolved from the tokenizer by the loader)")
        self.args = args
        self.n_future_tokens = n
        # Initialised by hand: nn.Embedding's normal_ on a meta tensor (the loader's no-copy init)
        # imports torch._dynamo, ~3 s of start-up for nothing.
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim, _weight=torch.empty(args.vocab_size, args.dim))
        if self.tok_embeddings.weight.device.type != "meta":
            nn.init.normal_(self.tok_embeddings.weight)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers - n + 1))
        self.extra_heads = nn.ModuleList(TransformerBlock(args) for _ in range(n - 1))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self._freqs: Tensor | None = None  # RoPE table, float32 complex, built lazily on the right device

    @property
    def heads(self) -> list[TransformerBlock]:
        """Head 1 (the last of `layers`) then the extra heads, in prediction order."""
        return [self.layers[-1], *self.extra_heads]

    def blocks(self) -> list[TransformerBlock]:
        return [*self.layers, *self.extra_heads]

    def rope(self, length: int, device) -> Tensor:
        """RoPE table covering positions < length (at least 2*max_seq_len, as Meta precomputes)."""
        if self._freqs is None or self._freqs.shape[0] < length or self._freqs.device != torch.device(device):
            length = max(length, 2 * self.args.max_seq_len)
            self._freqs = rope_frequencies(self.args.head_dim, length, self.args.rope_theta, device)
        return self._freqs

    def setup_cache(self, max_batch_size: int, max_seq_len: int) -> None:
        """Allocate a fresh KV cache in every block (heads included) on the model's device and dtype."""
        weight = self.tok_embeddings.weight
        for block in self.blocks():
            block.attention.cache = KVCache(max_batch_size, self.args.kv_heads, max_seq_len,
                                            self.args.head_dim, weight.dtype, weight.device)
        self.rope(max_seq_len, weight.device)

    def reorder_cache(self, index: torch.LongTensor) -> None:
        """New cache rows = old rows[index]: fan one prefill out to n samples, or drop finished rows."""
        for block in self.blocks():
            if block.attention.cache is None:
                raise RuntimeError("reorder_cache needs setup_cache() first")
            block.attention.cache.reorder(index.to(self.tok_embeddings.weight.device))

    @property
    def cache_len(self) -> int:
        cache = self.layers[0].attention.cache
        return 0 if cache is None else cache.k.shape[2]

    def forward(self, tokens: Tensor, start_pos: Tensor | None = None, n_heads: int | None = None,
                logits_at: Tensor | None = None) -> Tensor:
        """Logits (B, T, n_heads, V) for tokens (B, T).

        start_pos None: plain causal attention over the T tokens, no cache.
        start_pos (B,): row b's tokens sit at positions start_pos[b] + arange(T); they are written
        into the cache there, and each query attends to its row's slots 0..its own position.
        Positions must stay below setup_cache's max_seq_len (not checked: that would sync).
        n_heads: run only the first n_heads heads (the others' caches go stale).
        logits_at (B,) or (B, K): unembed only these token indices of each row, giving
        (B, 1 or K, n_heads, V); e.g. the last prompt token of each row of a padded prefill,
        where full logits would cost B*T*n*V memory. All positions still fill the cache.
        """
        n_heads = self.n_future_tokens if n_heads is None else n_heads
        if not 1 <= n_heads <= self.n_future_tokens:
            raise ValueError(f"n_heads={n_heads} must be in 1..{self.n_future_tokens}")
        B, T = tokens.shape
        device = tokens.device
        if start_pos is None:
            positions, mask = None, None
            freqs = self.rope(T, device)[:T].unsqueeze(0).expand(B, -1, -1)
        else:
            positions = start_pos.to(device).view(B, 1) + torch.arange(T, device=device)  # (B, T)
            freqs = self.rope(self.cache_len, device)[positions]
            slots = torch.arange(self.cache_len, device=device)
            mask = (slots.view(1, 1, -1) <= positions.unsqueeze(-1)).unsqueeze(1)  # (B, 1, T, S)
        h = self.tok_embeddings(tokens)
        for block in self.layers[:-1]:
            h = block(h, freqs, positions, mask)
        outs = torch.stack([head(h, freqs, positions, mask) for head in self.heads[:n_heads]], dim=2)
        if logits_at is not None:
            index = logits_at.to(device).view(B, -1)
            outs = outs[torch.arange(B, device=device).unsqueeze(1), index]  # (B, K, n_heads, dim)
        return self.output(self.norm(outs))

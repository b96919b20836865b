"""Meta's multi-token-prediction transformer (Gloeckle et al. 2024), gpt-fast style.

A Llama-2 trunk with n output heads side by side: `layers[:-1]` is the trunk,
`layers[-1]` is head 1, `extra_heads[j]` is head j+2. Every head is one Llama
block reading the trunk output; all heads share the final `norm` and `output`.
Parameter names are exactly Meta's, so `consolidated.pth` loads as is.

The KV cache is indexed by position per row: a query at position p attends to
its row's cache slots 0..p. Stale slots beyond p (a speculative rewind, the
right padding of a shorter prompt, an earlier sample of a reused row) are
therefore never read, and rewinding is just calling forward with a smaller
start_pos. Cache rows are addressable: a forward can write a chosen set of rows
(a prompt's prefill into a staging row) and copy_cache moves a prompt's slots
into a decoding row, so a decoder can keep a fixed set of rows and refill them.

Everything a cached decode step runs has static shapes for a fixed row count
and kv_len and no data-dependent Python, so torch.compile traces it whole
(RoPE is real-valued when compiled: inductor has no complex kernels).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

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
    """Meta's `precompute_freqs_cis` as real pairs: float32 (length, head_dim // 2, 2) = (cos, sin) of
    pos * theta^(-2k/d), taken from the complex table itself so the values are Meta's to the bit."""
    freqs = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device)[: head_dim // 2].float() / head_dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), freqs)
    return torch.view_as_real(torch.polar(torch.ones_like(angles), angles))


def apply_rope(x: Tensor, freqs: Tensor) -> Tensor:
    """Rotate interleaved pairs (x0,x1),(x2,x3).. of x (..., B,T,H,D) by freqs (B,T,D/2,2), in float32 as Meta does.

    Eagerly as Meta writes it, a complex product (one kernel: 2.5x faster on CPU at batch 1); under
    torch.compile written out in reals, since inductor generates no code for complex tensors. The two
    are bit-identical (tested)."""
    if _compiling():
        return rope_real(x, freqs)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * torch.view_as_complex(freqs).unsqueeze(-2)).flatten(-2).type_as(x)


def rope_real(x: Tensor, freqs: Tensor) -> Tensor:
    """apply_rope's complex product (a + bi)(c + di) = (ac - bd) + (ad + bc)i in real arithmetic."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    cos, sin = freqs[..., 0].unsqueeze(-2), freqs[..., 1].unsqueeze(-2)  # broadcast over the heads
    return torch.stack([x0 * cos - x1 * sin, x1 * cos + x0 * sin], -1).flatten(-2).type_as(x)


_compiling = getattr(torch.compiler, "is_compiling", lambda: False)  # torch < 2.3: always the complex form


def rms_normalize(x: Tensor, eps: float) -> Tensor:
    """x / RMS(x) over the last dim, computed in float32 as Meta does, in x's dtype."""
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).type_as(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return rms_normalize(x, self.eps) * self.weight


def in_row_chunks(f: Callable[[Tensor], Tensor], x: Tensor, chunk: int | None, dim: int = 0) -> Tensor:
    """f(x) for a row-wise f, computed `chunk` rows (along dim) at a time, the last chunk padded with
    zeros; chunk None: in one piece.

    A CPU matmul sums a row's products in an order that depends on how many rows it is handed (MKL,
    dim 128: 1, 2-5 and 6+ rows each round a row's result differently in the last bit), so a
    sample's logits, and now and then a sampled token, would depend on the rows decoded beside it.
    Handed `chunk` rows every time, a matmul gives a row the same bits at any position among any
    neighbours (tested), and a sample's tokens depend on its seed alone.

    Pointwise kernels need it too: silu's vectorised kernel rounds the elements of a loop's tail
    (the last numel % 32 of a tensor, or of a thread's share once numel > 32768) differently from
    the rest (AVX512: 4% of them, measured), so the FFN's gate runs in the same chunks: an element's
    bits would otherwise depend on the rows in the call and the thread count (a demo prompt's
    prefill: 1 and 2 threads gave different caches)."""
    rows = x.shape[dim]
    if chunk is None or (not _compiling() and rows == chunk):  # compiled: no branch on the row count
        return f(x)  # (a symbolic one), which would be a guard and another graph per pass
    x = torch.cat([x, x.new_zeros(*x.shape[:dim], -rows % chunk, *x.shape[dim + 1:])], dim)
    return torch.cat([f(part) for part in x.split(chunk, dim)], dim).narrow(dim, 0, rows)


class Linear(nn.Linear):
    """nn.Linear (no bias) whose rows run in_row_chunks of row_chunk (None: one matmul; see
    MTPTransformer.set_row_chunk)."""

    row_chunk: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        return in_row_chunks(lambda rows: F.linear(rows, self.weight), flat, self.row_chunk).view(*x.shape[:-1], -1)


def cache_rows(rows: Tensor | None, batch: int, device) -> Tensor:
    """The cache row of each batch row, (B, 1): `rows`, or rows 0..B-1 by default."""
    return (torch.arange(batch, device=device) if rows is None else rows).unsqueeze(1)


def attend_cached(q: Tensor, k_cache: Tensor, v_cache: Tensor, rows: Tensor | None, masks: tuple[Tensor, ...],
                  n_rep: int) -> Tensor:
    """Attention of q (B, N, H, Tq, D), N heads' queries of B rows, over those rows' cached keys and
    values (rows, N, Hkv, S, D): rows 0..B-1, or the cache rows `rows`.

    The B rows are len(masks) equal lanes; lane g reads slots < masks[g].shape[-1] under masks[g]
    (B/G, 1, Tq, kv): a lane of short rows does not read as far as the longest row of the batch.
    Rows 0..B-1 are read as views, without a copy. Returns (B, N, H, Tq, D)."""
    B, N = q.shape[:2]
    lane = B // len(masks)
    outs = []
    for g, mask in enumerate(masks):
        kv = mask.shape[-1]
        if rows is None:
            k, v = k_cache[g * lane:(g + 1) * lane, :N, :, :kv], v_cache[g * lane:(g + 1) * lane, :N, :, :kv]
        else:
            index = rows[g * lane:(g + 1) * lane]
            k, v = k_cache.index_select(0, index)[:, :N, :, :kv], v_cache.index_select(0, index)[:, :N, :, :kv]
        m = mask.unsqueeze(1).expand(-1, N, -1, -1, -1).flatten(0, 1)
        out = attend(q[g * lane:(g + 1) * lane].flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), m, n_rep)
        outs.append(out.unflatten(0, (-1, N)))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


class KVCache(nn.Module):
    """Preallocated keys and values of one block, (rows, kv_heads, max_seq_len, head_dim)."""

    def __init__(self, rows: int, kv_heads: int, max_seq_len: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (rows, kv_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def write(self, rows: Tensor | None, positions: Tensor, k: Tensor, v: Tensor) -> None:
        """Write k, v (B,T,Hkv,D) into cache rows `rows` (default 0..B-1) at `positions` (B,T)."""
        index = cache_rows(rows, k.shape[0], k.device)
        self.k[index, :, positions] = k.to(self.k.dtype)
        self.v[index, :, positions] = v.to(self.v.dtype)

    def copy_rows(self, src: Tensor, dst: Tensor, length: int) -> None:
        self.k[dst, :, :length] = self.k[src, :, :length]
        self.v[dst, :, :length] = self.v[src, :, :length]


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.kv_heads, args.head_dim
        self.wq = Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = Linear(args.dim, self.n_kv_heads * args.head_dim, bias=False)
        self.wv = Linear(args.dim, self.n_kv_heads * args.head_dim, bias=False)
        self.wo = Linear(args.n_heads * args.head_dim, args.dim, bias=False)
        self.cache: KVCache | None = None

    def setup_cache(self, rows: int, max_seq_len: int) -> None:
        w = self.wk.weight
        self.cache = KVCache(rows, self.n_kv_heads, max_seq_len, self.head_dim, w.dtype, w.device)

    def copy_cache(self, src: Tensor, dst: Tensor, length: int) -> None:
        self.cache.copy_rows(src, dst, length)

    def forward(self, x: Tensor, freqs: Tensor, positions: Tensor | None, mask: Tensor | tuple[Tensor, ...] | None,
                at: Tensor | None = None, rows: Tensor | None = None) -> Tensor:
        """Cached (positions given): mask is the lanes' masks (see attend_cached); uncached: None (causal)
        or (B, 1, Tq, T).

        at (B, K): only these tokens query (the output is (B, K, dim)); all T still give keys and
        values, and mask then holds the K query rows only. rows (B,): the cache rows (default 0..B-1)."""
        B, T, _ = x.shape
        xq, fq = (x, freqs) if at is None else (pick(x, at), pick(freqs, at))
        q = self.wq(xq).view(B, xq.shape[1], self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, fq), apply_rope(k, freqs)
        n_rep = self.n_heads // self.n_kv_heads
        if positions is None:
            out = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask, n_rep)  # (B, H, Tq, D)
        else:
            if self.cache is None:
                raise RuntimeError("forward with start_pos needs setup_cache() first")
            self.cache.write(rows, positions, k, v)
            c = self.cache
            out = attend_cached(q.transpose(1, 2).unsqueeze(1), c.k.unsqueeze(1), c.v.unsqueeze(1), rows, mask,
                                n_rep).squeeze(1)
        return self.wo(out.transpose(1, 2).reshape(B, q.shape[1], -1))


def pick(x: Tensor, at: Tensor) -> Tensor:
    """x[b, at[b, j]] for x (B, T, ...) and at (B, K): (B, K, ...)."""
    return x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), at]


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, n_rep: int) -> Tensor:
    """Scaled dot-product attention of q (N,H,T,D) over k, v (N,Hkv,S,D); causal when mask is None."""
    if n_rep > 1:  # GQA: query head i reads kv head i // n_rep (Meta's repeat_kv)
        k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)
    if mask is None:
        return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), is_causal=True)
    return F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask)


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        hidden = args.ffn_hidden_dim
        self.w1 = Linear(args.dim, hidden, bias=False)
        self.w2 = Linear(hidden, args.dim, bias=False)
        self.w3 = Linear(args.dim, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Run w2.row_chunk rows at a time, the gate too (see in_row_chunks)."""
        flat = x.reshape(-1, x.shape[-1])
        return in_row_chunks(self._rows, flat, self.w2.row_chunk).view(*x.shape[:-1], -1)

    def _rows(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x: Tensor, freqs: Tensor, positions: Tensor | None, mask: Tensor | tuple[Tensor, ...] | None,
                at: Tensor | None = None, rows: Tensor | None = None) -> Tensor:
        """at (B, K): output only these tokens; mask, rows: see Attention.forward."""
        h = (x if at is None else pick(x, at)) + self.attention(self.attention_norm(x), freqs, positions, mask, at,
                                                                rows)
        return h + self.feed_forward(self.ffn_norm(h))


class StackedHeads(nn.Module):
    """The n head blocks run as one batched block (inference only; see MTPTransformer.stack_heads).

    Meta's heads are n independent Llama blocks reading the same trunk output. One after another
    they cost n blocks of kernel launches, which at batch 1 or a small dim is most of a
    self-speculative forward; stacked, every op runs once for all heads (a matmul batched over the
    head dim) and the input's RMS is computed once. The heads' own parameters become views into
    the stacks, so names, state_dict and memory stay as they were.
    """

    row_chunk: int | None = None  # see MTPTransformer.set_row_chunk

    WEIGHTS = ("attention_norm", "attention.wq", "attention.wk", "attention.wv", "attention.wo",
               "ffn_norm", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")

    def __init__(self, blocks: list[TransformerBlock], args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim, self.eps = args.n_heads, args.kv_heads, args.head_dim, args.norm_eps
        for name in self.WEIGHTS:
            params = [block.get_parameter(name + ".weight") for block in blocks]
            # matrices stacked as (n, in, out): a batched matmul reads each head's x @ W^T from
            # contiguous memory (on CPU 1.2-2x faster than through transposed strides)
            stack = torch.stack([p.detach().t() if p.dim() == 2 else p.detach() for p in params])
            for p, view in zip(params, stack):
                p.data = view.t() if view.dim() == 2 else view
            self.register_buffer(name.replace(".", "_"), stack, persistent=False)
        # KV cache (rows, heads, Hkv, S, D) of the heads the decoding runs: the rows and heads of a
        # decode step flatten into one batch as a view (attend_cached)
        self.register_buffer("k", None, persistent=False)
        self.register_buffer("v", None, persistent=False)

    def setup_cache(self, rows: int, max_seq_len: int, heads: int) -> None:
        shape = (rows, heads, self.n_kv_heads, max_seq_len, self.head_dim)
        self.k, self.v = self.attention_wq.new_zeros(shape), self.attention_wq.new_zeros(shape)

    def copy_cache(self, src: Tensor, dst: Tensor, length: int) -> None:
        self.k[dst, :, :, :length] = self.k[src, :, :, :length]
        self.v[dst, :, :, :length] = self.v[src, :, :, :length]

    def forward(self, x: Tensor, freqs: Tensor, positions: Tensor | None, mask: Tensor | tuple[Tensor, ...] | None,
                n: int,
                at: Tensor | None = None, rows: Tensor | None = None) -> Tensor:
        """Heads 1..n on x (B, T, dim): (B, Tq, n, dim), as the n blocks would compute it (at, rows: see Attention)."""
        B, T, dim = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim

        def norm(t: Tensor, weight: Tensor) -> Tensor:  # t (n or 1, B, T, dim) -> (n, B, T, dim)
            return rms_normalize(t, self.eps) * weight[:n, None, None]

        def linear(t: Tensor, weight: Tensor) -> Tensor:  # (n, B, T, in) @ (n, in, out) per head
            rows = t.reshape(n, -1, t.shape[-1])
            if n == 1:  # plain decoding: as fast as head 1's own block
                out = in_row_chunks(lambda part: part @ weight[0], rows, self.row_chunk, dim=1)
            else:
                out = in_row_chunks(lambda part: torch.bmm(part, weight[:n]), rows, self.row_chunk, dim=1)
            return out.view(*t.shape[:-1], -1)

        a = norm(x.unsqueeze(0), self.attention_norm)
        k = apply_rope(linear(a, self.attention_wk).view(n, B, T, Hkv, D), freqs)  # freqs broadcast over heads
        v = linear(a, self.attention_wv).view(n, B, T, Hkv, D)
        if at is not None:  # only these tokens query
            batch = torch.arange(B, device=x.device).unsqueeze(1)
            a, x, freqs = a[:, batch, at], x[batch, at], freqs[batch, at]
        Tq = x.shape[1]
        q = apply_rope(linear(a, self.attention_wq).view(n, B, Tq, H, D), freqs)  # (n, B, Tq, H, D)
        if positions is not None:
            if self.k is None or self.k.shape[1] < n:
                raise RuntimeError(f"forward with start_pos and {n} heads needs setup_cache() for {n} heads first")
            index = cache_rows(rows, B, x.device)
            self.k[index, :n, :, positions] = k.permute(1, 2, 0, 3, 4).to(self.k.dtype)
            self.v[index, :n, :, positions] = v.permute(1, 2, 0, 3, 4).to(self.v.dtype)
            out = attend_cached(q.permute(1, 0, 3, 2, 4), self.k, self.v, rows, mask, H // Hkv)  # (B, n, H, Tq, D)
            out = out.permute(1, 0, 3, 2, 4)
        else:  # the heads are a batch of n*B rows, head-major
            k, v = k.flatten(0, 1).transpose(1, 2), v.flatten(0, 1).transpose(1, 2)
            if mask is not None:
                mask = mask.expand(n, *mask.shape).flatten(0, 1)
            out = attend(q.flatten(0, 1).transpose(1, 2), k, v, mask, H // Hkv).view(n, B, H, Tq, D).transpose(2, 3)
        h = x + linear(out.reshape(n, B, Tq, H * D), self.attention_wo)
        def ffn(rows: Tensor) -> Tensor:  # (n, rows, dim), row_chunk rows at a time, the gate too (FeedForward)
            return linear(F.silu(linear(rows, self.feed_forward_w1)) * linear(rows, self.feed_forward_w3),
                          self.feed_forward_w2)

        f = norm(h, self.ffn_norm)
        h = h + in_row_chunks(ffn, f.reshape(n, -1, dim), self.row_chunk, dim=1).view(h.shape)
        return h.permute(1, 2, 0, 3).contiguous()  # strided, the unembedding would become a bmm: 2x slower


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
        self.output = Linear(args.dim, args.vocab_size, bias=False)
        self.stacked_heads: StackedHeads | None = None  # set by stack_heads()
        self._freqs: Tensor | None = None  # RoPE table, float32 (cos, sin) pairs, built lazily on the right device

    @property
    def heads(self) -> list[TransformerBlock]:
        """Head 1 (the last of `layers`) then the extra heads, in prediction order."""
        return [self.layers[-1], *self.extra_heads]

    def stack_heads(self) -> "MTPTransformer":
        """Run the heads as one batched block from now on (for inference, after the last .to()).

        Self-speculative decoding runs every head on every forward; the Generator stacks them
        then. The heads' parameters become views into the stacks (so a loaded model's head weights
        leave the checkpoint's mmap for one copy in memory): later in-place updates
        (load_state_dict) reach both, but moving or casting the model afterwards would split them.
        """
        if self.stacked_heads is None and self.n_future_tokens > 1:
            self.stacked_heads = StackedHeads(self.heads, self.args)
            self.stacked_heads.row_chunk = self.output.row_chunk
            for head in self.heads:
                head.attention.cache = None
        return self

    def set_row_chunk(self, rows: int | None) -> "MTPTransformer":
        """Run every matmul `rows` rows at a time from now on (None: each in one piece), so that a
        row's result has the same bits whatever rows share its forward (see in_row_chunks)."""
        for module in self.modules():  # the stacked heads too, once stacked
            if isinstance(module, (Linear, StackedHeads)):
                module.row_chunk = rows
        return self

    def _cached_modules(self) -> list[Attention | StackedHeads]:
        """What holds a KV cache now: the trunk blocks' attention, then the heads (one stack, or
        each cached head block's attention)."""
        if self.stacked_heads is not None:
            heads = [self.stacked_heads]
        else:
            heads = [h.attention for h in self.heads if h.attention.cache is not None]
        return [block.attention for block in self.layers[:-1]] + heads

    def rope(self, length: int, device) -> Tensor:
        """RoPE table covering positions < length (at least 2*max_seq_len, as Meta precomputes)."""
        if self._freqs is None or self._freqs.shape[0] < length or self._freqs.device != torch.device(device):
            length = max(length, 2 * self.args.max_seq_len)
            self._freqs = rope_frequencies(self.args.head_dim, length, self.args.rope_theta, device)
        return self._freqs

    def setup_cache(self, rows: int, max_seq_len: int, n_heads: int | None = None) -> None:
        """Allocate a fresh KV cache of `rows` rows on the model's device and dtype, in the trunk and in
        the first n_heads heads (default all): the other heads get none and cannot run cached."""
        n_heads = self.n_future_tokens if n_heads is None else n_heads
        trunk = [block.attention for block in self.layers[:-1]]
        if self.stacked_heads is not None:
            self.stacked_heads.setup_cache(rows, max_seq_len, n_heads)
        else:
            for j, head in enumerate(self.heads):
                head.attention.cache = None
                if j < n_heads:
                    head.attention.setup_cache(rows, max_seq_len)
        for module in trunk:
            module.setup_cache(rows, max_seq_len)
        self.rope(max_seq_len, self.tok_embeddings.weight.device)

    def copy_cache(self, src: Tensor, dst: Tensor, length: int) -> None:
        """Cache rows dst take slots 0..length-1 of rows src (src, dst (R,) on the model's device): a
        prompt's prefill, made once, copied into each row that decodes a sample of it."""
        for module in self._cached_modules():
            module.copy_cache(src, dst, length)

    def cache_bytes(self, rows: int, max_seq_len: int, n_heads: int | None = None) -> int:
        """Bytes setup_cache(rows, max_seq_len, n_heads) allocates (what --batch-size auto divides memory by)."""
        n_heads = self.n_future_tokens if n_heads is None else n_heads
        blocks = len(self.layers) - 1 + n_heads
        a = self.args
        return 2 * blocks * rows * a.kv_heads * max_seq_len * a.head_dim * self.tok_embeddings.weight.element_size()

    @property
    def cache_len(self) -> int:
        cache = self.layers[0].attention.cache
        return 0 if cache is None else cache.k.shape[2]

    def forward(self, tokens: Tensor, start_pos: Tensor | None = None, n_heads: int | None = None,
                logits_at: Tensor | None = None, kv_len: int | None = None, rows: Tensor | None = None) -> Tensor:
        """Logits (B, T, n_heads, V) for tokens (B, T).

        start_pos None: plain causal attention over the T tokens, no cache.
        start_pos (B,): row b's tokens sit at positions start_pos[b] + arange(T); they are written
        into the cache there, and each query attends to its row's slots 0..its own position.
        Positions must stay below setup_cache's max_seq_len (not checked: that would sync).
        kv_len: attention reads only cache slots < kv_len, a bound the caller knows on the host
        (every position of this call must be below it; not checked either). Default: the whole cache.
        A tuple of G lengths splits the B rows into G equal lanes of consecutive rows, lane g reading
        slots < kv_len[g] (rows 0..B-1 only): a caller that keeps its long rows together saves the
        short rows from reading as far as the longest one.
        n_heads: run only the first n_heads heads (cached: those setup_cache gave a cache).
        rows (B,): the cache rows the batch rows read and write (default 0..B-1, the decoding rows; e.g.
        a prefill into staging rows, later copied with copy_cache).
        logits_at (B,) or (B, K): only these token indices of each row, giving (B, 1 or K, n_heads, V);
        e.g. the last prompt token of each row of a padded prefill. The heads then run their
        queries, MLPs and unembedding there only (a prefill's heads cost keys and values, not
        blocks); all positions still fill the cache.
        """
        n_heads = self.n_future_tokens if n_heads is None else n_heads
        if not 1 <= n_heads <= self.n_future_tokens:
            raise ValueError(f"n_heads={n_heads} must be in 1..{self.n_future_tokens}")
        B, T = tokens.shape
        device = tokens.device
        if start_pos is None:
            positions, mask = None, None
            freqs = self.rope(T, device)[:T].unsqueeze(0).expand(B, -1, -1, -1)
        else:
            positions = start_pos.to(device).view(B, 1) + torch.arange(T, device=device)  # (B, T)
            freqs = self.rope(self.cache_len, device)[positions]
            lengths = kv_len if isinstance(kv_len, tuple) else (min(kv_len or self.cache_len, self.cache_len),)
            if B % len(lengths) or (rows is not None and len(lengths) > 1):
                raise ValueError(f"{len(lengths)} lanes need rows 0..B-1 with B ({B}) a multiple of them")
            lane = B // len(lengths)
            mask = tuple((torch.arange(L, device=device) <= positions[g * lane:(g + 1) * lane, :, None]).unsqueeze(1)
                         for g, L in enumerate(lengths))  # per lane (B/G, 1, T, kv_len[g])
        h = self.tok_embeddings(tokens)
        if rows is not None:
            rows = rows.to(device)
        for block in self.layers[:-1]:
            h = block(h, freqs, positions, mask, rows=rows)
        at = None if logits_at is None else logits_at.to(device).view(B, -1)
        if at is not None:  # the heads' masks: the query rows at `at` only
            if mask is None:
                mask = (torch.arange(T, device=device) <= at.unsqueeze(-1)).unsqueeze(1)  # causal, (B, 1, K, T)
            else:
                mask = (pick(mask[0].squeeze(1), at).unsqueeze(1),)
        if self.stacked_heads is not None:
            outs = self.stacked_heads(h, freqs, positions, mask, n_heads, at, rows)
        else:
            outs = torch.stack([head(h, freqs, positions, mask, at, rows) for head in self.heads[:n_heads]], dim=2)
        return self.output(self.norm(outs))  # (B, T or K, n_heads, V)

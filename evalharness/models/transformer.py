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
    """Rotate interleaved pairs (x0,x1),(x2,x3).. of x (..., B,T,H,D) by freqs (B,T,D/2), in float32 as Meta does."""
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs.unsqueeze(2)).flatten(-2).type_as(x)


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


class KVCache(nn.Module):
    """Preallocated keys and values of one block, (batch, kv_heads, max_seq_len, head_dim)."""

    def __init__(self, batch: int, kv_heads: int, max_seq_len: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, kv_heads, max_seq_len, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, positions: Tensor, k: Tensor, v: Tensor, kv_len: int) -> tuple[Tensor, Tensor]:
        """Write k, v (B,T,Hkv,D) of rows 0..B-1 at `positions` (B,T); return those rows' slots < kv_len."""
        rows = torch.arange(k.shape[0], device=k.device).unsqueeze(1)
        self.k[rows, :, positions] = k.to(self.k.dtype)
        self.v[rows, :, positions] = v.to(self.v.dtype)
        return self.k[: k.shape[0], :, :kv_len], self.v[: k.shape[0], :, :kv_len]

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

    def setup_cache(self, max_batch_size: int, max_seq_len: int) -> None:
        w = self.wk.weight
        self.cache = KVCache(max_batch_size, self.n_kv_heads, max_seq_len, self.head_dim, w.dtype, w.device)

    def reorder_cache(self, index: Tensor) -> None:
        self.cache.reorder(index)

    def forward(self, x: Tensor, freqs: Tensor, positions: Tensor | None, mask: Tensor | None,
                at: Tensor | None = None) -> Tensor:
        """mask (B, 1, Tq, kv_len) when cached: its last dim says how many cache slots to read.

        at (B, K): only these tokens query (the output is (B, K, dim)); all T still give keys and
        values, and mask then holds the K query rows only."""
        B, T, _ = x.shape
        xq, fq = (x, freqs) if at is None else (pick(x, at), pick(freqs, at))
        q = self.wq(xq).view(B, xq.shape[1], self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, fq), apply_rope(k, freqs)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if positions is not None:
            if self.cache is None:
                raise RuntimeError("forward with start_pos needs setup_cache() first")
            k, v = self.cache.update(positions, k.transpose(1, 2), v.transpose(1, 2), mask.shape[-1])
        out = attend(q, k, v, mask, self.n_heads // self.n_kv_heads)
        return self.wo(out.transpose(1, 2).reshape(B, q.shape[2], -1))


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

    def forward(self, x: Tensor, freqs: Tensor, positions: Tensor | None, mask: Tensor | None,
                at: Tensor | None = None) -> Tensor:
        """at (B, K): output only these tokens (see Attention.forward)."""
        h = (x if at is None else pick(x, at)) + self.attention(self.attention_norm(x), freqs, positions, mask, at)
        return h + self.feed_forward(self.ffn_norm(h))


class StackedHeads(nn.Module):
    """The n head blocks run as one batched block (inference only; see MTPTransformer.stack_heads).

    Meta's heads are n independent Llama blocks reading the same trunk output. One after another
    they cost n blocks of kernel launches, which at batch 1 or a small dim is most of a
    self-speculative forward; stacked, every op runs once for all heads (a matmul batched over the
    head dim) and the input's RMS is computed once. The heads' own parameters become views into
    the stacks, so names, state_dict and memory stay as they were.
    """

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
        self.k: Tensor | None = None  # KV cache (n, B, Hkv, S, D), head-major so head 1 alone is a prefix
        self.v: Tensor | None = None

    def setup_cache(self, max_batch_size: int, max_seq_len: int) -> None:
        w = self.attention_wq
        shape = (w.shape[0], max_batch_size, self.n_kv_heads, max_seq_len, self.head_dim)
        self.k, self.v = w.new_zeros(shape), w.new_zeros(shape)

    def reorder_cache(self, index: Tensor) -> None:
        self.k, self.v = self.k.index_select(1, index), self.v.index_select(1, index)

    def forward(self, x: Tensor, freqs: Tensor, positions: Tensor | None, mask: Tensor | None, n: int,
                at: Tensor | None = None) -> Tensor:
        """Heads 1..n on x (B, T, dim): (B, Tq, n, dim), as the n blocks would compute it (at: see Attention)."""
        B, T, dim = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim

        def norm(t: Tensor, weight: Tensor) -> Tensor:  # t (n or 1, B, T, dim) -> (n, B, T, dim)
            return rms_normalize(t, self.eps) * weight[:n, None, None]

        def linear(t: Tensor, weight: Tensor) -> Tensor:  # (n, B, T, in) @ (n, in, out) per head
            if n == 1:  # plain decoding: as fast as head 1's own block
                return t @ weight[0]
            return torch.bmm(t.reshape(n, -1, t.shape[-1]), weight[:n]).view(*t.shape[:-1], -1)

        rows = torch.arange(B, device=x.device).unsqueeze(1)
        a = norm(x.unsqueeze(0), self.attention_norm)
        k = apply_rope(linear(a, self.attention_wk).view(n, B, T, Hkv, D), freqs)  # freqs broadcast over heads
        v = linear(a, self.attention_wv).view(n, B, T, Hkv, D)
        if at is not None:  # only these tokens query
            a, x, freqs = a[:, rows, at], x[rows, at], freqs[rows, at]
        Tq = x.shape[1]
        q = apply_rope(linear(a, self.attention_wq).view(n, B, Tq, H, D), freqs).flatten(0, 1).transpose(1, 2)
        if positions is not None:
            self.k[:n, rows, :, positions] = k.permute(1, 2, 0, 3, 4).to(self.k.dtype)
            self.v[:n, rows, :, positions] = v.permute(1, 2, 0, 3, 4).to(self.v.dtype)
            S = mask.shape[-1]
            k, v = self.k[:n, :B, :, :S].flatten(0, 1), self.v[:n, :B, :, :S].flatten(0, 1)
        else:
            k, v = k.flatten(0, 1).transpose(1, 2), v.flatten(0, 1).transpose(1, 2)
        if mask is not None:  # the heads are a batch of n*B rows, head-major
            mask = mask.expand(n, *mask.shape).flatten(0, 1)  # a view when B == 1
        out = attend(q, k, v, mask, H // Hkv)  # (n*B, H, Tq, D)
        h = x + linear(out.transpose(1, 2).reshape(n, B, Tq, H * D), self.attention_wo)
        f = norm(h, self.ffn_norm)
        h = h + linear(F.silu(linear(f, self.feed_forward_w1)) * linear(f, self.feed_forward_w3), self.feed_forward_w2)
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
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        self.stacked_heads: StackedHeads | None = None  # set by stack_heads()
        self._freqs: Tensor | None = None  # RoPE table, float32 complex, built lazily on the right device

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
            for head in self.heads:
                head.attention.cache = None
        return self

    def _cached_modules(self) -> list[Attention | StackedHeads]:
        """What holds a KV cache (setup_cache / reorder_cache): the trunk blocks' attention, then
        the heads (one stack, or each head block's attention)."""
        heads = [self.stacked_heads] if self.stacked_heads is not None else [h.attention for h in self.heads]
        return [block.attention for block in self.layers[:-1]] + heads

    def rope(self, length: int, device) -> Tensor:
        """RoPE table covering positions < length (at least 2*max_seq_len, as Meta precomputes)."""
        if self._freqs is None or self._freqs.shape[0] < length or self._freqs.device != torch.device(device):
            length = max(length, 2 * self.args.max_seq_len)
            self._freqs = rope_frequencies(self.args.head_dim, length, self.args.rope_theta, device)
        return self._freqs

    def setup_cache(self, max_batch_size: int, max_seq_len: int) -> None:
        """Allocate a fresh KV cache in every block (heads included) on the model's device and dtype."""
        for module in self._cached_modules():
            module.setup_cache(max_batch_size, max_seq_len)
        self.rope(max_seq_len, self.tok_embeddings.weight.device)

    def reorder_cache(self, index: torch.LongTensor) -> None:
        """New cache rows = old rows[index]: fan one prefill out to n samples, or drop finished rows."""
        if self.cache_len == 0:
            raise RuntimeError("reorder_cache needs setup_cache() first")
        index = index.to(self.tok_embeddings.weight.device)
        for module in self._cached_modules():
            module.reorder_cache(index)

    @property
    def cache_len(self) -> int:
        cache = self.layers[0].attention.cache
        return 0 if cache is None else cache.k.shape[2]

    def forward(self, tokens: Tensor, start_pos: Tensor | None = None, n_heads: int | None = None,
                logits_at: Tensor | None = None, kv_len: int | None = None) -> Tensor:
        """Logits (B, T, n_heads, V) for tokens (B, T).

        start_pos None: plain causal attention over the T tokens, no cache.
        start_pos (B,): row b's tokens sit at positions start_pos[b] + arange(T); they are written
        into the cache there, and each query attends to its row's slots 0..its own position.
        Positions must stay below setup_cache's max_seq_len (not checked: that would sync).
        kv_len: attention reads only cache slots < kv_len, a bound the caller knows on the host
        (every position of this call must be below it; not checked either). Default: the whole cache.
        n_heads: run only the first n_heads heads (the others' caches go stale).
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
            freqs = self.rope(T, device)[:T].unsqueeze(0).expand(B, -1, -1)
        else:
            positions = start_pos.to(device).view(B, 1) + torch.arange(T, device=device)  # (B, T)
            freqs = self.rope(self.cache_len, device)[positions]
            slots = torch.arange(min(kv_len or self.cache_len, self.cache_len), device=device)
            mask = (slots.view(1, 1, -1) <= positions.unsqueeze(-1)).unsqueeze(1)  # (B, 1, T, S)
        h = self.tok_embeddings(tokens)
        for block in self.layers[:-1]:
            h = block(h, freqs, positions, mask)
        at = None if logits_at is None else logits_at.to(device).view(B, -1)
        if at is not None:  # the heads' masks: the query rows at `at` only
            if mask is None:
                mask = (torch.arange(T, device=device) <= at.unsqueeze(-1)).unsqueeze(1)  # causal, (B, 1, K, T)
            else:
                mask = pick(mask.squeeze(1), at).unsqueeze(1)
        if self.stacked_heads is not None:
            outs = self.stacked_heads(h, freqs, positions, mask, n_heads, at)
        else:
            outs = torch.stack([head(h, freqs, positions, mask, at) for head in self.heads[:n_heads]], dim=2)
        return self.output(self.norm(outs))  # (B, T or K, n_heads, V)

"""Test doubles for the decoding tests: a table-lookup MTP model, a character tokenizer, a tiny real
MTPTransformer, and a wrapper that forces the drafts of any model (oracle or garbage)."""
from __future__ import annotations

import pytest
import torch
from torch import nn


class CharTokenizer:
    """One character per id (BOS included); `eos_id` decodes to nothing. decode_completion is then a slice."""

    def __init__(self, alphabet: str, bos_id: int = 0, eos_id: int | None = 1):
        self.alphabet, self.bos_id, self.eos_id = alphabet, bos_id, eos_id

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return [self.bos_id] * bos + [self.alphabet.index(c) for c in text]

    def decode(self, ids) -> str:
        return "".join(self.alphabet[i] for i in ids if i != self.eos_id)

    def decode_completion(self, prompt_ids, completion_ids) -> str:
        return self.decode(completion_ids)

    def ids(self, text: str) -> list[int]:
        return [self.alphabet.index(c) for c in text]


class TableModel(nn.Module):
    """Head j's logits at position p are a random table of (token at p, token at p-1).

    Keeps a token cache with the protocol's semantics (written at start_pos + arange(T), only
    slots <= p read), so the decoder's position bookkeeping is exercised as with a transformer.
    """

    def __init__(self, vocab: int, n_future_tokens: int, seed: int = 0, scale: float = 2.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.n_future_tokens = n_future_tokens
        self.table = nn.Parameter(torch.randn(n_future_tokens, vocab, vocab, vocab, generator=g) * scale,
                                  requires_grad=False)
        self.cache = None

    def setup_cache(self, rows: int, max_seq_len: int, n_heads: int | None = None) -> None:
        self.cache = torch.zeros(rows, max_seq_len, dtype=torch.long)

    def copy_cache(self, src, dst, length) -> None:
        self.cache[dst, :length] = self.cache[src, :length]

    def forward(self, tokens, start_pos=None, n_heads=None, logits_at=None, kv_len=None, rows=None):
        n_heads = n_heads or self.n_future_tokens
        B, T = tokens.shape
        if start_pos is None:
            prev = torch.cat([tokens[:, :1], tokens[:, :-1]], 1)
        else:
            pos = start_pos[:, None] + torch.arange(T)
            rows = (torch.arange(B) if rows is None else rows)[:, None]
            self.cache[rows, pos] = tokens
            prev = self.cache[rows, (pos - 1).clamp(min=0)]
        logits = self.table[:n_heads][:, tokens, prev].permute(1, 2, 0, 3)  # [B, T, h, V]
        return logits if logits_at is None else logits[torch.arange(B)[:, None], logits_at.view(B, -1)]


def tiny_transformer(vocab: int = 40, n_future_tokens: int = 4, seed: int = 0, dim: int = 32, n_layers: int = 5):
    """A small random MTPTransformer in fp32 (n_layers counts trunk and all heads)."""
    from evalharness.models import ModelArgs, MTPTransformer

    torch.manual_seed(seed)
    args = ModelArgs(dim=dim, n_layers=n_layers, n_heads=4, n_kv_heads=2, vocab_size=vocab, multiple_of=16,
                     n_future_tokens=n_future_tokens, max_seq_len=256)
    model = MTPTransformer(args).eval()
    with torch.no_grad():  # sharper than default init so greedy paths are not all ties
        model.output.weight.mul_(8.0)
    return model


def completions(generator, requests, settings, batch_size) -> list:
    """Every completion of a generate() pass, in request order (requests finish in any order)."""
    got = dict(generator.generate(requests, settings, batch_size))
    return [c for i in range(len(requests)) for c in got[i]]


class ForcedDrafts(nn.Module):
    """Wraps a model and replaces heads 2..n with one-hot drafts of a known continuation.

    `references` maps prompt ids to the full plain-greedy sequence (prompt + completion); a row is
    matched by its prompt (the longest one its cache starts with). Head j at position p then drafts
    reference[p+1+j] (the oracle) or, for `wrong` of every 5 (position, head) pairs, a token that is
    certainly not it: wrong=0 is an oracle, wrong=5 pure garbage, in between rows accept varying runs.
    `wrong` may also map prompt ids to a per-prompt value (rows that advance at different speeds).
    """

    def __init__(self, inner, references: dict[tuple[int, ...], list[int]], vocab: int,
                 wrong: int | dict[tuple[int, ...], int]):
        super().__init__()
        self.inner, self.references, self.vocab, self.wrong = inner, references, vocab, wrong
        self.n_future_tokens = inner.n_future_tokens
        self.cache = None

    def setup_cache(self, rows, max_seq_len, n_heads=None):
        self.inner.setup_cache(rows, max_seq_len, n_heads)
        self.cache = torch.full((rows, max_seq_len), -1, dtype=torch.long)

    def copy_cache(self, src, dst, length):
        self.inner.copy_cache(src, dst, length)
        self.cache[dst] = -1
        self.cache[dst, :length] = self.cache[src, :length]

    def forward(self, tokens, start_pos=None, n_heads=None, logits_at=None, kv_len=None, rows=None):
        logits = self.inner(tokens, start_pos, n_heads, kv_len=kv_len, rows=rows).clone()
        B, T = tokens.shape
        pos = start_pos[:, None] + torch.arange(T)
        rows = torch.arange(B) if rows is None else rows
        self.cache[rows[:, None], pos] = tokens
        for b in range(B):
            row = self.cache[rows[b]].tolist()
            prompt = max((p for p in self.references if row[: len(p)] == list(p)), key=len, default=None)
            if prompt is None:  # a parked row (no sample in it): its output is ignored
                continue
            ref = self.references[prompt]
            wrong = self.wrong[prompt] if isinstance(self.wrong, dict) else self.wrong
            for t in range(T):
                p = int(pos[b, t])
                for j in range(1, logits.shape[2]):
                    target = ref[p + 1 + j] if p + 1 + j < len(ref) else 0
                    corrupt = (p * 31 + j * 17) % 5 < wrong
                    token = (target + 1) % self.vocab if corrupt else target
                    logits[b, t, j] = -1e4
                    logits[b, t, j, token] = 1e4
        return logits if logits_at is None else logits[torch.arange(B)[:, None], logits_at.view(B, -1)]

    def parameters(self, recurse: bool = True):
        return self.inner.parameters(recurse)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread, and do not stall when the machine is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

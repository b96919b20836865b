"""Batched decoding over a KV-cached (MTP) transformer: plain, self-speculative greedy, speculative sampling.

A batch is a chunk of (request, sample) rows. Each distinct prompt of the chunk is prefilled once
(right-padded, all prompts together) and its cache rows are replicated to its samples with
reorder_cache. Rows then advance on the device with their own lengths and positions; a row that
has hit EOS or its token budget is frozen there (it keeps re-feeding its last token at the same
position, which rewrites the same cache slot). About every `sync_every` tokens (that many plain
forwards, or sync_every // k speculative ones, which commit up to k tokens each) the host copies
the tokens once, decodes the still-running rows, checks stop sequences, hands back finished
samples and compacts the batch (reorder_cache to the surviving rows). Those periodic checks are
the only host syncs: stop sequences need decoded text, and a row that overshoots its stop by a
few forwards is cut back exactly (see finish.py), so the cadence never changes a result. It
bounds the forwards a finished row idles through, in tokens the same for both kinds of decoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from ..errors import UsageError
from . import sampling
from .finish import Finish, RowWatch
from .records import Completion, Request, SamplingSettings


@dataclass
class _Rows:
    """Device state of the rows in flight. Row r has determined out[r, :n[r]]; its last token g[r]
    (= out[r, n-1]) sits at position pos[r] and is not in the cache yet; drafts[r] guess the next k-1."""

    g: torch.Tensor  # [B]
    drafts: torch.Tensor  # [B, k-1]
    q: torch.Tensor | None  # [B, k-1, V] draft distributions (speculative sampling only)
    pos: torch.Tensor  # [B]
    n: torch.Tensor  # [B]
    out: torch.Tensor  # [B, max_new_tokens + 2k]
    seeds: torch.Tensor  # [B, 2]
    done: torch.Tensor  # [B] EOS or budget reached (stop sequences are found on the host)

    def select(self, index: torch.Tensor) -> "_Rows":
        return _Rows(*(None if t is None else t[index] for t in
                       (self.g, self.drafts, self.q, self.pos, self.n, self.out, self.seeds, self.done)))


class Generator:
    """Completes Requests with a model implementing the MTPTransformer cache protocol.

    `residual` is the rejection distribution of speculative sampling; it is a parameter only so a
    test can inject a wrong one and see the distribution test fail.
    """

    def __init__(self, model, tokenizer, device: str | torch.device | None = None, *, sync_every: int = 8,
                 residual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = sampling.residual):
        self.model, self.tokenizer = model, tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.sync_every, self.residual = sync_every, residual
        self.eos_id = tokenizer.eos_id if tokenizer.eos_id is not None else -1

    def generate(self, requests: Sequence[Request], settings: SamplingSettings,
                 batch_size: int) -> Iterator[tuple[int, list[Completion]]]:
        """Yield (request index, its n completions) as each request finishes."""
        heads = getattr(self.model, "n_future_tokens", 1)
        if settings.speculative > heads:
            raise UsageError(f"--speculative {settings.speculative} needs that many heads; the model has {heads}")
        if batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        if settings.heads > 1 and hasattr(self.model, "stack_heads"):
            self.model.stack_heads()  # the heads run together from now on: one batched block
        results = {i: [None] * r.n for i, r in enumerate(requests)}
        left = {i: r.n for i, r in enumerate(requests)}
        for i in [i for i, r in enumerate(requests) if r.n == 0]:
            yield i, results.pop(i)
        by_length = sorted(range(len(requests)), key=lambda i: len(requests[i].prompt))  # less padding per chunk
        rows = [(i, s) for i in by_length for s in range(requests[i].n)]
        for start in range(0, len(rows), batch_size):
            for (i, s), completion in self._decode_chunk(rows[start:start + batch_size], requests, settings):
                results[i][s] = completion
                left[i] -= 1
                if left[i] == 0:
                    yield i, results.pop(i)

    # -- one chunk ---------------------------------------------------------------------------------

    # no_grad wraps a generator only while it runs, never the caller between yields; not
    # inference_mode, so model-side caches built here stay usable outside
    @torch.no_grad()
    def _decode_chunk(self, chunk, requests, settings: SamplingSettings):
        dev, k, budget = self.device, settings.heads, settings.max_new_tokens
        prompt_of = list(dict.fromkeys(i for i, _ in chunk))
        prompt_ids = {i: self.tokenizer.encode(requests[i].prompt, bos=True) for i in prompt_of}
        if not all(prompt_ids.values()):
            raise UsageError("a prompt encodes to no tokens (empty prompt and a tokenizer without BOS)")
        lengths = torch.tensor([len(prompt_ids[i]) for i in prompt_of], device=dev)
        batch = torch.zeros(len(prompt_of), int(lengths.max()), dtype=torch.long, device=dev)
        for p, i in enumerate(prompt_of):
            batch[p, : len(prompt_ids[i])] = torch.tensor(prompt_ids[i], device=dev)
        cache_len = batch.shape[1] + budget + 2 * k
        self.model.setup_cache(max(len(chunk), len(prompt_of)), cache_len)
        # every head's cache is filled; only each prompt's last position is unembedded: [P, k, V]
        last = self.model(batch, start_pos=torch.zeros_like(lengths), n_heads=k, logits_at=lengths - 1,
                          kv_len=batch.shape[1])[:, 0]
        row_prompt = torch.tensor([prompt_of.index(i) for i, _ in chunk], device=dev)
        self.model.reorder_cache(row_prompt)
        seeds = sampling.split_seeds([requests[i].seeds[s] for i, s in chunk], dev)
        rows = self._start(last[row_prompt], lengths[row_prompt], seeds, settings)
        del last

        live = list(range(len(chunk)))  # chunk positions of the rows in flight, in batch order
        watches = [RowWatch(self.tokenizer, prompt_ids[i], requests[i].stop, self.eos_id, budget)
                   for i, _ in chunk]
        accepted = [[] for _ in chunk]  # accepted drafts per decode forward, per row
        while live:
            out, n = rows.out.cpu().tolist(), rows.n.cpu().tolist()
            keep = []
            for b, r in enumerate(live):
                finish = watches[r].check(out[b][: n[b]])
                if finish is None:
                    keep.append(b)
                else:
                    yield chunk[r], Completion(finish.text, finish.raw_text, finish.tokens,
                                               finish.reason, _stats(finish, accepted[r], k))
            if len(keep) < len(live):
                if not keep:
                    return
                index = torch.tensor(keep, device=dev)
                self.model.reorder_cache(index)
                rows, live = rows.select(index), [live[b] for b in keep]
            n = [n[b] for b in keep]  # in the new batch order, like live
            steps = min(max(1, self.sync_every // k), max(budget - count for count in n))
            # the last position these steps can reach: attention need not read the cache beyond it
            reach = max(len(prompt_ids[chunk[r][0]]) + count for r, count in zip(live, n)) + steps * k + k
            kv_len = min(cache_len, -(-reach // 64) * 64)  # few distinct shapes
            history = [self._step(rows, settings, kv_len) for _ in range(steps)]
            if k > 1:
                per_row = torch.stack(history, 1).cpu().tolist()
                for b, r in enumerate(live):
                    accepted[r].extend(per_row[b])

    def _start(self, last: torch.Tensor, lengths, seeds, settings: SamplingSettings) -> _Rows:
        """First token from the prefill's last position; drafts from heads 2..k there."""
        B, k, dev = last.shape[0], settings.heads, last.device
        zero = torch.zeros(B, dtype=torch.long, device=dev)
        drafts_at = torch.arange(1, k, device=dev).expand(B, -1)  # token index of each draft
        q = None
        if settings.greedy:
            g, drafts = last[:, 0].argmax(-1), last[:, 1:].argmax(-1)
        else:
            g = sampling.draw(sampling.probabilities(last[:, 0], settings),
                              sampling.uniform(seeds, zero, sampling.SAMPLE))
            q = sampling.probabilities(last[:, 1:], settings) if k > 1 else None
            drafts = self._draw_drafts(q, seeds, drafts_at) if k > 1 else last.new_zeros(B, 0, dtype=torch.long)
        out = torch.zeros(B, settings.max_new_tokens + 2 * k, dtype=torch.long, device=dev)
        out[:, 0] = g
        n = zero + 1
        done = (g == self.eos_id) | (n >= settings.max_new_tokens)
        return _Rows(g, drafts, q, lengths.clone(), n, out, seeds, done)

    def _draw_drafts(self, q, seeds, index):
        purpose = sampling.DRAFT + torch.arange(1, q.shape[1] + 1, device=q.device)
        return sampling.draw(q, sampling.uniform(seeds, index, purpose))

    # -- one forward -------------------------------------------------------------------------------

    def _step(self, rows: _Rows, settings: SamplingSettings, kv_len: int) -> torch.Tensor | None:
        """Advance every row by one forward, in place; returns the accepted-draft counts [B] (None if plain).

        kv_len bounds the cache slots attention reads (all positions of the step are below it)."""
        if settings.heads == 1:
            self._plain_step(rows, settings, kv_len)
            return None
        if settings.greedy:
            return self._speculative_greedy_step(rows, settings, kv_len)
        return self._speculative_sampling_step(rows, settings, kv_len)

    def _plain_step(self, rows: _Rows, settings: SamplingSettings, kv_len: int) -> None:
        logits = self.model(rows.g[:, None], start_pos=rows.pos, n_heads=1, kv_len=kv_len)[:, 0, 0]
        if settings.greedy:
            token = logits.argmax(-1)
        else:
            token = sampling.draw(sampling.probabilities(logits, settings),
                                  sampling.uniform(rows.seeds, rows.n, sampling.SAMPLE))
        self._commit(rows, torch.zeros_like(rows.n), token, token == self.eos_id, settings)

    def _speculative_greedy_step(self, rows: _Rows, settings: SamplingSettings, kv_len: int) -> torch.Tensor:
        """Verify and draft in one forward (blockwise parallel decoding)."""
        k = settings.heads
        block = torch.cat([rows.g[:, None], rows.drafts], 1)  # [B, k] at positions pos..pos+k-1
        logits = self.model(block, start_pos=rows.pos, n_heads=k, kv_len=kv_len)  # [B, k, k, V]
        truth = logits[:, :, 0].argmax(-1)  # truth[:, i] = greedy token after block[:, :i+1]
        agree = rows.drafts == truth[:, :-1]
        m = agree.long().cumprod(1).sum(1)  # accepted drafts
        at = torch.arange(len(m), device=m.device)
        self._write_block(rows, block)
        eos = ((rows.drafts == self.eos_id) & (torch.arange(k - 1, device=m.device) < m[:, None])).any(1)
        token = truth[at, m]
        self._commit(rows, m, token, eos | (token == self.eos_id), settings,
                     drafts=logits[at, m, 1:].argmax(-1))
        return m

    def _speculative_sampling_step(self, rows: _Rows, settings: SamplingSettings, kv_len: int) -> torch.Tensor:
        """Leviathan/Chen speculative sampling with the extra heads as drafters."""
        k = settings.heads
        block = torch.cat([rows.g[:, None], rows.drafts], 1)
        logits = self.model(block, start_pos=rows.pos, n_heads=k, kv_len=kv_len)
        p = sampling.probabilities(logits[:, :, 0], settings)  # [B, k, V] target at each block index
        x = rows.drafts[..., None]
        p_x, q_x = p[:, :-1].gather(-1, x)[..., 0], rows.q.gather(-1, x)[..., 0]
        draft_index = rows.n[:, None] + torch.arange(k - 1, device=x.device)  # token index of each draft
        u = sampling.uniform(rows.seeds, draft_index, sampling.ACCEPT)
        m = (u * q_x < p_x).long().cumprod(1).sum(1)
        at = torch.arange(len(m), device=m.device)
        self._write_block(rows, block)
        p_m = p[at, m]
        rejected = (m < k - 1)[:, None]
        target = torch.where(rejected, self.residual(p_m, rows.q[at, m.clamp(max=k - 2)]), p_m)
        token = sampling.draw(target, sampling.uniform(rows.seeds, rows.n + m, sampling.SAMPLE))
        eos = ((rows.drafts == self.eos_id) & (torch.arange(k - 1, device=m.device) < m[:, None])).any(1)
        q = sampling.probabilities(logits[at, m, 1:], settings)
        drafts = self._draw_drafts(q, rows.seeds, (rows.n + m + 1)[:, None] + torch.arange(k - 1, device=m.device))
        self._commit(rows, m, token, eos | (token == self.eos_id), settings, drafts=drafts, q=q)
        return m

    def _write_block(self, rows: _Rows, block: torch.Tensor) -> None:
        """out[n-1 : n-1+k] = block: g rewritten in place, drafts beyond n are provisional."""
        index = (rows.n - 1)[:, None] + torch.arange(block.shape[1], device=block.device)
        rows.out.scatter_(1, index, block)

    def _commit(self, rows: _Rows, m, token, eos, settings, drafts=None, q=None) -> None:
        """Accept m drafts and the new token for running rows; frozen (done) rows keep their state."""
        run = ~rows.done
        n = rows.n + m
        rows.out.scatter_(1, n[:, None], token[:, None])  # beyond a frozen row's tokens: harmless
        rows.g = torch.where(run, token, rows.g)
        rows.n = torch.where(run, n + 1, rows.n)
        rows.pos = torch.where(run, rows.pos + m + 1, rows.pos)
        rows.done = rows.done | eos | (rows.n >= settings.max_new_tokens)
        if drafts is not None:
            rows.drafts = drafts
        if q is not None:
            rows.q = q


def _stats(finish: Finish, accepted: list[int], k: int) -> dict:
    """Count the forwards up to the finishing token; drafted[j] counts forwards that examined head j+1's draft."""
    forwards, known = 1, 1
    drafted, taken = [1] + [0] * (k - 1), [1] + [0] * (k - 1)
    for m in (accepted if k > 1 else ()):
        if known >= finish.tokens:
            break
        forwards, known = forwards + 1, known + m + 1
        drafted[0], taken[0] = drafted[0] + 1, taken[0] + 1
        for j in range(1, k):
            drafted[j] += m >= j - 1
            taken[j] += m >= j
    if k == 1:
        forwards = drafted[0] = taken[0] = finish.tokens
    return {"forwards": forwards, "tokens_per_forward": round(finish.tokens / forwards, 4),
            "accepted_per_head": taken, "drafted_per_head": drafted}

"""The generation engine: continuous batching over a KV-cached (MTP) transformer, for plain decoding,
self-speculative greedy decoding and speculative sampling alike.

A pass (one generate() call) keeps B decoding rows, "slots", for its whole length, plus a few
staging rows. Each prompt is prefilled once, into a staging row; a sample of it takes a free slot
by copying the prompt's cache slots in and resetting the slot's position, seed and tokens. The
slots then advance together, one forward per step, each at its own position and length (attention
masks every row by its own position). A finished slot is refilled at the next host check by the
next pending sample, so the batch stays full until the pending samples run out, instead of
running nearly empty while a chunk's slowest row reaches the token budget.

Host checks ("syncs") come every `sync_every` committed tokens: that many plain forwards, or
sync_every / (tokens per forward so far) speculative ones, so speculative rows sync no more often
per token than plain ones and a finished row idles about as many tokens' worth. A sync copies every slot's tokens to the host
(into pinned memory, without blocking, on CUDA) and the host checks stop sequences on decoded
text there (finish.py). With `overlap` (the default on CUDA) the next round of forwards is
queued before the host looks at the previous copy, so the device never waits for the host; a
finished row then idles one round longer before its slot is refilled. A row that overshoots
its stop is cut back exactly, so neither cadence nor overlap changes a result.

Every random number is a function of (sample seed, token index, purpose) (sampling.uniform), and on
CPU every matmul sees the same number of rows whatever the batch (batch_invariant), so a sample's
tokens do not depend on its slot, its neighbours, B, sharding or resume.

The decode step (decode_step) is a pure function of the slots' tensors with static shapes for a
fixed B and kv_len (bucketed), so it compiles whole: `compile=True` runs it under torch.compile
(on CUDA in "reduce-overhead" mode, which captures CUDA graphs).
"""
from __future__ import annotations

import math
import sys
from collections import deque
from dataclasses import dataclass, fields
from typing import Callable, Iterator, Sequence

import torch

from ..errors import UsageError
from . import sampling
from .finish import Finish, RowWatch
from .records import Completion, Request, SamplingSettings

CPU_BATCH_SIZE = 32  # slots on CPU with --batch-size auto (see README: throughput flat from 32 on, 2 cores)
ROW_CHUNK = CPU_BATCH_SIZE  # batch-invariant matmuls run this many rows at a time (MTPTransformer.set_row_chunk)
STAGING_ROWS = 16  # prompts staged at once (rows beside the slots that hold prefills)
KV_BUCKET = 64  # attention reads the cache up to a multiple of this, eager
# Batch-invariant decoding of several tokens per forward (speculative): attention reads, and the cache
# holds, a multiple of this. CPU flash attention sums the cache in blocks of 512 slots, and with more
# than one query a block's matmul rounds a row's result differently with the block's length (kv_len 384,
# 448 and 512 give three results for a query at position 300; measured, torch 2.13); with one query,
# or with whole blocks, the length does not matter. kv_len comes from the longest row of a lane, so
# without this a speculative sample's bits depended on its neighbours.
INVARIANT_KV_BLOCK = 512
COMPILED_KV_BUCKETS = 4  # compiled: at most this many kv_len values per pass (on CUDA, a CUDA graph each)
MEMORY_MARGIN = 0.9  # of free memory (CUDA) or available host memory (CPU) for the cache; the rest: activations, slack


@dataclass
class Slots:
    """Device state of the B decoding rows. Slot b has determined out[b, :n[b]]; its last token g[b]
    (= out[b, n-1]) sits at position pos[b] and is not in the cache yet; drafts[b] guess the next k-1.
    A done slot (EOS or budget; stop sequences are found on the host) is frozen: it re-runs the
    same position and changes nothing, until the host refills it. accepted[b, f] = drafts accepted
    by the slot's f-th decode forward (speculative only); forwards[b] counts those forwards."""

    g: torch.Tensor  # [B]
    drafts: torch.Tensor  # [B, k-1]
    q: torch.Tensor  # [B, k-1, V] draft distributions (speculative sampling), else [B, 0, 0]
    pos: torch.Tensor  # [B]
    n: torch.Tensor  # [B]
    out: torch.Tensor  # [B, W], W = max_new_tokens + 2k
    seeds: torch.Tensor  # [B, 2]
    done: torch.Tensor  # [B] bool
    forwards: torch.Tensor  # [B]
    accepted: torch.Tensor  # [B, W]

    @classmethod
    def empty(cls, B: int, settings: SamplingSettings, device) -> "Slots":
        """B parked slots (done, nothing in them); q is sized at the first prefill, which knows V."""
        k, W = settings.heads, settings.max_new_tokens + 2 * settings.heads
        long = dict(dtype=torch.long, device=device)
        return cls(g=torch.zeros(B, **long), drafts=torch.zeros(B, k - 1, **long),
                   q=torch.zeros(B, 0, 0, device=device), pos=torch.zeros(B, **long),
                   n=torch.ones(B, **long), out=torch.zeros(B, W, **long), seeds=torch.zeros(B, 2, **long),
                   done=torch.ones(B, dtype=torch.bool, device=device), forwards=torch.zeros(B, **long),
                   accepted=torch.zeros(B, W, **long))

    def tensors(self) -> list[torch.Tensor]:
        return [getattr(self, f.name) for f in fields(self)]

    def prefix(self, n: int) -> "Slots":
        """Slots 0..n-1, as views: a step on them updates these slots in place."""
        return Slots(*(t[:n] for t in self.tensors()))


# -- the decode step: device only, static shapes, no host sync -----------------------------------------


def decode_step(model, s: Slots, settings: SamplingSettings, eos_id: int, kv_len: int,
                residual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """Advance every slot by one forward, in place. kv_len bounds the cache slots attention reads
    (every position of the step is below it)."""
    if settings.heads == 1:
        _plain_step(model, s, settings, eos_id, kv_len)
    elif settings.greedy:
        _speculative_greedy_step(model, s, settings, eos_id, kv_len)
    else:
        _speculative_sampling_step(model, s, settings, eos_id, kv_len, residual)


def _plain_step(model, s: Slots, settings: SamplingSettings, eos_id: int, kv_len: int) -> None:
    logits = model(s.g[:, None], start_pos=s.pos, n_heads=1, kv_len=kv_len)[:, 0, 0]
    if settings.greedy:
        token = logits.argmax(-1)
    else:
        token = sampling.draw(sampling.probabilities(logits, settings),
                              sampling.uniform(s.seeds, s.n, sampling.SAMPLE))
    _commit(s, torch.zeros_like(s.n), token, token == eos_id, settings)


def _speculative_greedy_step(model, s: Slots, settings: SamplingSettings, eos_id: int, kv_len: int) -> None:
    """Verify and draft in one forward (blockwise parallel decoding)."""
    k = settings.heads
    block = torch.cat([s.g[:, None], s.drafts], 1)  # [B, k] at positions pos..pos+k-1
    logits = model(block, start_pos=s.pos, n_heads=k, kv_len=kv_len)  # [B, k, k, V]
    truth = logits[:, :, 0].argmax(-1)  # truth[:, i] = greedy token after block[:, :i+1]
    m = (s.drafts == truth[:, :-1]).long().cumprod(1).sum(1)  # accepted drafts
    at = torch.arange(len(m), device=m.device)
    _write_block(s, block)
    token = truth[at, m]
    _commit(s, m, token, _eos_accepted(s.drafts, m, eos_id) | (token == eos_id), settings,
            drafts=logits[at, m, 1:].argmax(-1))


def _speculative_sampling_step(model, s: Slots, settings: SamplingSettings, eos_id: int, kv_len: int,
                               residual) -> None:
    """Leviathan/Chen speculative sampling with the extra heads as drafters."""
    k = settings.heads
    block = torch.cat([s.g[:, None], s.drafts], 1)
    logits = model(block, start_pos=s.pos, n_heads=k, kv_len=kv_len)
    p = sampling.probabilities(logits[:, :, 0], settings)  # [B, k, V] target at each block index
    x = s.drafts[..., None]
    p_x, q_x = p[:, :-1].gather(-1, x)[..., 0], s.q.gather(-1, x)[..., 0]
    draft_index = s.n[:, None] + torch.arange(k - 1, device=x.device)  # token index of each draft
    u = sampling.uniform(s.seeds, draft_index, sampling.ACCEPT)
    m = (u * q_x < p_x).long().cumprod(1).sum(1)
    at = torch.arange(len(m), device=m.device)
    _write_block(s, block)
    p_m = p[at, m]
    rejected = (m < k - 1)[:, None]
    target = torch.where(rejected, residual(p_m, s.q[at, m.clamp(max=k - 2)]), p_m)
    token = sampling.draw(target, sampling.uniform(s.seeds, s.n + m, sampling.SAMPLE))
    q = sampling.probabilities(logits[at, m, 1:], settings)
    drafts = _draw_drafts(q, s.seeds, (s.n + m + 1)[:, None] + torch.arange(k - 1, device=m.device))
    _commit(s, m, token, _eos_accepted(s.drafts, m, eos_id) | (token == eos_id), settings, drafts=drafts, q=q)


def _eos_accepted(drafts: torch.Tensor, m: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[B] whether one of the m accepted drafts is the EOS."""
    return ((drafts == eos_id) & (torch.arange(drafts.shape[1], device=m.device) < m[:, None])).any(1)


def _draw_drafts(q: torch.Tensor, seeds: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    purpose = sampling.DRAFT + torch.arange(1, q.shape[1] + 1, device=q.device)
    return sampling.draw(q, sampling.uniform(seeds, index, purpose))


def _write_block(s: Slots, block: torch.Tensor) -> None:
    """out[n-1 : n-1+k] = block: g rewritten in place, drafts beyond n are provisional."""
    index = (s.n - 1)[:, None] + torch.arange(block.shape[1], device=block.device)
    s.out.scatter_(1, index, block)


def _commit(s: Slots, m, token, eos, settings: SamplingSettings, drafts=None, q=None) -> None:
    """Accept m drafts and the new token for running slots; done (frozen) slots keep their state."""
    run = ~s.done
    n = s.n + m
    s.out.scatter_(1, n[:, None], token[:, None])  # beyond a frozen slot's tokens: harmless
    if drafts is not None:  # speculative: drafts accepted per forward, for the stats
        s.accepted.scatter_(1, s.forwards[:, None], m[:, None])  # the same
    s.g.copy_(torch.where(run, token, s.g))
    s.pos.copy_(torch.where(run, s.pos + m + 1, s.pos))
    s.n.copy_(torch.where(run, n + 1, s.n))
    s.forwards.add_(run.long())
    s.done.copy_(s.done | eos | (s.n >= settings.max_new_tokens))
    if drafts is not None:
        s.drafts.copy_(drafts)
    if q is not None:
        s.q.copy_(q)


def first_tokens(last: torch.Tensor, seeds: torch.Tensor, settings: SamplingSettings):
    """(g, drafts, q) of new samples from their prompt's last-position logits [R, k, V]: the first token
    from head 1, drafts from heads 2..k there (q: their distributions, speculative sampling only)."""
    R, k = last.shape[:2]
    if settings.greedy:
        return last[:, 0].argmax(-1), last[:, 1:].argmax(-1), None
    zero = torch.zeros(R, dtype=torch.long, device=last.device)
    g = sampling.draw(sampling.probabilities(last[:, 0], settings), sampling.uniform(seeds, zero, sampling.SAMPLE))
    if k == 1:
        return g, last.new_zeros(R, 0, dtype=torch.long), None
    q = sampling.probabilities(last[:, 1:], settings)
    return g, _draw_drafts(q, seeds, torch.arange(1, k, device=last.device).expand(R, -1)), q


# -- the host side -------------------------------------------------------------------------------------


@dataclass
class _Sample:
    """One sample in flight: which request and seed, and its stop watch."""

    request: int
    index: int  # among the request's samples
    watch: RowWatch
    slot: int
    finished: bool = False


class _Snapshot:
    """The slots' (n, forwards, tokens, accepted) as of one sync, on its way to the host."""

    def __init__(self, s: Slots, owners: list[_Sample | None], pinned: torch.Tensor | None, speculative: bool):
        parts = [s.n[:, None], s.forwards[:, None], s.out] + ([s.accepted] if speculative else [])
        data = torch.cat(parts, 1)
        self.owners, self.width, self.event = owners, s.out.shape[1], None
        if pinned is None:
            self.host = data
        else:  # CUDA: copy without blocking; wait() blocks only until this copy has landed
            self.host = pinned[: data.shape[0], : data.shape[1]]
            self.host.copy_(data, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()

    def rows(self) -> list[list[int]]:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()


class Generator:
    """Completes Requests with a model implementing the cache protocol of MTPTransformer
    (setup_cache(rows, seq_len, n_heads), copy_cache(src, dst, length), forward(tokens, start_pos,
    n_heads, logits_at, kv_len, rows)).

    refill=False fills the slots only when all are free: fixed batches, the pre-engine behaviour,
    kept to measure what refilling gains (benchmarks/bench_engine.py). overlap: queue the next
    round before reading the last sync's tokens (default: on CUDA, where the device runs ahead of
    the host). batch_invariant (default: on CPU) runs the model's matmuls in fixed chunks of
    ROW_CHUNK rows, so a sample's bits, not only its seeds, are the same whatever runs beside it; on
    CUDA the library kernels still pick their reduction order by row count (see the README).
    on_round(forwards, slots, kv_len) hears of every round of forwards queued (what a
    benchmark needs to model the bytes a schedule reads). `residual` is the rejection distribution
    of speculative sampling; it is a parameter only so a test can inject a wrong one and see the
    distribution test fail.
    """

    def __init__(self, model, tokenizer, device: str | torch.device | None = None, *, sync_every: int = 8,
                 refill: bool = True, compile: bool | None = None, overlap: bool | None = None,
                 batch_invariant: bool | None = None,
                 on_round: Callable[[int, int, int | tuple[int, ...]], None] | None = None,
                 residual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = sampling.residual):
        self.model, self.tokenizer = model, tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.sync_every, self.refill, self.residual, self.on_round = sync_every, refill, residual, on_round
        self.batch_invariant = self.device.type == "cpu" if batch_invariant is None else batch_invariant
        self.overlap = self.device.type == "cuda" if overlap is None else overlap
        self.eos_id = tokenizer.eos_id if tokenizer.eos_id is not None else -1
        self.compile = self.device.type == "cuda" if compile is None else compile
        self._compiled = None
        if self.compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else None  # CUDA graphs on CUDA
            # dynamic=None: the first kv_len compiles static, a second one recompiles with kv_len (and
            # the slot count) symbolic, once; a compile per bucket cost 1.4x that on CPU
            self._compiled = torch.compile(decode_step, mode=mode, fullgraph=True, dynamic=None)
        self.syncs = 0  # host syncs so far (a test counts them)

    def _step(self, *args) -> None:
        """decode_step, compiled if asked; a compiler failure falls back to eager with a warning
        (it fails before running, so the step then runs once, eagerly: same results, slower)."""
        if self._compiled is not None:
            try:
                return self._compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compiler error; eager raises what is real
                first = (str(e).strip().splitlines() or [""])[0][:200]
                print(f"evalharness: warning: torch.compile of the decode step failed ({type(e).__name__}: "
                      f"{first}); decoding eagerly", file=sys.stderr)
                self._compiled = None
        decode_step(*args)

    def generate(self, requests: Sequence[Request], settings: SamplingSettings,
                 batch_size: int | None = None) -> Iterator[tuple[int, list[Completion]]]:
        """Yield (request index, its n completions) as each request finishes. batch_size None: auto."""
        heads = getattr(self.model, "n_future_tokens", 1)
        if settings.speculative > heads:
            raise UsageError(f"--speculative {settings.speculative} needs that many heads; the model has {heads}")
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"batch size must be >= 1, got {batch_size}")
        for i in [i for i, r in enumerate(requests) if r.n == 0]:
            yield i, []
        if sum(r.n for r in requests):
            yield from _Pass(self, requests, settings, batch_size).run()

    def plan(self, requests: Sequence[Request], settings: SamplingSettings, batch_size: int | None = None,
             prompt_ids: Sequence[list[int]] | None = None) -> tuple[int, int, int]:
        """(slots, staging rows, cache slots per row) a pass over `requests` would use (prompt_ids: the
        requests' prompts already encoded, else they are encoded here)."""
        k = settings.heads
        if prompt_ids is None:
            prompt_ids = [self.tokenizer.encode(r.prompt, bos=True) if r.n else [] for r in requests]
        longest = max((len(ids) for ids, r in zip(prompt_ids, requests) if r.n), default=0)
        unit = self.kv_unit(k)
        width = -(-(longest + settings.max_new_tokens + 2 * k) // unit) * unit
        staging = min(STAGING_ROWS, sum(1 for r in requests if r.n))
        total = sum(r.n for r in requests)  # never more slots than samples: they would only idle
        slots = min(self.batch_size_for(batch_size and min(batch_size, total), width, k, staging), total)
        return slots, staging, width

    def kv_unit(self, heads: int) -> int:
        """Attention lengths and the cache width are multiples of this (INVARIANT_KV_BLOCK: the cache's
        last block then has the same length in every pass, whatever its longest prompt)."""
        return INVARIANT_KV_BLOCK if self.batch_invariant and heads > 1 else KV_BUCKET

    def rows_that_fit(self, seq_len: int, heads: int) -> int | None:
        """Cache rows of seq_len tokens that memory holds for a new pass: free device memory on CUDA,
        the host's available memory on CPU (None where neither is known). The last pass's cache is
        dropped first (the new pass's setup_cache replaces it anyway), and the allocator's cached
        blocks handed back, so a run's second pass gets the slots its first had."""
        if self.device.type not in ("cuda", "cpu") or not hasattr(self.model, "cache_bytes"):
            return None
        self.model.setup_cache(0, 0, heads)
        if self.device.type == "cpu":
            free = available_host_memory()
            if free is None:
                return None
        else:
            torch.cuda.empty_cache()
            free, _ = torch.cuda.mem_get_info(self.device)
        return int(free * MEMORY_MARGIN) // self.model.cache_bytes(1, seq_len, heads)

    def batch_size_for(self, requested: int | None, seq_len: int, heads: int, staging: int) -> int:
        """Slots for a pass: the request, else all that memory holds (CUDA) or CPU_BATCH_SIZE (fewer where
        the host's memory holds fewer). A request memory cannot hold, or memory for no slot at all, is
        a UsageError before any work."""
        fit = self.rows_that_fit(seq_len, heads)
        if fit is not None and (fit - staging < 1 or (requested or 0) + staging > fit):
            per_row = self.model.cache_bytes(1, seq_len, heads)
            raise UsageError(f"{'--batch-size ' + str(requested) if requested else 'one decoding row'} does not fit "
                             f"in {self.device.type} memory: {per_row / 2**20:.0f} MiB of KV cache per row of "
                             f"{seq_len} tokens, room for {max(0, fit - staging)} rows beside {staging} prompt rows")
        if requested is not None:
            return requested
        if fit is None:
            return CPU_BATCH_SIZE
        return fit - staging if self.device.type == "cuda" else min(CPU_BATCH_SIZE, fit - staging)

    def setup_cache(self, rows: int, seq_len: int, heads: int, batch_size: int | None) -> None:
        """The pass's KV cache; memory that cannot hold it (an allocator's error: the host's memory
        estimate can be wrong, e.g. under a cgroup limit) is a one-line UsageError, not a traceback."""
        try:
            self.model.setup_cache(rows, seq_len, heads)
        except (MemoryError, RuntimeError) as e:
            if not (isinstance(e, (MemoryError, torch.OutOfMemoryError)) or "allocate memory" in str(e)):
                raise
            self.model.setup_cache(0, 0, heads)  # hand back whatever part was allocated
            asked = f"--batch-size {batch_size}" if batch_size else f"{rows} decoding rows"
            raise UsageError(f"{asked} does not fit in {self.device.type} memory: could not allocate the KV cache "
                             f"of {rows} rows of {seq_len} tokens; use a smaller --batch-size") from None


def available_host_memory() -> int | None:
    """Bytes the host can still give this process without swapping (MemAvailable; None: not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _Pass:
    """One generate() call: its pending samples, B slots, staged prompts and the sync loop.

    When no pending sample can take a slot before the running ones finish (the end of the pass;
    every chunk with refill off), the running samples move to the first slots and the steps run
    on that prefix only: 1, 2, 4, ... slots, each shape static while it lasts, so the pass's tail
    does not pay for B slots to finish a few samples.
    """

    def __init__(self, gen: Generator, requests: Sequence[Request], settings: SamplingSettings,
                 batch_size: int | None):
        self.gen, self.model, self.requests, self.settings = gen, gen.model, requests, settings
        self.k, self.budget, self.dev = settings.heads, settings.max_new_tokens, gen.device
        self.prompt_ids = [gen.tokenizer.encode(r.prompt, bos=True) if r.n else [] for r in requests]
        if not all(ids for ids, r in zip(self.prompt_ids, requests) if r.n):
            raise UsageError("a prompt encodes to no tokens (empty prompt and a tokenizer without BOS)")
        self.pending = deque((i, s) for i, r in enumerate(requests) for s in range(r.n))
        B, self.P, self.width = gen.plan(requests, settings, batch_size, self.prompt_ids)  # slots, staging, row length
        self.full = self.active = B
        if hasattr(self.model, "stack_heads"):  # the heads run together from now on: one batched block (for
            self.model.stack_heads()  # plain decoding too, so head 1's bits are the same in every pass)
        if hasattr(self.model, "set_row_chunk"):
            self.model.set_row_chunk(ROW_CHUNK if gen.batch_invariant else None)
        gen.setup_cache(B + self.P, self.width, self.k, batch_size)  # slots, then staging rows
        self.all_slots = self.slots = Slots.empty(B, settings, self.dev)  # slots: the active prefix
        self.owner: list[_Sample | None] = [None] * B  # the sample in each slot
        self.parked = set(range(B))  # free slots already marked done on the device
        self.n_hi = [0] * B  # host bound on each slot's n after the queued forwards
        self.staged: dict[int, int] = {}  # request -> staging row holding its prefill
        self.staged_last: torch.Tensor | None = None  # [P, k, V] logits at each staged prompt's end
        self.unplaced = {i: r.n for i, r in enumerate(requests) if r.n}  # samples not yet in a slot
        self.results: dict[int, list] = {i: [None] * r.n for i, r in enumerate(requests) if r.n}
        self.left = dict(self.unplaced)
        self.per_forward = float(self.k)  # tokens a decode forward commits, as measured at the last sync
        self.compiled = compiled = gen._compiled is not None
        unit = gen.kv_unit(self.k)
        self.kv_bucket = unit if not compiled else \
            max(unit, -(-self.width // (COMPILED_KV_BUCKETS * unit)) * unit)
        self.pinned = None
        if self.dev.type == "cuda":  # two host buffers: one being read while the next copy lands
            W = 2 + self.slots.out.shape[1] * (2 if self.k > 1 else 1)
            self.pinned = [torch.empty(B, W, dtype=torch.long, pin_memory=True) for _ in range(2)]
        self.compiled_on_cuda = compiled and self.dev.type == "cuda"
        self.static = not self.compiled_on_cuda  # whether _fix_addresses has nothing to do

    def _fix_addresses(self) -> None:
        """The compiled step updates the slots and the cache in place; CUDA graphs need their addresses fixed."""
        for t in self.slots.tensors() + [b for b in self.model.buffers() if b.dim() >= 4]:
            torch._dynamo.mark_static_address(t)
        self.static = True

    def _use_slots(self, n: int) -> None:
        """Run the steps on slots 0..n-1 from now on."""
        self.active, self.slots = n, self.all_slots.prefix(n)
        self.static = not self.compiled_on_cuda

    # no_grad wraps a generator only while it runs, never the caller between yields; not
    # inference_mode, so model-side caches built here stay usable outside
    @torch.no_grad()
    def run(self) -> Iterator[tuple[int, list[Completion]]]:
        previous, flip = None, 0
        while self.left:
            self._fill()
            self._shrink()
            snapshot = None
            if any(o is not None for o in self.owner):
                if not self.static:
                    self._fix_addresses()
                steps = min(self.gen.sync_every, max(1, math.ceil(self.gen.sync_every / self.per_forward)))
                kv_len = self._kv_len(steps)
                if self.gen.on_round is not None:
                    self.gen.on_round(steps, self.active, kv_len)
                for _ in range(steps):
                    self.gen._step(self.model, self.slots, self.settings, self.gen.eos_id, kv_len,
                                   self.gen.residual)
                pinned = self.pinned[flip] if self.pinned else None
                flip ^= 1
                snapshot = _Snapshot(self.slots, self.owner[: self.active], pinned, self.k > 1)
                self.gen.syncs += 1
            if not self.gen.overlap:
                previous, snapshot = snapshot, None
            if previous is not None:
                yield from self._check(previous)
            previous = snapshot

    def _kv_len(self, steps: int) -> int | tuple[int, ...]:
        """Attention's cache length for the next `steps` forwards, past every position a slot can reach:
        one length, or one per lane of slots, the running samples sorted into lanes by length first."""
        reach: list[int | None] = [None] * self.active
        for b, sample in enumerate(self.owner[: self.active]):
            if sample is not None:
                self.n_hi[b] = min(self.n_hi[b] + steps * self.k, self.budget + self.k)
                reach[b] = len(self.prompt_ids[sample.request]) + self.n_hi[b] + self.k
        lanes = self._lanes()
        if lanes > 1:
            reach = self._sort_into_lanes(reach, lanes)
        size = self.active // lanes
        lengths = tuple(self._bucket(max((r for r in reach[g * size:(g + 1) * size] if r), default=1))
                        for g in range(lanes))
        return lengths if lanes > 1 else lengths[0]

    def _bucket(self, reach: int) -> int:
        return min(self.width, -(-reach // self.kv_bucket) * self.kv_bucket)

    def _lanes(self) -> int:
        """Lanes of at least 4 slots, up to 4 of them; one when compiled (every lane length would be a
        shape: a CUDA graph each)."""
        if self.compiled:
            return 1
        return next((g for g in (4, 2) if self.active % g == 0 and self.active // g >= 4), 1)

    def _sort_into_lanes(self, reach: list[int | None], lanes: int) -> list[int | None]:
        """Move the longest samples to the first lanes (ties keep their order, so few move), so a lane
        of short samples reads a short cache; returns the reach per slot after the moves."""
        size = self.active // lanes
        ranked = sorted((b for b in range(self.active) if reach[b] is not None),
                        key=lambda b: (-self._bucket(reach[b]), b))
        target = {b: i // size for i, b in enumerate(ranked)}
        src, dst = [], []
        for g in range(lanes):
            here = range(g * size, (g + 1) * size)
            free = [b for b in here if target.get(b) != g]
            incoming = [b for b in ranked if target[b] == g and b not in here]
            src += incoming
            dst += free[: len(incoming)]
        if src:
            self._move(src, dst, max(reach[b] for b in src))
            moved = dict(zip(dst, (reach[b] for b in src)))
            reach = [moved.get(b, None if b in src else r) for b, r in enumerate(reach)]
        return reach

    def _move(self, src: list[int], dst: list[int], length: int) -> None:
        """Samples in slots src move to slots dst (all at once: a slot in both is read before it is
        written); their cache slots < length and state come along, the slots they leave are parked."""
        s, d = self._to_device(src), self._to_device(dst)
        self.model.copy_cache(s, d, length)
        for t in self.all_slots.tensors():
            t[d] = t[s]
        samples = [self.owner[b] for b in src]
        n_hi = [self.n_hi[b] for b in src]
        for b in src:
            self.owner[b] = None
        for b, sample, hi in zip(dst, samples, n_hi):
            self.owner[b], self.n_hi[b], sample.slot = sample, hi, b
            self.parked.discard(b)
        left = [b for b in src if self.owner[b] is None]
        if left:
            index = self._to_device(left)
            self.all_slots.done[index], self.all_slots.pos[index] = True, 0
            self.parked.update(left)

    # -- refilling slots -----------------------------------------------------------------------------

    def _fill(self) -> None:
        """Give free slots the next pending samples (with refill off: only once all slots are free)."""
        free = [b for b, o in enumerate(self.owner[: self.active]) if o is None]
        if not self.gen.refill and len(free) < self.active:
            return
        if self.pending and self.active < self.full:  # a new chunk (refill off): all slots again
            self._use_slots(self.full)
            free = list(range(self.full))
        while free and self.pending:
            take = self._stage(len(free))
            self._place(free[: len(take)], take)
            free = free[len(take):]
        idle = [b for b in free if b not in self.parked]
        if idle:  # a freed slot nobody takes stops, at position 0 (a stop sequence is not known on the device)
            index = self._to_device(idle)
            self.slots.done[index], self.slots.pos[index] = True, 0
            self.parked.update(idle)

    def _shrink(self) -> None:
        """No sample can take a slot before the running ones finish: when they fill at most half the
        active slots, move them to the front and run the smallest power of two of slots that holds them."""
        if self.pending and self.gen.refill:
            return
        running = [b for b in range(self.active) if self.owner[b] is not None]
        if not running or len(running) > self.active // 2:
            return
        target = 1 << (len(running) - 1).bit_length()
        moving = [b for b in running if b >= target]
        if moving:
            free = [b for b in range(target) if self.owner[b] is None][: len(moving)]
            self._move(moving, free, self.width)
        self._use_slots(target)

    def _stage(self, want: int) -> list[tuple[int, int]]:
        """The next pending samples (at most `want`) whose prompts are prefilled: prefill the new ones
        together into staging rows (a prompt keeps its row until all its samples are placed)."""
        take, new = [], []
        for i, s in self.pending:
            if len(take) == want:
                break
            if i not in self.staged and i not in new:
                if len(self.staged) + len(new) == self.P:
                    break
                new.append(i)
            take.append((i, s))
        for _ in take:
            self.pending.popleft()
        if new:
            rows = [r for r in range(self.P) if r not in self.staged.values()][: len(new)]
            self._prefill(new, rows)
            self.staged.update(zip(new, rows))
        return take

    def _prefill(self, new: list[int], rows: list[int]) -> None:
        """Prefill prompts `new` into staging rows `rows`, each prompt alone: padded beside others, its
        attention would run at another query and cache length, and CPU kernels then sum in another
        order (its bits would depend on the prompts staged with it). Every used head's cache is
        filled; only the prompt's last position is unembedded, giving staged_last[row] [k, V]."""
        for i, row in zip(new, rows):
            ids = self.prompt_ids[i]
            kv_len = min(self.width, -(-len(ids) // KV_BUCKET) * KV_BUCKET)  # a bucket, like every other
            last = self.model(self._to_device([ids]), start_pos=self._to_device([0]), n_heads=self.k,
                              logits_at=self._to_device([len(ids) - 1]), kv_len=kv_len,
                              rows=self._to_device([row + self.full]))[0, 0]
            if self.staged_last is None:
                self.staged_last = last.new_zeros(self.P, *last.shape)
                if self.k > 1 and not self.settings.greedy:
                    self.all_slots.q = torch.zeros(self.full, self.k - 1, last.shape[-1], device=self.dev)
                    self._use_slots(self.active)
            self.staged_last[row] = last

    def _place(self, slots: list[int], take: list[tuple[int, int]]) -> None:
        """Start samples `take` in `slots`: their prompt's cache copied in, position, seed and tokens reset."""
        rows = [self.staged[i] for i, _ in take]
        lengths = [len(self.prompt_ids[i]) for i, _ in take]
        src, dst = self._to_device(rows), self._to_device(slots)
        self.model.copy_cache(src + self.full, dst, max(lengths))
        seeds = sampling.split_seeds([self.requests[i].seeds[s] for i, s in take], "cpu")
        seeds = self._to_device(seeds)
        g, drafts, q = first_tokens(self.staged_last[src], seeds, self.settings)
        s = self.slots
        s.g[dst], s.drafts[dst], s.pos[dst], s.seeds[dst] = g, drafts, self._to_device(lengths), seeds
        if q is not None:
            s.q[dst] = q
        s.n[dst], s.forwards[dst], s.out[dst], s.accepted[dst] = 1, 0, 0, 0
        s.out[dst, 0] = g
        s.done[dst] = (g == self.gen.eos_id) | (self.budget <= 1)
        for b, (i, j) in zip(slots, take):
            watch = RowWatch(self.gen.tokenizer, self.prompt_ids[i], self.requests[i].stop, self.gen.eos_id,
                             self.budget)
            self.owner[b], self.n_hi[b] = _Sample(i, j, watch, b), 1
            self.parked.discard(b)
            self.unplaced[i] -= 1
            if self.unplaced[i] == 0:
                del self.staged[i]  # all its samples placed: the staging row is free

    def _to_device(self, values) -> torch.Tensor:
        """A host list or tensor on the device, without a sync (pinned, non-blocking) on CUDA."""
        t = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=torch.long)
        if self.dev.type != "cuda":
            return t.to(self.dev)
        return t.pin_memory().to(self.dev, non_blocking=True)

    # -- host checks ---------------------------------------------------------------------------------

    def _check(self, snapshot: _Snapshot) -> Iterator[tuple[int, list[Completion]]]:
        """Find the samples this sync shows finished; free their slots; yield the requests now complete."""
        rows = snapshot.rows()
        committed, forwards_seen = 0, 0
        for b, sample in enumerate(snapshot.owners):
            if sample is None or sample.finished:
                continue
            n, forwards, row = rows[b][0], rows[b][1], rows[b][2:]
            committed, forwards_seen = committed + n - 1, forwards_seen + forwards
            finish = sample.watch.check(row[:n])
            if finish is None:
                continue
            sample.finished = True
            self.owner[sample.slot] = None  # (a move may have changed its slot since this sync)
            accepted = row[snapshot.width: snapshot.width + forwards] if self.k > 1 else []
            completion = Completion(finish.raw_text, finish.tokens, finish.reason, _stats(finish, accepted, self.k))
            i = sample.request
            self.results[i][sample.index] = completion
            self.left[i] -= 1
            if self.left[i] == 0:
                del self.left[i]
                yield i, self.results.pop(i)
        if forwards_seen:
            self.per_forward = committed / forwards_seen


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

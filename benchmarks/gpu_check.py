#!/usr/bin/env python
"""GPU check: the generation engine at 7B scale on one card, in one call (under 8 minutes on an H200).

A 7B-shaped 4-head MTP model (Meta's 7B_200B_4 shapes: dim 4096, 32 blocks of which 4 are heads,
vocab 32000) with random weights is built directly on the GPU in bf16. Measured in the same run:

- plain greedy and self-speculative greedy decoding (4 heads, oracle drafts: every draft is the
  true continuation, so 4 tokens per forward, the upper bound; random heads would draft garbage)
  at batch 1, 64 and auto (as many slots as free memory holds), eagerly and, as long as the time
  budget lasts, with the decode step compiled (CUDA graphs);
- transformers `generate` (greedy, same prompt, same trunk + head 1 weights) at batch 1 and 64;
- the memory-bandwidth bound: weight bytes + KV-cache bytes read per forward (every row reading
  its own length), divided by the card's bandwidth.

Samples have no EOS and run the whole token budget. One table is printed at the end, then the estimated
wall time of HumanEval's paper protocol (n = 200 at two temperatures) at the best plain throughput.

    python benchmarks/gpu_check.py           # on the GPU machine
    python benchmarks/gpu_check.py --smoke   # a tiny configuration on CPU in seconds (tested in the default suite)

Needs torch and transformers besides the project itself (pip install --no-deps -e .).
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import torch

from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.models import ModelArgs, MTPTransformer
from evalharness.models.checkpoint import hf_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle import OracleDrafts  # noqa: E402

BANDWIDTH = {"H200": 4.8e12, "H100": 3.35e12, "A100": 2.0e12}  # bytes/s (SXM parts)
HUMANEVAL_PAPER_SAMPLES = 164 * 200 * 2  # problems x n x temperatures (0.1 and 0.8)
OVERRUN_S = 30  # a measurement may run this long past --budget-s before it is stopped


@dataclass(frozen=True)
class Shape:
    dim: int
    n_layers: int  # all blocks, the heads included
    n_heads: int
    vocab: int
    multiple_of: int


SEVEN_B = Shape(dim=4096, n_layers=32, n_heads=32, vocab=32000, multiple_of=256)
TINY = Shape(dim=64, n_layers=6, n_heads=4, vocab=512, multiple_of=32)


class IdTokenizer:
    """Prompts are space-separated token ids and texts are ids again; no EOS: every sample runs its budget."""

    bos_id, eos_id = None, None

    def __init__(self, vocab: int):
        self.vocab_size = vocab

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return [int(t) for t in text.split()]

    def decode_completion(self, prompt_ids, ids) -> str:
        return " ".join(map(str, ids))


@contextlib.contextmanager
def built_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Modules constructed inside get their parameters on `device` in `dtype` directly."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(default)


def build_model(shape: Shape, device: torch.device, dtype: torch.dtype) -> MTPTransformer:
    """Random weights, allocated on the device in the dtype directly (no CPU copy, no fp32 detour)."""
    args = ModelArgs(dim=shape.dim, n_layers=shape.n_layers, n_heads=shape.n_heads, vocab_size=shape.vocab,
                     multiple_of=shape.multiple_of, n_future_tokens=4, max_seq_len=2048)
    torch.manual_seed(0)
    with built_on(device, dtype):
        model = MTPTransformer(args)
    return model.eval().requires_grad_(False)


def build_hf(model: MTPTransformer, device: torch.device, dtype: torch.dtype):
    """transformers' Llama on the same trunk + head 1 (the weights are shared, wq/wk permuted copies)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    a = model.args
    config = LlamaConfig(hidden_size=a.dim, intermediate_size=a.ffn_hidden_dim,
                         num_hidden_layers=a.n_layers - a.n_future_tokens + 1, num_attention_heads=a.n_heads,
                         num_key_value_heads=a.kv_heads, head_dim=a.head_dim, vocab_size=a.vocab_size,
                         max_position_embeddings=4096, rms_norm_eps=a.norm_eps, rope_theta=a.rope_theta,
                         tie_word_embeddings=False)
    with built_on(device, dtype):
        hf = LlamaForCausalLM(config)
    state = hf_state_dict(SimpleNamespace(args=a, state=model.state_dict()))  # it reads only .args and .state
    hf.load_state_dict(state, strict=True, assign=True)
    return hf.eval().requires_grad_(False)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


class Overrun(Exception):
    """A measurement ran past the time budget."""


def _overrun(signum, frame):
    raise Overrun(f"stopped {OVERRUN_S} s after the time budget")


class Check:
    """The run: configuration, model, prompt, and the rows of the table."""

    def __init__(self, args):
        self.smoke = args.smoke
        self.device = torch.device("cpu" if args.smoke else "cuda")
        self.dtype = torch.float32 if args.smoke else torch.bfloat16
        self.shape = TINY if args.smoke else SEVEN_B
        self.new_tokens, self.prompt_len = args.new_tokens, args.prompt_len
        self.budget_s, self.t0 = args.budget_s, time.monotonic()
        self.compile = args.compile and not args.smoke
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.device_name = name
        self.bandwidth = args.bandwidth_gbs * 1e9 if args.bandwidth_gbs else next(
            (bw for key, bw in BANDWIDTH.items() if key in name), 20e9)
        gen = torch.Generator().manual_seed(1)
        self.prompt = " ".join(str(int(t)) for t in torch.randint(3, self.shape.vocab, (self.prompt_len,), generator=gen))
        self.rows: list[dict] = []
        self.model = build_model(self.shape, self.device, self.dtype)
        self.tok = IdTokenizer(self.shape.vocab)
        self.reference: list[int] | None = None  # plain greedy continuation (prompt included)

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.t0)

    def settings(self, k: int) -> SamplingSettings:
        return SamplingSettings(temperature=0.0, max_new_tokens=self.new_tokens, speculative=k if k > 1 else 0)

    def auto_slots(self, k: int) -> int:
        gen = Generator(self.model, self.tok, self.device, compile=False)
        return gen.plan([Request(self.prompt, 1 << 16, tuple(range(1 << 16)))], self.settings(k), None)[0]

    def release(self) -> None:
        """Drop the last measurement's cache (auto slots fill the card), so the next one has the memory."""
        self.model.setup_cache(1, 64)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def bound(self, k: int, batch: int) -> float:
        """Tokens/s if a forward cost only reading its weights and each row's own cache, at the bandwidth."""
        m = self.model
        blocks = list(m.layers[:-1]) + m.heads[:k]
        weights = sum(p.numel() for b in blocks for p in b.parameters()) + m.output.weight.numel()
        a, es = m.args, self.model.output.weight.element_size()
        mean_length = self.prompt_len + self.new_tokens / 2
        cache = batch * len(blocks) * 2 * a.kv_heads * a.head_dim * mean_length
        return batch * k / ((weights + cache) * es / self.bandwidth)  # oracle drafts: k tokens per forward

    def ours(self, k: int, batch: int | str, compiled: bool) -> None:
        slots = self.auto_slots(k) if batch == "auto" else batch
        model = self.model if k == 1 else OracleDrafts(self.model, self.reference)
        gen = Generator(model, self.tok, self.device, compile=compiled)
        request = [Request(self.prompt, slots, tuple(range(slots)))]
        settings = self.settings(k)
        if compiled:  # the first pass compiles (and captures CUDA graphs for each kv_len bucket)
            t0 = time.monotonic()
            list(gen.generate(request, settings, slots))
            warm = time.monotonic() - t0
        else:  # a short pass: cuBLAS and allocator warm-up
            list(gen.generate([Request(self.prompt, slots, tuple(range(slots)))],
                              SamplingSettings(max_new_tokens=8, speculative=settings.speculative), slots))
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        sync(self.device)
        t0 = time.perf_counter()
        [(_, completions)] = gen.generate(request, settings, slots)
        sync(self.device)
        seconds = time.perf_counter() - t0
        tokens = sum(c.tokens for c in completions)
        forwards = max(c.stats["forwards"] for c in completions)
        texts = {c.raw_text for c in completions}
        if k == 1 and batch == 1:
            self.reference = self.tok.encode(self.prompt) + self.tok.encode(completions[0].raw_text)
        plain = self.reference[self.prompt_len:] if self.reference else None
        agree = sum(self.tok.encode(c.raw_text) == plain for c in completions) if plain else None
        label = ("plain" if k == 1 else f"speculative k={k}") + (", compiled" if compiled else "")
        if compiled and gen._compiled is None:
            label += " (compile failed: eager)"
        self.rows.append({"what": label, "batch": f"{slots}" + (" (auto)" if batch == "auto" else ""),
                          "tokens_s": tokens / seconds, "ms_forward": seconds / forwards * 1e3,
                          "tokens_forward": tokens / slots / forwards, "bound": self.bound(k, slots),
                          "peak": peak_gib(self.device), "agree": f"{agree}/{slots}" if agree is not None else "",
                          "k": k, "slots": slots, "compiled": compiled,
                          "note": f"compile + first pass {warm:.0f} s" if compiled else f"{len(texts)} distinct"})

    def transformers(self, batch: int) -> None:
        hf = build_hf(self.model, self.device, self.dtype)
        ids = torch.tensor([self.tok.encode(self.prompt)] * batch, device=self.device)
        kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=self.new_tokens,
                      min_new_tokens=self.new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0)
        hf.generate(ids, **{**kwargs, "max_new_tokens": 8, "min_new_tokens": 8})  # warm-up
        sync(self.device)
        t0 = time.perf_counter()
        out = hf.generate(ids, **kwargs)
        sync(self.device)
        seconds = time.perf_counter() - t0
        plain = self.reference[self.prompt_len:] if self.reference else None
        agree = sum(row[self.prompt_len:].tolist() == plain for row in out) if plain else None
        self.rows.append({"what": "transformers generate", "batch": str(batch), "tokens_s": batch * self.new_tokens / seconds,
                          "ms_forward": seconds / self.new_tokens * 1e3, "tokens_forward": 1.0,
                          "bound": self.bound(1, batch), "peak": None, "agree": f"{agree}/{batch}" if plain else "",
                          "k": 1, "slots": batch, "compiled": False, "note": "HF"})
        del hf

    def attempt(self, what: str, fn, *args, need_s: float = 20) -> None:
        """Run one measurement; a failure or a spent time budget becomes a row, not the end of the run.
        A measurement still running OVERRUN_S after the budget (a compile that takes too long) is
        stopped (SIGALRM), so the table is printed within the call's time limit."""
        if self.left_s() < need_s:
            self.rows.append({"what": what, "note": "skipped: time budget spent"})
            return
        print(f"[{time.monotonic() - self.t0:6.0f} s] {what}", file=sys.stderr, flush=True)
        previous = signal.signal(signal.SIGALRM, _overrun)
        signal.setitimer(signal.ITIMER_REAL, max(1.0, self.left_s() + OVERRUN_S))
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - report it and go on with the next configuration
            traceback.print_exc()
            self.rows.append({"what": what, "note": f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:80]}"})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            self.release()

    def run(self, batches: list) -> None:
        for batch in batches:
            for k in (1, 4):
                self.attempt(f"{'plain' if k == 1 else 'speculative'} batch {batch}", self.ours, k, batch, False)
        for batch in batches[:2]:
            self.attempt(f"transformers generate batch {batch}", self.transformers, batch)
        if not self.compile:
            self.rows.append({"what": "compiled", "note": "skipped (--smoke: inductor on CPU takes minutes)"
                              if self.smoke else "skipped (--no-compile)"})
            return
        for batch in (batches[1], batches[0]):
            for k in (1, 4):
                self.attempt(f"{'plain' if k == 1 else 'speculative'} batch {batch}, compiled", self.ours, k, batch,
                             True, need_s=150)

    def report(self) -> None:
        print(f"\n{self.device_name}, {self.dtype}; model dim {self.shape.dim}, {self.shape.n_layers} blocks "
              f"(4 heads), vocab {self.shape.vocab}, {sum(p.numel() for p in self.model.parameters()) / 1e6:,.1f}M "
              f"parameters; prompt {self.prompt_len} tokens, {self.new_tokens} new tokens, greedy, no EOS; "
              f"bandwidth bound at {self.bandwidth / 1e12:.2f} TB/s")
        header = (f"{'decoding':36s} {'batch':>10s} {'tokens/s':>9s} {'ms/fwd':>7s} {'tok/fwd':>7s} "
                  f"{'bound':>9s} {'of bound':>8s} {'peak GiB':>8s} {'=plain':>7s}  note")
        print(header + "\n" + "-" * len(header))
        for r in self.rows:
            if "tokens_s" not in r:
                print(f"{r['what']:36s} {'':>10s} {'':>9s} {'':>7s} {'':>7s} {'':>9s} {'':>8s} {'':>8s} {'':>7s}  {r['note']}")
                continue
            peak = f"{r['peak']:.1f}" if r["peak"] is not None else "-"
            print(f"{r['what']:36s} {r['batch']:>10s} {r['tokens_s']:9.0f} {r['ms_forward']:7.1f} "
                  f"{r['tokens_forward']:7.2f} {r['bound']:9.0f} {r['tokens_s'] / r['bound']:7.0%} {peak:>8s} "
                  f"{r['agree']:>7s}  {r['note']}")
        measured = [r for r in self.rows if "tokens_s" in r]

        def rate(what_k, slots, compiled=False, hf=False):
            for r in measured:
                if r["k"] == what_k and r["slots"] == slots and r["compiled"] == compiled and (r["note"] == "HF") == hf:
                    return r["tokens_s"]
            return None

        lines = []
        for r in measured:
            if r["note"] == "HF":
                ours = rate(1, r["slots"])
                if ours:
                    lines.append(f"plain (eager) / transformers generate at batch {r['slots']}: {ours / r['tokens_s']:.2f}x")
            elif r["k"] == 4:
                plain = rate(1, r["slots"], r["compiled"])
                if plain:
                    lines.append(f"speculative / plain at batch {r['slots']}{', compiled' if r['compiled'] else ''}: "
                                 f"{r['tokens_s'] / plain:.2f}x (oracle drafts)")
            elif r["compiled"]:
                eager = rate(1, r["slots"])
                if eager:
                    lines.append(f"compiled / eager, plain at batch {r['slots']}: {r['tokens_s'] / eager:.2f}x")
        print("\n".join(lines))
        plain = [r for r in measured if r["k"] == 1 and r["note"] != "HF"]
        if plain:
            best = max(plain, key=lambda r: r["tokens_s"])
            per_sample = 150  # assumed mean tokens per HumanEval sample at T=0.1/0.8 with the task's stops
            minutes = HUMANEVAL_PAPER_SAMPLES * per_sample / best["tokens_s"] / 60
            print(f"HumanEval paper protocol ({HUMANEVAL_PAPER_SAMPLES} samples, assuming {per_sample} tokens each) "
                  f"at the best plain rate ({best['what']}, batch {best['batch']}): about {minutes:.0f} minutes of "
                  f"generation")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny model on CPU (fp32): checks the script, measures nothing")
    ap.add_argument("--new-tokens", type=int, default=None, help="tokens per sample (default 256; smoke 16)")
    ap.add_argument("--prompt-len", type=int, default=None, help="prompt tokens (default 160; smoke 12)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled configurations")
    ap.add_argument("--budget-s", type=float, default=400,
                    help=f"stop starting new measurements after this long (one running {OVERRUN_S} s past it is stopped)")
    ap.add_argument("--bandwidth-gbs", type=float, help="memory bandwidth for the bound (default: by card name)")
    args = ap.parse_args(argv)
    args.new_tokens = args.new_tokens or (16 if args.smoke else 256)
    args.prompt_len = args.prompt_len or (12 if args.smoke else 160)
    if not args.smoke and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --smoke to check the script on CPU)", file=sys.stderr)
        return 2
    check = Check(args)
    check.run([1, 4 if args.smoke else 64, "auto"])
    check.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Decoding speed: our plain decoding vs transformers' `generate` on the same weights, and
self-speculative vs plain greedy, all measured in the same run.

The model is a tiny random MTP checkpoint (Meta format, SentencePiece tokenizer) and its HF Llama
conversion (trunk + head 1): identical next-token weights. EOS is disabled on both sides so every
sample runs exactly the token budget. A random model's extra heads rarely guess right, so
self-speculative decoding here shows its overhead and bookkeeping, not the paper's speedup;
tokens/forward is reported as measured.

    python benchmarks/bench_decode.py [--dim 256] [--layers 12] [--new-tokens 128] [--samples 200]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.decoding.hf import load_hf_generator
from evalharness.models import convert_to_hf, load_mtp_checkpoint, make_tiny_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from oracle import OracleDrafts  # noqa: E402

PROMPT = 'def fizzbuzz(n: int) -> list[str]:\n    """Return the FizzBuzz sequence from 1 to n."""\n'


class NoEOS:
    """The tokenizer with EOS disabled, so samples always use the whole budget."""

    def __init__(self, tok):
        self.tok, self.bos_id, self.eos_id = tok, tok.bos_id, None

    def __getattr__(self, name):
        return getattr(self.tok, name)


def race(fns: dict, repeat: int) -> tuple[dict, dict]:
    """Best wall time of each function, run interleaved so a busy machine slows all of them alike."""
    best, results = dict.fromkeys(fns, float("inf")), {}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best, results


def ours(generator: Generator, settings: SamplingSettings, n: int, batch_size: int):
    request = Request(PROMPT, n, tuple(range(n)))
    return [c for _, cs in generator.generate([request], settings, batch_size) for c in cs]


def hf_generate(model, ids: list[int], settings: SamplingSettings, n: int):
    kwargs = dict(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0) \
        if settings.temperature > 0 else dict(do_sample=False)
    return model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                          max_new_tokens=settings.max_new_tokens, min_new_tokens=settings.max_new_tokens,
                          num_return_sequences=n, eos_token_id=None, pad_token_id=0, **kwargs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=12, help="all blocks: trunk, head 1 and 3 extra heads")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        mtp_dir = make_tiny_checkpoint(Path(tmp) / "mtp", n_future=4, dim=args.dim, n_layers=args.layers,
                                       tokenizer="sentencepiece", seed=0)
        convert_to_hf(mtp_dir, Path(tmp) / "hf", tokenizer_path=mtp_dir / "tokenizer.model")
        model, tok, _ = load_mtp_checkpoint(mtp_dir, device="cpu", dtype=torch.float32,
                                            tokenizer_path=mtp_dir / "tokenizer.model")
        hf, _ = load_hf_generator(Path(tmp) / "hf", "cpu", torch.float32, tokenizer=mtp_dir / "tokenizer.model")
    ours_gen = Generator(model, NoEOS(tok), "cpu")
    hf_gen = Generator(hf.model, NoEOS(tok), "cpu")
    hf_model = hf.model.model
    ids = tok.encode(PROMPT)
    T = args.new_tokens
    params = sum(p.numel() for p in model.parameters())
    print(f"model: dim {args.dim}, {args.layers} blocks (4 heads), {params / 1e6:.1f}M parameters, vocab "
          f"{model.args.vocab_size}; prompt {len(ids)} tokens, {T} new tokens; torch threads "
          f"{torch.get_num_threads()}, transformers {__import__('transformers').__version__}")

    print("\nplain decoding vs transformers generate (tokens/s; ratio = ours / generate):")
    cases = [("greedy, batch 1", SamplingSettings(max_new_tokens=T), 1, 1),
             (f"{args.samples} samples of one prompt, T=0.8 top-p 0.95",
              SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=T), args.samples, args.samples)]
    for name, settings, n, batch in cases:
        ours(ours_gen, settings, n, batch)  # warm-up
        times, results = race({"ours": lambda: ours(ours_gen, settings, n, batch),
                               "generate": lambda: hf_generate(hf_model, ids, settings, n),
                               "adapter": lambda: ours(hf_gen, settings, n, batch)}, args.repeat)
        tokens = sum(c.tokens for c in results["ours"])
        assert tokens == n * T and results["generate"].shape == (n, len(ids) + T)
        rate = {k: tokens / t for k, t in times.items()}
        print(f"  {name:42s} ours {rate['ours']:7.0f}  generate {rate['generate']:7.0f}  "
              f"ratio {rate['ours'] / rate['generate']:5.2f}x   (our loop over the HF model "
              f"{rate['adapter']:7.0f}, {rate['adapter'] / rate['generate']:4.2f}x)")

    print("\nself-speculative vs plain greedy (wall = plain time / speculative time; output identical):")
    reference = list(ids)
    with torch.no_grad():
        for _ in range(T + 8):  # the true greedy continuation, recomputed without a cache
            reference.append(int(model(torch.tensor([reference]), n_heads=1)[0, -1, 0].argmax()))
    oracle_gen = Generator(OracleDrafts(model, reference), NoEOS(tok), "cpu")
    for drafts, gen in (("random heads", ours_gen), ("oracle drafts", oracle_gen)):
        for batch in (1, 16):
            fns = {k: (lambda k=k: ours(gen, SamplingSettings(max_new_tokens=T, speculative=k), batch, batch))
                   for k in (0, 2, 3, 4)}
            fns[0]()
            times, results = race(fns, args.repeat)
            for k in (2, 3, 4):
                got = results[k]
                assert [c.raw_text for c in got] == [c.raw_text for c in results[0]]
                forwards = sum(c.stats["forwards"] for c in got)
                acc = [sum(c.stats["accepted_per_head"][j] for c in got) /
                       max(1, sum(c.stats["drafted_per_head"][j] for c in got)) for j in range(1, k)]
                print(f"  {drafts:13s} batch {batch:3d} k={k}: tokens/forward {batch * T / forwards:5.2f}  "
                      f"wall {times[0] / times[k]:5.2f}x  acceptance per draft head {', '.join(f'{a:.2f}' for a in acc)}")

if __name__ == "__main__":
    main()

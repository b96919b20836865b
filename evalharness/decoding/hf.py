"""Any transformers AutoModelForCausalLM behind the same Generator (plain decoding only).

HFCausalLM presents the model through the MTPTransformer cache protocol, so slots, prefill
sharing, seeds and stop handling are the Generator's own, and a sample from this backend is
decoded exactly as one from our transformer. HF's cache only appends, so the adapter keeps the
keys and values of every cache row itself, with the position each column holds (-1: dead), and
hands transformers a DynamicCache of the rows a forward runs on. A write at position p kills the
row's columns holding positions >= p (a refilled row's previous sample, a shorter prompt's right
padding), the attention mask hides dead columns, and position_ids carry the positions. When the
columns reach twice the row length, each row's live columns move to the front (at most one per
position, so they fit).
"""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import torch
from torch import nn

from ..backends import ModelRecord, device_name
from ..errors import UsageError
from .generator import Generator


class HFCausalLM(nn.Module):
    """The cache protocol over a transformers causal LM: logits come back as (B, T, 1, V)."""

    n_future_tokens = 1

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []  # per layer (rows, heads, columns, head_dim)
        self.col_pos: torch.Tensor | None = None  # (rows, columns): the position each column holds, -1 = dead
        self.seq_len = 0

    def setup_cache(self, rows: int, max_seq_len: int, n_heads: int | None = None) -> None:
        self.kv, self.seq_len = [], max_seq_len
        self.col_pos = torch.full((rows, 0), -1, dtype=torch.long, device=self.model.device)

    def cache_bytes(self, rows: int, max_seq_len: int, n_heads: int | None = None) -> int:
        c = self.model.config
        heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        # the columns grow to twice the row length before they are compacted
        return 2 * 2 * c.num_hidden_layers * rows * heads * max_seq_len * head_dim * self.model.dtype.itemsize

    def copy_cache(self, src: torch.Tensor, dst: torch.Tensor, length: int) -> None:
        for k, v in self.kv:
            k[dst], v[dst] = k[src], v[src]
        pos = self.col_pos[src]
        self.col_pos[dst] = pos.masked_fill(pos >= length, -1)

    def forward(self, tokens: torch.Tensor, start_pos: torch.Tensor | None = None,
                n_heads: int | None = None, logits_at: torch.Tensor | None = None,
                kv_len: int | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """kv_len is accepted for the protocol and ignored: the mask already hides every dead column."""
        from transformers import DynamicCache

        if n_heads not in (None, 1):
            raise ValueError("a transformers causal LM has one head")
        if start_pos is None:
            return _select(self.model(input_ids=tokens, use_cache=False).logits[:, :, None], logits_at)
        B, T = tokens.shape
        rows = slice(0, B) if rows is None else rows  # the decoding rows: read as views, not gathered copies
        positions = start_pos[:, None] + torch.arange(T, device=tokens.device)
        pos = self.col_pos[rows]
        mask = torch.cat([(pos >= 0) & (pos < start_pos[:, None]), torch.ones_like(positions, dtype=torch.bool)], 1)
        cache = DynamicCache()
        for layer, (k, v) in enumerate(self.kv):
            cache.update(k[rows], v[rows], layer)
        out = self.model(input_ids=tokens, attention_mask=mask.long(), position_ids=positions,
                         past_key_values=cache, use_cache=True)
        self._store(rows, out.past_key_values, positions, start_pos)
        return _select(out.logits[:, :, None], logits_at)

    def _store(self, rows: torch.Tensor | slice, cache, positions: torch.Tensor, start_pos: torch.Tensor) -> None:
        """Keep the forward's keys and values: T new columns for every row (dead outside `rows`)."""
        T = positions.shape[1]
        pos = torch.cat([self.col_pos, self.col_pos.new_full((len(self.col_pos), T), -1)], 1)
        old = pos[rows, :-T]
        pos[rows] = torch.cat([old.masked_fill(old >= start_pos[:, None], -1), positions], 1)
        kv = []
        for layer, (new_k, new_v) in enumerate(_layers(cache)):
            if layer < len(self.kv):
                k, v = self.kv[layer]
                k = torch.cat([k, k.new_zeros(*k.shape[:2], T, k.shape[3])], 2)
                v = torch.cat([v, v.new_zeros(*v.shape[:2], T, v.shape[3])], 2)
            else:  # the first forward: this layer's storage, all columns dead outside `rows`
                k = new_k.new_zeros(len(pos), *new_k.shape[1:])
                v = new_v.new_zeros(len(pos), *new_v.shape[1:])
            k[rows], v[rows] = new_k, new_v
            kv.append((k, v))
        self.kv, self.col_pos = kv, pos
        if pos.shape[1] >= 2 * self.seq_len:
            self._compact()

    def _compact(self) -> None:
        """Each row's live columns to the front, keeping seq_len columns (no row has more live ones)."""
        order = torch.sort((self.col_pos < 0).long(), dim=1, stable=True).indices[:, : self.seq_len]
        self.col_pos = self.col_pos.gather(1, order)
        index = order[:, None, :, None]
        self.kv = [(k.gather(2, index.expand(-1, k.shape[1], -1, k.shape[3])),
                    v.gather(2, index.expand(-1, v.shape[1], -1, v.shape[3]))) for k, v in self.kv]


def _layers(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a transformers DynamicCache, across its 4.x and 5.x layouts."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


def _select(logits: torch.Tensor, logits_at: torch.Tensor | None) -> torch.Tensor:
    if logits_at is None:
        return logits
    B = logits.shape[0]
    return logits[torch.arange(B, device=logits.device)[:, None], logits_at.view(B, -1)]


def load_hf_generator(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                      tokenizer: str | Path | None = None, quiet: bool = False,
                      **generator_options) -> tuple[Generator, ModelRecord]:
    """(Generator, ModelRecord) for a transformers causal-LM directory; its own tokenizer unless one is named.
    `quiet`: no loading progress bars."""
    import transformers
    from transformers import AutoModelForCausalLM

    from ..models import load_tokenizer
    from ..models.checkpoint import first_line

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UsageError(f"{path}: not a transformers model directory (no config.json)")
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    held: list = []  # transformers' log records of the load, shown only if it succeeds
    try:
        with _loading(quiet, held):
            model = AutoModelForCausalLM.from_pretrained(str(path), **{dtype_key: dtype or "auto"})
    except Exception as e:  # noqa: BLE001 - a truncated or mis-shaped file: SafetensorError, RuntimeError, ...
        reason = first_line(e).replace(" For details look at the above report!", "")
        bad_key = next((" ".join(line.split()) for r in held for line in r.getMessage().splitlines()
                        if any(word in line for word in ("MISMATCH", "MISSING", "UNEXPECTED"))), None)
        raise UsageError(f"cannot load a transformers causal LM from {path}: {reason}"
                         + (f" ({bad_key})" if bad_key else "")) from None
    model = model.to(device).eval()
    tok = load_tokenizer(tokenizer or path)
    record = ModelRecord(
        kind="hf", spec=str(path), fingerprint=files_fingerprint([path] + ([Path(tokenizer)] if tokenizer else [])),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."), device_name=device_name(device),
        details={"path": str(path), "model_type": model.config.model_type,
                 "parameters": sum(p.numel() for p in model.parameters()), "transformers": transformers.__version__})
    return Generator(HFCausalLM(model), tok, device, **generator_options), record


@contextlib.contextmanager
def _loading(quiet: bool, held: list):
    """Around from_pretrained: no progress bars when `quiet`, and transformers' log records held
    back in `held` until the load succeeds, so a failed load is one line, not a load report and then it."""
    import logging

    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled() and quiet
    if bars:
        hf_logging.disable_progress_bar()
    library = hf_logging.get_logger()  # the "transformers" logger, which carries the library's handler
    hold = logging.Handler()
    hold.emit = held.append
    saved = library.handlers[:], library.propagate
    library.handlers, library.propagate = [hold], False
    loaded = False
    try:
        yield
        loaded = True
    finally:
        library.handlers, library.propagate = saved
        if bars:
            hf_logging.enable_progress_bar()
        for record in held if loaded else ():
            library.handle(record)


_WHOLE_FILE_BYTES = 64 << 20
_BLOCK, _BLOCKS = 64 << 10, 64


def files_fingerprint(paths: list[Path]) -> str:
    """A hash of a model directory's files (config, weights, tokenizer; not hidden files or *.md) by name,
    size and content: whole files up to 64 MiB; beyond that the first MiB (a safetensors header) and 64
    evenly spaced 64 KiB blocks, so a multi-GB checkpoint takes milliseconds. A file given instead of a
    directory (a separate tokenizer) counts the same way; a name that is no file ("bytes") by its name."""
    h = hashlib.sha256()
    for root in paths:
        if not root.exists():
            h.update(f"{root}\0".encode())
            continue
        files = sorted(f for f in root.iterdir() if f.is_file()) if root.is_dir() else [root]
        for f in files:
            if f.name.startswith(".") or f.suffix.lower() == ".md":
                continue
            size = f.stat().st_size
            h.update(f"{f.name}\0{size}\0".encode())
            with open(f, "rb") as stream:
                if size <= _WHOLE_FILE_BYTES:
                    h.update(stream.read())
                    continue
                h.update(stream.read(1 << 20))
                for i in range(_BLOCKS):
                    stream.seek((size - _BLOCK) * i // (_BLOCKS - 1))
                    h.update(stream.read(_BLOCK))
    return h.hexdigest()[:16]

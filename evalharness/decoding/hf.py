"""Any transformers AutoModelForCausalLM behind the same Generator (plain decoding only).

HFCausalLM presents the model through the MTPTransformer cache protocol, so batching, prefill
sharing, seeds and stop handling are the Generator's own, and a sample from this backend is
decoded exactly as one from our transformer. The HF cache only appends; the protocol's
position semantics are kept by remembering each slot's position and masking slots that a later
write superseded (the right padding of shorter prompts) or that lie beyond a query.
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
        self.cache = None
        self.slot_pos: torch.Tensor | None = None  # (B, S) position held by each cache slot, -1 = dead
        self.masked: bool | None = None  # whether any live row has dead slots (None: not known yet)

    def setup_cache(self, max_batch_size: int, max_seq_len: int) -> None:
        from transformers import DynamicCache

        self.cache, self.slot_pos, self.masked = DynamicCache(), None, None

    def reorder_cache(self, index: torch.LongTensor) -> None:
        self.cache.reorder_cache(index)
        self.slot_pos = self.slot_pos[index]

    def forward(self, tokens: torch.Tensor, start_pos: torch.Tensor | None = None,
                n_heads: int | None = None, logits_at: torch.Tensor | None = None,
                kv_len: int | None = None) -> torch.Tensor:
        """kv_len is accepted for the protocol and ignored: HF's cache holds only live slots."""
        if n_heads not in (None, 1):
            raise ValueError("a transformers causal LM has one head")
        if start_pos is None:
            return self._select(self.model(input_ids=tokens, use_cache=False).logits[:, :, None], logits_at)
        positions = start_pos[:, None] + torch.arange(tokens.shape[1], device=tokens.device)
        if self.slot_pos is None:
            self.slot_pos = positions
        else:  # slots at or past the first new position are superseded
            if self.masked is None:  # first step after the prefill: were some prompts right-padded? (one sync)
                self.masked = bool((start_pos < self.slot_pos.shape[1]).any())
            old = self.slot_pos.masked_fill(self.slot_pos >= start_pos[:, None], -1)
            self.slot_pos = torch.cat([old, positions], 1)
        # Without padding every live slot is valid: no mask lets attention take its unmasked path
        # (~20% faster on CPU). Rows the Generator has frozen re-feed one position, leaving dead
        # duplicates, but a frozen row's output is ignored.
        mask = (self.slot_pos >= 0).long() if self.masked else None
        out = self.model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                         past_key_values=self.cache, use_cache=True)
        self.cache = out.past_key_values
        return self._select(out.logits[:, :, None], logits_at)

    @staticmethod
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

"""Tokenizers behind one small protocol: SentencePiece (Llama-2), any Hugging Face tokenizer, raw bytes.

`decode_completion` is the one to use for generated code: decoding the new
tokens on their own loses text at the seam (SentencePiece drops the leading
space of a sequence's first piece, so "    return x" would come back as
"   return x"). Decoding prompt + completion and cutting off the decoded
prompt gives exactly the text the completion added.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Protocol, Sequence, runtime_checkable

from ..errors import UsageError

BYTE_TOKENIZER_FILE = "byte_tokenizer.json"  # our marker for byte-level checkpoints (no Meta file exists)


@runtime_checkable
class Tokenizer(Protocol):
    bos_id: int
    eos_id: int
    vocab_size: int

    def encode(self, text: str, bos: bool = True) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def decode_completion(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> str: ...


def _decode_completion(tok: Tokenizer, prompt_ids: Sequence[int], completion_ids: Sequence[int],
                       context: int = 16) -> str:
    """Text added by completion_ids after prompt_ids (the shared implementation of all tokenizers).

    Only the last `context` prompt tokens are decoded with it: enough to fix the seam, and the
    cost stays independent of the prompt's length when a decoder checks for stops as it goes.
    """
    prompt_ids, completion_ids = list(prompt_ids)[-context:], list(completion_ids)
    prefix = tok.decode(prompt_ids)
    full = tok.decode(prompt_ids + completion_ids)
    if full.startswith(prefix):
        return full[len(prefix):]
    # The seam changed the prompt's own text (an incomplete UTF-8 sequence at its end, say):
    # keep the longest common prefix and return the rest.
    common = 0
    for a, b in zip(prefix, full):
        if a != b:
            break
        common += 1
    return full[common:]


class SentencePieceTokenizer:
    """Llama-2 `tokenizer.model`."""

    def __init__(self, model_file: str | Path):
        import sentencepiece

        self.path = Path(model_file)
        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        except (OSError, RuntimeError) as e:
            raise UsageError(f"cannot read SentencePiece model {model_file}: {str(e).splitlines()[0]}") from None
        self.bos_id, self.eos_id, self.vocab_size = self.sp.bos_id(), self.sp.eos_id(), self.sp.vocab_size()

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return ([self.bos_id] if bos else []) + self.sp.encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.sp.decode([int(i) for i in ids if 0 <= i < self.vocab_size])

    def decode_completion(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> str:
        return _decode_completion(self, prompt_ids, completion_ids)


class HFTokenizer:
    """Any tokenizer `transformers.AutoTokenizer` can load from a directory."""

    def __init__(self, path: str | Path):
        from transformers import AutoTokenizer

        self.path = Path(path)
        try:
            self.tok = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot load a tokenizer from {path}: {str(e).splitlines()[0]}") from None
        self.bos_id = self.tok.bos_token_id if self.tok.bos_token_id is not None else -1
        self.eos_id = self.tok.eos_token_id if self.tok.eos_token_id is not None else -1
        self.vocab_size = len(self.tok)

    def encode(self, text: str, bos: bool = True) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False)
        return ([self.bos_id] if bos and self.bos_id >= 0 else []) + ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True,
                               clean_up_tokenization_spaces=False)

    def decode_completion(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> str:
        return _decode_completion(self, prompt_ids, completion_ids)


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, then BOS and EOS (the paper's byte-level models)."""

    def __init__(self, bos_id: int = 256, eos_id: int = 257, vocab_size: int = 258):
        self.bos_id, self.eos_id, self.vocab_size = bos_id, eos_id, vocab_size

    @classmethod
    def from_file(cls, path: str | Path) -> "ByteTokenizer":
        try:
            spec = json.loads(Path(path).read_text())
            return cls(int(spec["bos_id"]), int(spec["eos_id"]), int(spec["vocab_size"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"bad byte tokenizer file {path}: {e}") from None

    def save(self, path: str | Path) -> None:
        spec = {"type": "bytes", "bos_id": self.bos_id, "eos_id": self.eos_id, "vocab_size": self.vocab_size}
        Path(path).write_text(json.dumps(spec, indent=2) + "\n")

    def encode(self, text: str, bos: bool = True) -> list[int]:
        return ([self.bos_id] if bos else []) + list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")

    def decode_completion(self, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> str:
        return _decode_completion(self, prompt_ids, completion_ids)


HF_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def find_tokenizer(directory: str | Path, search_parent: bool = True) -> Path | None:
    """The tokenizer file/dir for a checkpoint directory: tokenizer.model, our byte marker, or HF files;
    Meta ships tokenizer.model beside the model directories, so the parent is searched too."""
    directory = Path(directory)
    for d in (directory, directory.parent) if search_parent else (directory,):
        for name in ("tokenizer.model", BYTE_TOKENIZER_FILE):
            if (d / name).is_file():
                return d / name
        if any((d / name).is_file() for name in HF_TOKENIZER_FILES):
            return d
    return None


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Load by what the path is: "bytes", a SentencePiece .model, a byte marker .json, or a directory
    (HF tokenizer files, else tokenizer.model, else the byte marker)."""
    if str(path) == "bytes":
        return ByteTokenizer()
    path = Path(path)
    if path.is_dir():  # an HF model directory: its own tokenizer files win (they carry added tokens)
        if any((path / name).is_file() for name in HF_TOKENIZER_FILES):
            return HFTokenizer(path)
        found = find_tokenizer(path, search_parent=False)
        if found is None:
            raise UsageError(f"no tokenizer (tokenizer.model, {BYTE_TOKENIZER_FILE}, tokenizer.json) in {path}")
        return load_tokenizer(found)
    if not path.is_file():
        raise UsageError(f"tokenizer not found: {path}")
    if path.name == BYTE_TOKENIZER_FILE or path.suffix == ".json":
        return ByteTokenizer.from_file(path)
    return SentencePieceTokenizer(path)


def train_sentencepiece(texts: Iterable[str], model_prefix: str | Path, vocab_size: int = 512) -> Path:
    """Train a small Llama-2-style SentencePiece model (BPE, byte fallback, BOS=1 EOS=2, whitespace kept
    as is, dummy prefix on) for tiny test checkpoints. Deterministic for the same texts."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(list(texts)), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, add_dummy_prefix=True,
        remove_extra_whitespaces=False, normalization_rule_name="identity", split_digits=True,
        allow_whitespace_only_pieces=True, max_sentence_length=1 << 16, num_threads=1,
        character_coverage=1.0, minloglevel=2,
    )
    path = Path(f"{model_prefix}.model")
    path.write_bytes(model.getvalue())
    return path

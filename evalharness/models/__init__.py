"""Checkpoint loaders, the MTP transformer and tokenizers."""
from .checkpoint import CheckpointInfo, convert_to_hf, load_mtp_checkpoint, make_tiny_checkpoint
from .resolve import ModelSpec, resolve_model
from .tokenizers import ByteTokenizer, HFTokenizer, SentencePieceTokenizer, Tokenizer, load_tokenizer
from .transformer import ModelArgs, MTPTransformer

__all__ = [
    "ByteTokenizer", "CheckpointInfo", "HFTokenizer", "ModelArgs", "ModelSpec", "MTPTransformer",
    "SentencePieceTokenizer", "Tokenizer", "convert_to_hf", "load_mtp_checkpoint", "load_tokenizer",
    "make_tiny_checkpoint", "resolve_model",
]

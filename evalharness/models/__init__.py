"""Checkpoint loaders, the MTP transformer and tokenizers."""
from .transformer import ModelArgs, MTPTransformer

__all__ = ["ModelArgs", "MTPTransformer"]

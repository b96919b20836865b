"""Decoding: plain and self-speculative (MTP heads as drafters) generation over a KV-cached model."""
from .generator import Generator
from .records import Completion, Request, SamplingSettings

__all__ = ["Completion", "Generator", "Request", "SamplingSettings"]

"""The records between the pipeline and the decoder: what to generate, how, and what came out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import UsageError


@dataclass(frozen=True)
class SamplingSettings:
    """How to pick tokens. temperature 0 is greedy; speculative = number of MTP heads to draft with (0/1 = plain)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 512
    speculative: int = 0

    def __post_init__(self):
        if not self.temperature >= 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UsageError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise UsageError(f"top-k must be >= 0, got {self.top_k}")
        if self.max_new_tokens < 1:
            raise UsageError(f"max new tokens must be >= 1, got {self.max_new_tokens}")
        if self.speculative < 0:
            raise UsageError(f"speculative heads must be >= 0, got {self.speculative}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def heads(self) -> int:
        """Heads run in every forward: 1 for plain decoding, k for self-speculative decoding."""
        return max(1, self.speculative)


@dataclass(frozen=True)
class Request:
    """One prompt to complete n times; seeds holds one seed per sample (the caller derives them)."""

    prompt: str
    n: int
    seeds: tuple[int, ...]
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        if self.n != len(self.seeds):
            raise ValueError(f"Request wants n={self.n} samples but has {len(self.seeds)} seeds")


@dataclass
class Completion:
    """One generated sample.

    raw_text is all decoded new text; generation halts at the token that completes the first stop
    sequence, so raw_text ends inside or just after that stop. Cutting it there is the task's job
    (Task.clean, the one place that turns raw text into a completion); the decoder only decides
    where to halt. tokens counts generated tokens, including an EOS or the stop-completing token.
    stats: forwards (model forwards this sample took part in, its prompt's prefill included),
    tokens_per_forward, and per head (index 0 = head 1, whose token is always accepted)
    drafted_per_head / accepted_per_head.
    """

    raw_text: str
    tokens: int
    finish_reason: Literal["stop", "eos", "length"]
    stats: dict = field(default_factory=dict)

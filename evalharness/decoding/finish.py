"""Host-side end-of-sample detection: EOS, stop sequences (on decoded text), token budget.

The result is a pure function of the row's tokens, so it does not depend on how often the
decoder looks: the finishing token is the first one whose prefix text holds a stop sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Finish:
    tokens: int
    raw_text: str
    text: str
    reason: str  # "stop" | "eos" | "length"


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest stop sequence in text, or None."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


class RowWatch:
    """Watches one sample's growing token list; check() returns its Finish once it is done."""

    def __init__(self, tokenizer, prompt_ids: list[int], stops: Sequence[str], eos_id: int | None,
                 max_new_tokens: int):
        self.tokenizer, self.prompt_ids, self.stops = tokenizer, prompt_ids, tuple(s for s in stops if s)
        self.eos_id, self.max_new_tokens = eos_id, max_new_tokens
        self.clean = 0  # a prefix this long is known to hold no EOS and no stop

    def _text(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode_completion(self.prompt_ids, list(tokens))

    def check(self, tokens: Sequence[int]) -> Finish | None:
        limit = min(len(tokens), self.max_new_tokens)
        window = tokens[self.clean:limit]
        eos_at = self.clean + window.index(self.eos_id) if self.eos_id in window else None
        end = limit if eos_at is None else eos_at
        if self.stops and end > self.clean and first_stop(self._text(tokens[:end]), self.stops) is not None:
            lo, hi = self.clean + 1, end  # binary search for the first prefix holding a stop
            while lo < hi:
                mid = (lo + hi) // 2
                if first_stop(self._text(tokens[:mid]), self.stops) is None:
                    lo = mid + 1
                else:
                    hi = mid
            raw = self._text(tokens[:lo])
            return Finish(lo, raw, raw[: first_stop(raw, self.stops)], "stop")
        if eos_at is not None:
            raw = self._text(tokens[:eos_at])
            return Finish(eos_at + 1, raw, raw, "eos")
        if limit >= self.max_new_tokens:
            raw = self._text(tokens[:limit])
            return Finish(limit, raw, raw, "length")
        self.clean = end
        return None

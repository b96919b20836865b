"""Host-side end-of-sample detection: EOS, stop sequences (on decoded text), token budget.

The result is a pure function of the row's tokens, so it does not depend on how often the
decoder looks: the finishing token is the first one whose prefix text holds a stop sequence.
A stop is found by tasks.first_stop, the function Task.clean cuts the final text with, so the
decoder halts exactly where the completion is cut; cutting is the task's alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from evalharness.tasks import first_stop


@dataclass(frozen=True)
class Finish:
    tokens: int  # generated tokens up to and including the finishing one
    raw_text: str  # their text (an EOS has none)
    reason: str  # "stop" | "eos" | "length"


class RowWatch:
    """Watches one sample's growing token list; check() returns its Finish once it is done.

    Checks decode only a window: the tokens since the last clean point (plus a margin for a stop
    straddling it) behind a few tokens of context, so a check costs O(new tokens), not O(prompt +
    completion). The final texts are decoded once against the whole prompt.
    """

    CONTEXT = 16  # tokens before the window, enough for leading-space and byte-fallback seams

    def __init__(self, tokenizer, prompt_ids: list[int], stops: Sequence[str], eos_id: int | None,
                 max_new_tokens: int):
        self.tokenizer, self.prompt_ids, self.stops = tokenizer, list(prompt_ids), tuple(stops)
        self.eos_id, self.max_new_tokens = eos_id, max_new_tokens
        self.margin = 4 * max((len(s) for s in self.stops), default=0)  # >= the tokens a stop can span
        self.clean = 0  # a prefix this long is known to hold no EOS and no stop

    def _new_text(self, tokens: Sequence[int], start: int, end: int) -> str:
        """Text of tokens[start:end], decoded behind CONTEXT tokens of what precedes them."""
        before = (self.prompt_ids + list(tokens[:start]))[-self.CONTEXT:]
        return self.tokenizer.decode_completion(before, list(tokens[start:end]))

    def _has_stop(self, tokens: Sequence[int], end: int) -> bool:
        start = max(0, self.clean - self.margin)
        text = self._new_text(tokens, start, end)
        return first_stop(text, self.stops) is not None

    def _finish(self, tokens: Sequence[int], count: int, reason: str) -> Finish:
        text_tokens = tokens[: count - 1] if reason == "eos" else tokens[:count]  # EOS has no text
        return Finish(count, self.tokenizer.decode_completion(self.prompt_ids, list(text_tokens)), reason)

    def check(self, tokens: Sequence[int]) -> Finish | None:
        limit = min(len(tokens), self.max_new_tokens)
        window = list(tokens[self.clean:limit])
        eos_at = self.clean + window.index(self.eos_id) if self.eos_id in window else None
        end = limit if eos_at is None else eos_at
        if self.stops and end > self.clean and self._has_stop(tokens, end):
            lo, hi = self.clean + 1, end  # the first prefix holding a stop
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (mid + 1, hi) if not self._has_stop(tokens, mid) else (lo, mid)
            return self._finish(tokens, lo, "stop")
        if eos_at is not None:
            return self._finish(tokens, eos_at + 1, "eos")
        if limit >= self.max_new_tokens:
            return self._finish(tokens, limit, "length")
        self.clean = end
        return None

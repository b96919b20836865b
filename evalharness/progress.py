"""Progress for long stages: a bar on a terminal, a periodic line in CI logs, nothing when quiet."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str, quiet: bool = False, every_s: float = 15.0):
        self.total, self.desc, self.count = total, desc, 0
        self._bar = None
        self._quiet = quiet
        self._every_s = every_s
        self._start = self._last = time.monotonic()
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="it", file=sys.stderr, leave=False)

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)
        elif not self._quiet and time.monotonic() - self._last >= self._every_s:
            self._last = time.monotonic()
            rate = self.count / max(self._last - self._start, 1e-9)
            print(f"{self.desc}: {self.count}/{self.total} ({rate:.1f}/s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""A run is a directory of plain files; this module owns reading and appending them.

Rows are appended and flushed in batches, so a crash loses at most the batch
in flight; a truncated last line (the crash's signature) is ignored on read
and cut off before the next append. A manifest that does not match the
command is an error, never a silent mix of two runs. Rows are keyed by `row_key`
(task_id, sample_idx, temperature), defined once with the reports that dedupe by it.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable

from evalharness.reports import row_key
from evalharness.tasks.data import json_lines, read_bytes

from .errors import UsageError

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
RESULTS = "results.jsonl"
PROMPTS = "prompts.json"  # the drill-down's prompts: a report is re-rendered without loading the task

__all__ = ["MANIFEST", "RESULTS", "SAMPLES", "JsonlAppender", "RunDir", "read_jsonl", "row_key"]


def read_jsonl(path: str | os.PathLike, *, strict: bool = False) -> list[dict]:
    """Rows of a run's JSONL file. A torn last line is dropped; torn lines elsewhere are errors."""
    path = Path(path)
    if not path.exists():
        return []
    return [row for _, row in json_lines(read_bytes(path, UsageError), path, UsageError, torn_tail_ok=not strict)]


class JsonlAppender:
    """Appends rows to a JSONL file, flushing (and fsyncing) every `batch` rows or `interval_s`."""

    def __init__(self, path: str | os.PathLike, batch: int = 64, interval_s: float = 2.0):
        self.path = Path(path)
        _cut_torn_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        self._pending = 0
        self._batch = batch
        self._interval_s = interval_s
        self._last_flush = time.monotonic()

    def append(self, row: dict) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._pending += 1
        if self._pending >= self._batch or time.monotonic() - self._last_flush > self._interval_s:
            self.flush()

    def extend(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.append(row)

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._pending = 0
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cut_torn_tail(path: Path) -> None:
    """Drop a partial last line left by a crash so the next append starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)


class RunDir:
    """A run directory: manifest.json, samples.jsonl, results.jsonl, report.*."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def manifest(self) -> dict | None:
        p = self.path / MANIFEST
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{p} is not valid JSON; not touching this run directory") from None

    def open(self, manifest: dict, identity: dict) -> None:
        """Create the run, or check that an existing one was made by the same command.

        `identity` is the part of the manifest that decides the contents of
        samples/results (task fingerprint, settings); it must match exactly.
        """
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--out {self.path} exists and is not a directory")
        existing = self.manifest()
        if existing is None:
            if self.path.exists() and any(self.path.iterdir()):
                raise UsageError(f"--out {self.path} is a non-empty directory without {MANIFEST}; choose another")
            self.path.mkdir(parents=True, exist_ok=True)
            self.write_json(MANIFEST, {**manifest, "identity": identity})
            return
        theirs = existing.get("identity") or {}
        if "schema" in identity and theirs.get("schema") != identity["schema"]:
            made_by = existing.get("harness_version", "an older version")
            raise UsageError(f"{self.path} was made by evalharness {made_by}, whose runs this version does not "
                             "resume (its identity covers less); report, compare, gate and load_run still read "
                             "it; use another --out")
        if theirs != identity:
            raise UsageError(f"{self.path} holds a different run ({_first_difference(theirs, identity)}); "
                             "use another --out")

    def write_json(self, name: str, obj: dict) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path / name)

    def write_text(self, name: str, text: str) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.path / name)

    def samples(self) -> list[dict]:
        return read_jsonl(self.samples_path)

    def results(self) -> list[dict]:
        return read_jsonl(self.results_path)

    def prompts(self) -> dict[str, str]:
        """Each problem's prompt as the run recorded it ({} for runs made before 0.2)."""
        try:
            prompts = json.loads((self.path / PROMPTS).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return prompts if isinstance(prompts, dict) else {}


def _first_difference(theirs: dict, ours: dict) -> str:
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key) != ours.get(key):
            return f"{key}: {_short(theirs.get(key))} there, {_short(ours.get(key))} here"
    return "manifests differ"


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


"""A run is a directory of plain files; this module owns reading and appending them.

Rows are appended and flushed in batches, so a crash loses at most the batch
in flight; a truncated last line (the crash's signature) is ignored on read
and cut off before the next append. A manifest that does not match the
command is an error, never a silent mix of two runs. One process writes a run
at a time (an exclusive lock on RUN/.lock), and no write is ever partial: files
are replaced whole through a temp file, rows are appended. Rows are keyed by
`row_key` (task_id, sample_idx, temperature), defined once with the reports that dedupe by it.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from evalharness.reports import row_key
from evalharness.tasks.data import json_lines, parse_json, read_bytes

from .errors import UsageError
from .records import mixed_temperatures, result_row_problem, sample_row_problem

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
RESULTS = "results.jsonl"
LOCK = ".lock"
PROMPTS = "prompts.json"  # the drill-down's prompts: a report is re-rendered without loading the task
GENERATION = "generation.json"  # generate's speed, which `execute` of its samples reports
REPORTS = ("report.json", "report.md", "report.html")
ASIDE_SUFFIX = ".bad"  # `repair` moves unreadable rows of X.jsonl to X.jsonl.bad
RowCheck = Callable[[object], "str | None"]  # why a row is unusable, None when it is fine

__all__ = ["MANIFEST", "RESULTS", "SAMPLES", "JsonlAppender", "RunDir", "read_jsonl", "row_key"]


def read_jsonl(path: str | os.PathLike, *, strict: bool = False, check: RowCheck | None = None) -> list[dict]:
    """Rows of a run's JSONL file. A torn last line is dropped; a bad line elsewhere (torn, not JSON,
    or of the wrong shape by `check`) is an error naming it and the command that moves it aside."""
    path = Path(path)
    if not path.exists():
        return []
    hint = _repair_hint(path)
    rows = []
    for lineno, row in json_lines(read_bytes(path, UsageError), path, lambda line: UsageError(f"{line}; {hint}"),
                                  torn_tail_ok=not strict):
        problem = check(row) if check else None
        if problem:
            raise UsageError(f"{path}:{lineno}: {problem}; {hint}")
        rows.append(row)
    return rows


def _repair_hint(path: Path) -> str:
    return f"`evalharness repair {path.parent}` moves bad rows aside to {path.name}{ASIDE_SUFFIX} and keeps the rest"


class JsonlAppender:
    """Appends rows to a JSONL file, flushing (and fsyncing) every `batch` rows or `interval_s`.

    A failed write (disk full, read-only file system) is a one-line UsageError; what reached the
    disk is whole rows plus at most a torn last line, which the next reader ignores.
    """

    def __init__(self, path: str | os.PathLike, batch: int = 64, interval_s: float = 2.0):
        self.path = Path(path)
        try:
            _cut_torn_tail(self.path)
            self._file = open(self.path, "ab")
        except OSError as e:
            raise _write_error(self.path, e) from None
        self._pending = 0
        self._batch = batch
        self._interval_s = interval_s
        self._last_flush = time.monotonic()

    def append(self, row: dict) -> None:
        try:
            line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        except (UnicodeEncodeError, ValueError, RecursionError) as e:
            raise UsageError(f"cannot store a row of {row.get('task_id')!r} in {self.path}: {e}") from None
        try:
            self._file.write(line)
        except OSError as e:
            raise _write_error(self.path, e) from None
        self._pending += 1
        if self._pending >= self._batch or time.monotonic() - self._last_flush > self._interval_s:
            self.flush()

    def extend(self, rows: Iterable[dict]) -> None:
        for row in rows:
            self.append(row)

    def flush(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise _write_error(self.path, e) from None
        self._pending = 0
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self.flush()
        finally:
            try:
                self._file.close()
            except OSError:  # the same failed flush, already raised
                pass

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Repaired:
    """What `repair_jsonl` did to one file: rows kept, and the moved rows' line numbers and reasons."""

    path: Path
    kept: int
    moved: tuple[tuple[int, str], ...]

    @property
    def aside(self) -> Path:
        return self.path.with_name(self.path.name + ASIDE_SUFFIX)


def repair_jsonl(path: Path, check: RowCheck) -> Repaired:
    """Move the rows a reader would stop at (not JSON, torn, wrong shape by `check`) and repeated
    keys (the first row of a key is kept) to PATH.bad, appended verbatim: nothing is lost. The
    good rows are kept in order and the file is replaced whole. The caller holds the run's lock."""
    try:
        lines = path.read_bytes().split(b"\n") if path.exists() else []
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    kept, bad, moved, first_line = [], [], [], {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = parse_json(line)
            problem = check(row)
        except ValueError as e:
            problem = "torn last line (an interrupted write)" if lineno == len(lines) else f"invalid JSON ({e})"
        if problem is None:
            key = row_key(row)
            if key in first_line:
                problem = f"repeats the key of line {first_line[key]}"
            else:
                first_line[key] = lineno
        if problem is None:
            kept.append(line)
        else:
            bad.append(line)
            moved.append((lineno, problem))
    result = Repaired(path, len(kept), tuple(moved))
    if bad:
        try:
            with open(result.aside, "ab") as f:  # first: a crash from here on loses nothing
                f.write(b"".join(line + b"\n" for line in bad))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise _write_error(result.aside, e) from None
        write_file_atomic(path, b"".join(line + b"\n" for line in kept).decode("utf-8"))
    return result


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


def _write_error(path: Path, e: OSError) -> UsageError:
    return UsageError(f"cannot write {path}: {e.strerror or e}")


def _temp_name(name: str) -> str:
    return f".{name}.tmp"


# What the harness itself leaves in a run directory before its manifest exists: the lock, and the
# temp file of an interrupted whole-file write (a kill or a full disk at the manifest's write).
LEFTOVERS = frozenset({LOCK} | {_temp_name(n) for n in (MANIFEST, SAMPLES, RESULTS, PROMPTS, GENERATION, *REPORTS)})


def write_file_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` whole (temp file, fsync, rename): a crash leaves the old file or
    the new one, never half of one. Failures are one-line UsageErrors and leave no temp file, nor
    does a Ctrl-C (the reports are written last: an interrupt often lands here)."""
    tmp = path.with_name(_temp_name(path.name))
    try:
        with open(tmp, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, UnicodeEncodeError):
            raise UsageError(f"cannot write {path}: the text holds a lone surrogate (not Unicode)") from None
        if isinstance(e, OSError):
            raise _write_error(path, e) from None
        raise


def record_file_of_run(path: str | os.PathLike) -> Path | None:
    """The run whose own record file `path` is (manifest, samples, results, lock, bad rows, report.json:
    the only copy of the run's measured speed), else None. Such files are written only by the run's own
    commands; no --out may name one."""
    target = Path(path).resolve()
    run = target.parent
    if not (run / MANIFEST).is_file():
        return None
    records = {MANIFEST, SAMPLES, RESULTS, PROMPTS, GENERATION, LOCK, SAMPLES + ASIDE_SUFFIX,
               RESULTS + ASIDE_SUFFIX, REPORTS[0]} | LEFTOVERS
    name = target.name
    if name in records or (name.startswith("samples.rank") and name.endswith(".jsonl")):
        return run
    return None


def check_output_file(path: str | os.PathLike) -> None:
    """Refuse a user-named output file (--out FILE) that could not or must not be written: a run's
    record file, a directory, one in a missing or unwritable directory. Commands that decide
    something (the gate) call this first, so a bad --out is exit 2 before any verdict."""
    path = Path(path)
    run = record_file_of_run(path)
    if run is not None:
        raise UsageError(f"--out {path} is a record file of the run in {run}; choose another file")
    if path.is_dir():
        raise UsageError(f"--out {path} is a directory; name a file")
    if not path.parent.is_dir():
        raise UsageError(f"--out {path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"--out {path} is not writable")


def write_output_file(path: str | os.PathLike, text: str) -> None:
    """Write a user-named output file (--out FILE): whole or not at all, never over a run's records,
    every failure one line (see check_output_file; a read-only or full disk)."""
    path = Path(path)
    check_output_file(path)
    if path.exists() and not path.is_file():  # /dev/null, a fifo: write in place, not through a rename
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise _write_error(path, e) from None
        return
    write_file_atomic(path, text)


class RunDir:
    """A run directory: manifest.json, samples.jsonl, results.jsonl, report.*.

    Writers hold the run's lock: `open` (a new or resumed run) and `lock` (e.g. rewriting reports)
    take it, `close` or the end of the process releases it; `with run_dir:` closes.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock_file = None

    def lock(self) -> "RunDir":
        """Take the run's exclusive lock, at once or not at all: one writer per run directory."""
        if self._lock_file is not None:
            return self
        if not self.path.is_dir():
            raise UsageError(f"run directory not found: {self.path}")
        try:
            f = open(self.path / LOCK, "ab")
        except OSError as e:
            raise UsageError(f"cannot lock {self.path} (creating {LOCK}: {e.strerror or e})") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if isinstance(e, BlockingIOError):
                raise UsageError(f"{self.path} is in use by another evalharness process; wait for it to "
                                 "finish, or use another --out") from None
            raise UsageError(f"cannot lock {self.path} ({e.strerror or e})") from None
        self._lock_file = f
        return self

    def close(self) -> None:
        """Release the lock (closing the file releases the flock)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def samples_path(self) -> Path:
        return self.path / SAMPLES

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    def manifest(self) -> dict | None:
        p = self.path / MANIFEST
        try:
            text = p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise UsageError(f"cannot read {p}: {e.strerror or e}") from None
        try:
            manifest = parse_json(text)
        except ValueError as e:
            raise UsageError(f"{p} is not valid JSON ({e}); not touching this run directory") from None
        problem = manifest_problem(manifest)
        if problem:
            raise UsageError(f"{p}: {problem}; not touching this run directory")
        return manifest

    def existing_manifest(self) -> dict:
        """The manifest of a run that must exist already (report, export, repair, load_run); a missing
        directory or manifest is a one-line UsageError naming the path."""
        if not self.path.is_dir():
            raise UsageError(f"run directory not found: {self.path}")
        manifest = self.manifest()
        if manifest is None:
            raise UsageError(f"{self.path} is not a run directory (no {MANIFEST})")
        return manifest

    def open(self, manifest: dict, identity: dict) -> None:
        """Create the run, or check that an existing one was made by the same command, and hold
        the run's lock from here until `close` (or the end of the process).

        `identity` is the part of the manifest that decides the contents of
        samples/results (task fingerprint, settings); it must match exactly.
        """
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"--out {self.path} exists and is not a directory")
        self._refuse_foreign_directory()  # before the lock file lands in someone else's directory
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create run directory {self.path}: {e.strerror or e}") from None
        self.lock()
        existing = self.manifest()
        if existing is None:
            self._refuse_foreign_directory()
            for name in LEFTOVERS - {LOCK}:  # an interrupted manifest write: start the run afresh
                (self.path / name).unlink(missing_ok=True)
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

    def _refuse_foreign_directory(self) -> None:
        """A directory without a manifest is ours only if it holds nothing but our own leftovers."""
        if not self.path.is_dir() or (self.path / MANIFEST).exists():
            return
        foreign = sorted(p.name for p in self.path.iterdir() if p.name not in LEFTOVERS)
        if foreign:
            raise UsageError(f"--out {self.path} is a non-empty directory without {MANIFEST} "
                             f"(holds {foreign[0]}); choose another")

    def write_json(self, name: str, obj: dict) -> None:
        self.write_text(name, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")

    def write_text(self, name: str, text: str) -> None:
        write_file_atomic(self.path / name, text)

    def samples(self) -> list[dict]:
        return _one_kind(read_jsonl(self.samples_path, check=sample_row_problem), self.samples_path)

    def results(self) -> list[dict]:
        return _one_kind(read_jsonl(self.results_path, check=result_row_problem), self.results_path)

    def repair(self) -> list[Repaired]:
        """Move unreadable rows of samples.jsonl and results.jsonl aside (see repair_jsonl); under the lock."""
        self.lock()
        return [repair_jsonl(self.samples_path, sample_row_problem),
                repair_jsonl(self.results_path, result_row_problem)]

    def prompts(self) -> dict[str, str]:
        """Each problem's prompt as the run recorded it ({} for runs made before 0.2)."""
        return read_json_object(self.path / PROMPTS) or {}


def read_json_object(path: Path) -> dict | None:
    """A run's optional JSON file as an object; None when it is missing, unreadable or not one."""
    try:
        value = parse_json(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


_OBJECT_KEYS = ("task", "model", "decoding", "sandbox", "environment", "identity", "integrity")


def manifest_problem(m) -> str | None:
    """Why a manifest cannot be used (None when it can): the types of the keys the harness reads.
    Any key may be missing (runs of 0.1.x lack some); a present one must have its contract's shape."""
    if not isinstance(m, dict):
        return "a manifest must be a JSON object"
    for key in _OBJECT_KEYS:
        if m.get(key) is not None and not isinstance(m[key], dict):
            return f"'{key}' must be an object"
    for key in ("harness_version", "created", "command"):
        if m.get(key) is not None and not isinstance(m[key], str):
            return f"'{key}' must be a string"
    if m.get("seed") is not None and not (isinstance(m["seed"], int) and not isinstance(m["seed"], bool)):
        return "'seed' must be an integer"
    if m.get("problem_ids") is not None and not _str_list(m["problem_ids"]):
        return "'problem_ids' must be a list of strings"
    task = m.get("task") or {}
    for key in ("name", "version", "fingerprint", "source"):
        if task.get(key) is not None and not isinstance(task[key], str):
            return f"'task.{key}' must be a string"
    headline = (m.get("decoding") or {}).get("headline")
    if headline is not None and not (isinstance(headline, dict) and all(
            isinstance(k, str) and k.startswith("pass@") and k[5:].isdigit() and len(k) < 12
            and isinstance(t, (int, float)) and not isinstance(t, bool) for k, t in headline.items())):
        return "'decoding.headline' must map pass@k to a temperature"
    integrity = m.get("integrity")
    if integrity is not None:
        rows = integrity.get("not_served", [])
        if not (isinstance(rows, list) and all(isinstance(r, dict) and isinstance(r.get("task_id"), str)
                                               and isinstance(r.get("reason"), str) for r in rows)):
            return "'integrity.not_served' must be a list of {task_id, reason}"
        counts = [integrity.get(k) for k in ("served", "total")]
        if not isinstance(integrity.get("mode"), str) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in counts):
            return "'integrity' must have a mode and served/total counts"
    return None


def _str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _one_kind(rows: list[dict], path: Path) -> list[dict]:
    problem = mixed_temperatures(rows)
    if problem:
        raise UsageError(f"{path}: {problem}; not a file this harness wrote")
    return rows


def _first_difference(theirs: dict, ours: dict) -> str:
    for key in sorted(set(theirs) | set(ours)):
        if theirs.get(key) != ours.get(key):
            return f"{key}: {_short(theirs.get(key))} there, {_short(ours.get(key))} here"
    return "manifests differ"


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


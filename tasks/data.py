"""Where task data comes from: an explicit file, EVALHARNESS_DATA_DIR, or the network.

Local copies win whenever one is named; the network (the Hugging Face hub for
MBPP, the EvalPlus release files) is tried last and, when it cannot be
reached, fails at once with one line saying what to pass instead (this must
never hang on network timeouts).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
import socket
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from .base import TaskError

DATA_DIR_ENV = "EVALHARNESS_DATA_DIR"
CACHE_DIR_ENV = "EVALHARNESS_CACHE_DIR"
_OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")


def read_records(path: str | os.PathLike) -> list[dict]:
    """Records of a JSON list or JSON-lines file (optionally .gz); bad data is a one-line TaskError."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"data file not found: {path}")
    data = read_bytes(path)
    if data.lstrip().startswith(b"["):
        try:
            records = json.loads(data)
        except json.JSONDecodeError as e:
            raise TaskError(f"{path}: invalid JSON ({e.msg} at line {e.lineno})") from None
        except (ValueError, RecursionError) as e:
            raise TaskError(f"{path}: invalid JSON ({_reason(e)})") from None
    else:
        records = [row for _, row in json_lines(data, path)]
    if not records:
        raise TaskError(f"{path}: no records")
    if not all(isinstance(r, dict) for r in records):
        raise TaskError(f"{path}: expected JSON objects, one per problem")
    return records


def read_bytes(path: str | os.PathLike, error: type[Exception] = TaskError) -> bytes:
    """A file's bytes, gunzipped when it ends in .gz; an unreadable file is one `error` line."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:
        raise error(f"cannot read {path}: {e}") from None


def json_lines(data: bytes, where: str | os.PathLike, error: type[Exception] = TaskError,
               torn_tail_ok: bool = False) -> list[tuple[int, object]]:
    """(line number, value) of every non-blank line of JSON-lines `data`: the one JSONL parser of the
    harness (task data here; the spine's run files and samples files too).

    A line that is not JSON (or not UTF-8, or a number past Python's digit limit, or nested too
    deep) is one `error` line naming `where:lineno`. With `torn_tail_ok` a bad last line that
    no newline ends (a crash's partial write) is dropped instead.
    """
    lines = data.split(b"\n")
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            if not (torn_tail_ok and lineno == len(lines)):
                raise error(f"{where}:{lineno}: invalid JSON ({_reason(e)})") from None
    return rows


def _reason(e: BaseException) -> str:
    if isinstance(e, json.JSONDecodeError):
        return e.msg
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return (str(e).splitlines() or [type(e).__name__])[0][:120]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def one_file(problems_file, data_file) -> str | os.PathLike | None:
    """The loaders' single local file, given as `problems_file` or `data_file` (CLI --problems / --data-file)."""
    if problems_file and data_file and str(problems_file) != str(data_file):
        raise TaskError("give the data file once (--data-file or --problems, not both)")
    return data_file or problems_file


def local_file(data_file: str | os.PathLike | None, relative: str) -> Path | None:
    """The explicit `data_file`, else `$EVALHARNESS_DATA_DIR/<relative>` if present, else None."""
    if data_file:
        path = Path(data_file).expanduser()
        if not path.is_file():
            raise TaskError(f"data file not found: {path}")
        return path
    root = os.environ.get(DATA_DIR_ENV)
    if root and (Path(root) / relative).is_file():
        return Path(root) / relative
    return None


def cache_dir() -> Path:
    """$EVALHARNESS_CACHE_DIR, by default $XDG_CACHE_HOME/evalharness or ~/.cache/evalharness: downloads,
    EvalPlus expected outputs, and the spine's built `tiny` checkpoints (the one definition)."""
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "evalharness"


def download(url: str, dest: Path, hint: str) -> Path:
    """`dest`, fetched from `url` the first time; any failure is one TaskError line ending in `hint`."""
    if dest.is_file():
        return dest
    host = urlparse(url).hostname or url
    if not _reachable(host):
        raise TaskError(f"no local copy of {dest.name} and {host} is unreachable: {hint}")
    part = dest.with_name(f"{dest.name}.part{os.getpid()}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            shutil.copyfileobj(response, f)
        os.replace(part, dest)
    except OSError as e:  # urllib's URLError and HTTPError are OSErrors
        raise TaskError(f"cannot download {url} ({e}): {hint}") from None
    finally:
        part.unlink(missing_ok=True)
    return dest


def load_from_hub(repo: str, config: str, hint: str) -> list[dict]:
    """All splits of a hub dataset as plain records; any failure is one TaskError line ending in `hint`."""
    where = f"{repo} ({config})"
    offline = any(os.environ.get(name, "").lower() in _TRUE for name in _OFFLINE_ENVS)
    if not offline and not _hub_reachable():
        raise TaskError(f"no local copy of {where} and the Hugging Face hub is unreachable: {hint}")
    try:
        import datasets  # imported late: it is slow to import and only needed here
    except ImportError:
        raise TaskError(f"the `datasets` package is not installed, so {where} cannot be fetched: {hint}") from None
    try:
        splits = datasets.load_dataset(repo, config)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "not available"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise TaskError(f"cannot load {where} from the hub ({reason}): {hint}") from None
    return [dict(row) for name in sorted(splits) for row in splits[name]]


def _hub_reachable() -> bool:
    return _reachable(urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co")


@functools.lru_cache(maxsize=None)
def _reachable(host: str, timeout_s: float = 3.0) -> bool:
    """A quick TCP probe so an offline machine fails in milliseconds, not after minutes of retries."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # only the proxy knows; let the download try
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False

"""Turn a `--model` string into what it names: a Meta MTP directory, a transformers directory,
"demo" (the trained demo model shipped in evalharness/assets/demo), "tiny", or a Hugging Face
hub id, optionally with a folder: `facebook/multi-token-prediction:7B_200B_4`.

A hub id is resolved with huggingface_hub into the HF cache: only the named folder and
the repository's top-level tokenizer.model are downloaded (Meta's layout keeps the
tokenizer beside the model folders); with HF_HUB_OFFLINE=1 the cached copy is used.

"tiny" (or "tiny:SEED") is a deterministic random 4-head MTP checkpoint with the
byte tokenizer, built once and cached in the harness's cache directory (tasks.data.cache_dir,
default ~/.cache/evalharness) as tiny-<seed>:
the whole pipeline runs end to end in seconds without any real weights.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from evalharness.tasks.data import cache_dir

from ..errors import UsageError
from .checkpoint import is_mtp_checkpoint, make_tiny_checkpoint, resolve_device, resolve_dtype


@dataclass(frozen=True)
class ModelSpec:
    """Which loader a model string needs; nothing is loaded yet."""

    kind: Literal["mtp", "hf"]
    path: Path
    spec: str  # as the user wrote it
    device: torch.device
    dtype: torch.dtype


def tiny_checkpoint(seed: int = 0) -> Path:
    """The cached tiny checkpoint for `seed`, built atomically (concurrent ranks may ask at once)."""
    target = cache_dir() / f"tiny-{seed}"
    if is_mtp_checkpoint(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tiny-{seed}-", dir=target.parent))
    try:
        make_tiny_checkpoint(tmp, n_future=4, tokenizer="bytes", seed=seed)
        if target.exists() and not is_mtp_checkpoint(target):
            shutil.rmtree(target, ignore_errors=True)  # a damaged earlier copy
        try:
            tmp.rename(target)
        except OSError:  # another process won the race; its copy is identical
            if not is_mtp_checkpoint(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?::(?P<folder>[\w.-]+(?:/[\w.-]+)*))?")
HUB_MODEL_FILES = ("*.json", "*.safetensors", "*.model", "tokenizer*", "*.txt")  # a transformers repo, no .bin


def parse_hub_id(spec: str) -> tuple[str, str | None] | None:
    """(repo_id, folder or None) for "owner/name[:folder]"; None when spec is not shaped like one."""
    m = HUB_ID.fullmatch(spec)
    return (m.group("repo"), m.group("folder")) if m else None


def hub_checkpoint(repo_id: str, folder: str | None) -> Path:
    """The local directory of a hub model (downloaded once into the HF cache, then reused).

    With a folder: that folder plus the top-level tokenizer.model. Errors are one line
    saying what to do (gated access, no such repo, offline without a cached copy).
    """
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub import errors as hub_errors
    except ImportError:  # pragma: no cover - a dependency
        raise UsageError("--model with a hub id needs huggingface_hub (pip install huggingface_hub)") from None
    patterns = [f"{folder}/*", "tokenizer.model"] if folder else list(HUB_MODEL_FILES)
    name = f"{repo_id}:{folder}" if folder else repo_id
    try:
        root = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except hub_errors.GatedRepoError:
        raise UsageError(f"{repo_id} is gated: accept its license on its Hugging Face page "
                         f"(https://huggingface.co/{repo_id}), then log in with `hf auth login` or set HF_TOKEN; "
                         "or download it yourself and pass --model PATH") from None
    except hub_errors.RepositoryNotFoundError:
        raise UsageError(f"{repo_id}: no such model repository on the Hugging Face hub (or it is private: "
                         "log in with `hf auth login` or set HF_TOKEN)") from None
    except hub_errors.LocalEntryNotFoundError:
        raise UsageError(f"{name} is not in the Hugging Face cache and the hub cannot be reached "
                         "(HF_HUB_OFFLINE=1, or no network): download it once online, or pass --model PATH") from None
    except (hub_errors.HfHubHTTPError, OSError) as e:
        raise UsageError(f"cannot download {name}: {' '.join(str(e).split())[:200]}") from None
    path = root / folder if folder else root
    if not path.is_dir():
        raise UsageError(f"{repo_id} has no folder {folder!r} (Meta's repository has 7B_200B_1, 7B_200B_4, "
                         "7B_1T_1, 7B_1T_4)")
    return path


def parse_tiny(spec: str) -> int | None:
    """The seed of "tiny" / "tiny:SEED", or None when spec is something else."""
    name, _, seed = spec.partition(":")
    if name != "tiny":
        return None
    try:
        return int(seed or 0)
    except ValueError:
        raise UsageError(f"model {spec!r}: expected tiny or tiny:SEED with an integer seed") from None


def resolve_model(spec: str, device: str | torch.device | None = "auto", dtype: str | torch.dtype | None = None
                  ) -> ModelSpec:
    """Dispatch by files present: params.json + consolidated*.pth -> "mtp"; config.json -> "hf"."""
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if spec == "demo":
        from ..assets import DEMO_CHECKPOINT

        if not is_mtp_checkpoint(DEMO_CHECKPOINT):
            raise UsageError(f"the demo checkpoint is missing from {DEMO_CHECKPOINT}; reinstall evalharness "
                             "or pass --model PATH")
        return ModelSpec("mtp", DEMO_CHECKPOINT, spec, device, dtype)
    seed = parse_tiny(spec)
    if seed is not None and not Path(spec).exists():
        return ModelSpec("mtp", tiny_checkpoint(seed), spec, device, dtype)
    path = Path(spec).expanduser()
    if path.is_file() and path.name.startswith("consolidated") and path.suffix == ".pth":
        path = path.parent
    hub = parse_hub_id(spec)
    if not path.exists() and hub is not None:
        path = hub_checkpoint(*hub)
    if not path.exists():
        raise UsageError(f"{spec}: no such directory (give a Meta MTP directory, a transformers "
                         "model directory, a hub id such as facebook/multi-token-prediction:7B_200B_4, or tiny)")
    if is_mtp_checkpoint(path):
        return ModelSpec("mtp", path, spec, device, dtype)
    if (path / "config.json").is_file():
        return ModelSpec("hf", path, spec, device, dtype)
    raise UsageError(f"{spec}: neither a Meta MTP checkpoint (params.json + consolidated.pth) "
                     "nor a transformers model directory (config.json)")

"""Turn a `--model` string into what it names: a Meta MTP directory, a transformers directory,
"demo" (the trained demo model shipped in evalharness/assets/demo) or "tiny".

"tiny" (or "tiny:SEED") is a deterministic random 4-head MTP checkpoint with the
byte tokenizer, built once and cached in the harness's cache directory (tasks.data.cache_dir,
default ~/.cache/evalharness) as tiny-<seed>:
the whole pipeline runs end to end in seconds without any real weights.
"""
from __future__ import annotations

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
    if not path.exists():
        raise UsageError(f"{spec}: no such directory (give a Meta MTP directory, a transformers "
                         "model directory, or tiny)")
    if is_mtp_checkpoint(path):
        return ModelSpec("mtp", path, spec, device, dtype)
    if (path / "config.json").is_file():
        return ModelSpec("hf", path, spec, device, dtype)
    raise UsageError(f"{spec}: neither a Meta MTP checkpoint (params.json + consolidated.pth) "
                     "nor a transformers model directory (config.json)")

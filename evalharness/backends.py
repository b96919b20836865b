"""Model backends: from a `--model` string to a ready Generator and the ModelRecord every backend returns.

A backend is a loader `(path, device, dtype, tokenizer, quiet, **generator_options) -> (Generator,
ModelRecord)` (quiet: no loading progress bars; generator_options: the Generator's, e.g. compile);
`load_generator` picks one by what models.resolve found on disk ("mtp": Meta's MTP format, here; "hf": a
transformers directory, decoding/hf.py). A new backend is a loader plus its kind in `_BACKENDS` (and in
resolve_model).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

__all__ = ["ModelRecord", "device_name", "load_generator"]


@dataclass(frozen=True)
class ModelRecord:
    """What a run records about its model. The fingerprint (a hash of the weights, config and tokenizer) is
    required: it is the model's part of the run identity, so a run directory never mixes two models."""

    kind: str  # "mtp" | "hf"
    spec: str  # --model as the user wrote it (a backend called directly records its path)
    fingerprint: str
    dtype: str  # of the loaded weights, e.g. "float32"
    device_name: str  # e.g. "NVIDIA H100 80GB HBM3" or "cpu (x86_64)"
    n_future_tokens: int = 1
    details: Mapping = field(default_factory=dict)  # backend facts for the manifest (path, params, ...)

    def __post_init__(self):
        if not self.fingerprint:
            raise ValueError(f"model backend {self.kind!r} returned no fingerprint")

    def to_dict(self) -> dict:
        """The manifest's `model` entry."""
        return {"kind": self.kind, "spec": self.spec, **self.details, "n_future_tokens": self.n_future_tokens,
                "dtype": self.dtype, "fingerprint": self.fingerprint, "device_name": self.device_name}


def load_generator(spec: str, device="auto", dtype: str | None = None, tokenizer: str | None = None,
                   quiet: bool = False, **generator_options):
    """(Generator, ModelRecord) for a Meta MTP directory, a transformers directory or a built-in name.
    `quiet`: no loading progress bars; generator_options go to the Generator (e.g. compile)."""
    from .models import resolve_model

    model_spec = resolve_model(spec, device, dtype)
    generator, record = _BACKENDS[model_spec.kind](model_spec.path, model_spec.device, model_spec.dtype, tokenizer,
                                                   quiet, **generator_options)
    if not isinstance(record, ModelRecord):
        raise TypeError(f"model backend {model_spec.kind!r} must return a ModelRecord, not {type(record).__name__}")
    return generator, replace(record, spec=spec)


def _load_mtp(path, device, dtype, tokenizer, quiet, **generator_options):  # loading MTP weights prints nothing
    from .decoding import Generator
    from .models import load_mtp_checkpoint

    model, tok, info = load_mtp_checkpoint(path, device=device, dtype=dtype, tokenizer_path=tokenizer)
    details = {k: v for k, v in info.to_dict().items() if k not in ("kind", "n_future_tokens", "dtype", "fingerprint")}
    record = ModelRecord("mtp", str(path), info.fingerprint, info.dtype, device_name(device), info.n_future_tokens,
                         details)
    return Generator(model, tok, device, **generator_options), record


def _load_hf(path, device, dtype, tokenizer, quiet, **generator_options):
    from .decoding.hf import load_hf_generator

    return load_hf_generator(path, device=device, dtype=dtype, tokenizer=tokenizer, quiet=quiet,
                             **generator_options)


_BACKENDS = {"mtp": _load_mtp, "hf": _load_hf}


def device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"

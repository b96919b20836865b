"""From a `--model` string to a ready Generator and the manifest's model record."""
from __future__ import annotations

from .models import load_mtp_checkpoint, resolve_model
from .models.checkpoint import resolve_device

__all__ = ["load_generator", "resolve_device"]


def load_generator(spec: str, device="auto", dtype: str | None = None, tokenizer: str | None = None,
                   **generator_options):
    """(generator, model record) for a Meta MTP directory, a transformers directory or a built-in name.
    generator_options go to the Generator (e.g. compile)."""
    model_spec = resolve_model(spec, device, dtype)
    if model_spec.kind == "hf":
        from .decoding.hf import load_hf_generator

        return load_hf_generator(model_spec.path, device=model_spec.device, dtype=model_spec.dtype,
                                 tokenizer=tokenizer, **generator_options)
    from .decoding import Generator

    model, tok, info = load_mtp_checkpoint(model_spec.path, device=model_spec.device, dtype=model_spec.dtype,
                                           tokenizer_path=tokenizer)
    record = {"kind": "mtp", "spec": spec, **info.to_dict(), "device_name": _device_name(model_spec.device)}
    return Generator(model, tok, model_spec.device, **generator_options), record


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()})"

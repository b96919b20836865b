#!/usr/bin/env python
"""Peak memory of loading a Meta-format checkpoint, as a multiple of its file size.

Writes a ~200 MB fp32 MTP checkpoint, then loads it in fresh child processes and
measures each child's peak RSS (VmHWM) above its RSS after imports, with every
weight touched (summed) so memory-mapped pages count (they are clean file pages
the kernel can reclaim, but they are counted here). Methods:

  evalharness   load_mtp_checkpoint (mmap + meta-device init + assign), fp32
  evalharness-bf16   the same file converted to bf16 while loading
  anchor        the obvious way: torch.load into RAM, build the model, load_state_dict (a copy)

`--mb N` sets the checkpoint size; `--json` prints one JSON object instead of text.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(method: str, directory: str) -> None:
    """Runs in a fresh process: print peak bytes above the post-import baseline."""
    import torch

    from evalharness.models.checkpoint import load_mtp_checkpoint, read_params
    from evalharness.models.transformer import ModelArgs, MTPTransformer

    # Fixed start-up costs are not the checkpoint's: torch's lazy init and the first meta-device
    # model (~70 MB of kernels/imports) happen before the baseline, for every method alike.
    with torch.device("meta"):
        MTPTransformer(ModelArgs(dim=8, n_layers=1, n_heads=1, vocab_size=8))
    torch.zeros(1).sum()
    base = rss_kib("VmRSS")
    if method == "anchor":
        state = torch.load(Path(directory) / "consolidated.pth", map_location="cpu", weights_only=True)
        model = MTPTransformer(ModelArgs.from_params(read_params(Path(directory))))
        model.load_state_dict(state)
        del state
    else:
        dtype = torch.bfloat16 if method == "evalharness-bf16" else torch.float32
        model, _, _ = load_mtp_checkpoint(directory, dtype=dtype)
    with torch.no_grad():
        total = sum(float(p.float().sum()) for p in model.parameters())  # every page resident
    print(json.dumps({"peak_bytes": (rss_kib("VmHWM") - base) * 1024, "checksum": total}))


def measure(method: str, directory: Path) -> int:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(directory)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200, help="checkpoint size in MB (default 200)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    from evalharness.models.checkpoint import make_tiny_checkpoint

    # dim 1024 blocks are ~51 MB each in fp32 (attention 4.2M + FFN 8.7M parameters)
    n_layers = max(2, round(args.mb / 51.4))
    with tempfile.TemporaryDirectory() as tmp:
        directory = make_tiny_checkpoint(Path(tmp) / "ckpt", n_future=2, dim=1024, n_layers=n_layers, n_heads=8,
                                         multiple_of=256)
        size = (directory / "consolidated.pth").stat().st_size
        peaks = {m: measure(m, directory) for m in ("evalharness", "evalharness-bf16", "anchor")}
    ratios = {m: peak / size for m, peak in peaks.items()}
    if args.json:
        print(json.dumps({"file_bytes": size, "peak_bytes": peaks, "ratio": ratios}))
        return
    print(f"checkpoint: {size / 1e6:.0f} MB fp32 ({n_layers} blocks of dim 1024)")
    for m in peaks:
        print(f"  {m:18} peak {peaks[m] / 1e6:7.0f} MB = {ratios[m]:.2f}x file size")
    print(f"evalharness / anchor: {peaks['evalharness'] / peaks['anchor']:.2f}")


if __name__ == "__main__":
    main()

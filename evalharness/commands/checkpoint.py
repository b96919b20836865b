"""`evalharness checkpoint make-tiny|inspect|convert`: small random MTP checkpoints, a look inside one,
and the export of trunk + head 1 to a transformers Llama directory."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from evalharness.tasks.data import parse_json

from ..errors import UsageError
from .options import int_in


def add_parser(sub) -> None:
    p = sub.add_parser("checkpoint", help="make, inspect or convert Meta-format MTP checkpoints",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    tiny = actions.add_parser("make-tiny", help="write a small random checkpoint in Meta's exact format")
    tiny.add_argument("dir", help="output directory (params.json, consolidated.pth, tokenizer)")
    # bounds keep "tiny" tiny: the largest is about 0.4B parameters, not a memory bomb
    tiny.add_argument("--n-future", type=int_in(1, 16), default=4, help="number of heads n, 1..16 (default 4)")
    tiny.add_argument("--dim", type=int_in(2, 1024), default=64, help="model width, 2..1024 (default 64)")
    tiny.add_argument("--layers", type=int_in(1, 32),
                      help="ALL blocks incl. heads, as params.json, 1..32 (default n+2)")
    tiny.add_argument("--heads", type=int_in(1, 64), default=4, help="attention heads, 1..64 (default 4)")
    tiny.add_argument("--kv-heads", type=int_in(1, 64), help="key/value heads for GQA (default: --heads)")
    tiny.add_argument("--tokenizer", choices=("bytes", "sentencepiece"), default="bytes",
                      help="byte-level, or a small SentencePiece model trained on stdlib source (default bytes)")
    tiny.add_argument("--seed", type=int, default=0, help="weight init seed (default 0)")
    tiny.set_defaults(run=run_make_tiny)

    inspect = actions.add_parser("inspect", help="print architecture, heads, parameter count, dtype")
    inspect.add_argument("path", help="Meta checkpoint directory, a transformers directory, or tiny[:SEED]")
    inspect.add_argument("--tokenizer", metavar="PATH", help="tokenizer (default: the one beside the checkpoint)")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(run=run_inspect)

    convert = actions.add_parser("convert", help="export trunk + head 1 as a transformers Llama directory")
    convert.add_argument("path", help="Meta checkpoint directory (or tiny[:SEED])")
    convert.add_argument("--to", choices=("hf",), required=True, help="target format")
    convert.add_argument("out", help="output directory")
    convert.add_argument("--tokenizer", metavar="PATH", help="tokenizer (default: the one beside the checkpoint)")
    convert.set_defaults(run=run_convert)
    p.set_defaults(run=lambda args: (p.print_help(), 2)[1])


@contextlib.contextmanager
def new_directory(out: Path):
    """Build a directory that appears whole or not at all: the caller writes into a temp directory
    beside `out`, renamed to `out` on success and removed on any failure (a failed convert leaves
    nothing behind). `out` must not exist, or be an empty directory."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not empty")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as e:
        raise UsageError(f"cannot create {out}: {e.strerror or e}") from None
    try:
        yield tmp
        if out.is_dir():
            out.rmdir()  # the empty directory the user named
        os.rename(tmp, out)
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_make_tiny(args: argparse.Namespace) -> int:
    from ..models.checkpoint import make_tiny_checkpoint

    out = Path(args.dir)
    with new_directory(out) as tmp:
        make_tiny_checkpoint(tmp, n_future=args.n_future, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                             n_kv_heads=args.kv_heads, tokenizer=args.tokenizer, seed=args.seed)
    print(f"wrote {out} (n_future_tokens={args.n_future}, tokenizer={args.tokenizer})")
    return 0


def describe_mtp(path: str, tokenizer: str | None) -> dict:
    """Facts read from the memory-mapped checkpoint, without materializing the model."""
    from ..models.checkpoint import checkpoint_file, fingerprint, open_mtp_checkpoint, stored_dtype

    raw = open_mtp_checkpoint(path, tokenizer)
    a, n = raw.args, raw.args.n_future_tokens

    def count(prefix: str) -> int:
        return sum(t.numel() for k, t in raw.state.items() if k.startswith(prefix))

    head_names = [f"layers.{a.n_layers - n}."] + [f"extra_heads.{j}." for j in range(n - 1)]
    return {
        "path": str(raw.directory), "format": "meta-mtp", "n_future_tokens": n,
        "dim": a.dim, "n_layers_total": a.n_layers, "trunk_layers": a.n_layers - n, "n_heads": a.n_heads,
        "n_kv_heads": a.kv_heads, "head_dim": a.head_dim, "ffn_hidden_dim": a.ffn_hidden_dim,
        "vocab_size": a.vocab_size, "norm_eps": a.norm_eps, "rope_theta": a.rope_theta, "max_seq_len": a.max_seq_len,
        "params_total": sum(t.numel() for t in raw.state.values()),
        "params_per_head": [count(h) for h in head_names],
        "params_embedding_output": count("tok_embeddings.") + count("output."),
        "stored_dtype": stored_dtype(raw.state), "file_bytes": checkpoint_file(raw.directory).stat().st_size,
        "tokenizer": str(raw.tokenizer_path), "tokenizer_vocab": raw.tokenizer.vocab_size,
        "fingerprint": fingerprint(raw.params, raw.state, raw.tokenizer_path),
    }


def describe_hf(path: Path) -> dict:
    try:
        config = parse_json((path / "config.json").read_bytes())
    except (OSError, ValueError) as e:
        raise UsageError(f"{path / 'config.json'}: {e}") from None
    keys = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "intermediate_size", "vocab_size", "torch_dtype", "dtype", "num_nextn_predict_layers")
    return {"path": str(path), "format": "transformers", **{k: config[k] for k in keys if k in config}}


def human(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def run_inspect(args: argparse.Namespace) -> int:
    from ..models.resolve import resolve_model

    spec = resolve_model(args.path, device="cpu")
    facts = describe_mtp(str(spec.path), args.tokenizer) if spec.kind == "mtp" else describe_hf(spec.path)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    if spec.kind == "hf":
        for k, v in facts.items():
            print(f"{k:22} {v}")
        return 0
    f = facts
    print(f"{f['path']}  (Meta MTP format, fingerprint {f['fingerprint']})")
    print(f"  heads             {f['n_future_tokens']} (head 1 = layers.{f['trunk_layers']}, "
          f"{f['n_future_tokens'] - 1} extra_heads)")
    print(f"  blocks            {f['n_layers_total']} = {f['trunk_layers']} trunk + {f['n_future_tokens']} heads")
    print(f"  dim               {f['dim']} (ffn {f['ffn_hidden_dim']}), attention heads {f['n_heads']}, "
          f"kv heads {f['n_kv_heads']}, head dim {f['head_dim']}")
    print(f"  vocab             {f['vocab_size']} (tokenizer {f['tokenizer']}, {f['tokenizer_vocab']} ids)")
    print(f"  rope theta        {f['rope_theta']}, norm eps {f['norm_eps']}, max seq len {f['max_seq_len']}")
    print(f"  parameters        {human(f['params_total'])} ({f['params_total']:,}); per head "
          f"{human(f['params_per_head'][0])}; embedding + output {human(f['params_embedding_output'])}")
    print(f"  stored dtype      {f['stored_dtype']}, {f['file_bytes'] / 2**20:.1f} MiB on disk")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from ..models.checkpoint import convert_to_hf
    from ..models.resolve import resolve_model

    out = Path(args.out)
    spec = resolve_model(args.path, device="cpu")
    if spec.kind != "mtp":
        raise UsageError(f"{args.path} is already a transformers directory")
    with new_directory(out) as tmp:
        notes = convert_to_hf(spec.path, tmp, tokenizer_path=args.tokenizer)
    print(f"wrote {out}: trunk + head 1 as LlamaForCausalLM (extra heads dropped)")
    for note in notes:
        print(f"note: {note}")
    return 0

"""Meta's MTP checkpoint format: read, validate, load, write tiny ones, convert to transformers Llama.

A checkpoint is a directory with params.json (Llama-2 ModelArgs + n_future_tokens)
and consolidated.pth (a state dict with Meta's names), the tokenizer beside it or
in the parent directory (Meta ships one tokenizer.model for all four models).
Loading never holds a second full copy of the weights: the file is memory-mapped,
the model is built on the meta device, and the tensors are assigned in place
(converted one at a time when the requested dtype or device differs).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UsageError
from .tokenizers import BYTE_TOKENIZER_FILE, ByteTokenizer, Tokenizer, find_tokenizer, load_tokenizer
from .transformer import ModelArgs, MTPTransformer

IGNORED_KEYS = ("rope.freqs",)
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "fp64": torch.float64,
          "float64": torch.float64}


@dataclass(frozen=True)
class CheckpointInfo:
    """What was loaded, for manifests and `checkpoint inspect`."""

    path: Path
    args: ModelArgs
    n_future_tokens: int
    n_params: int
    stored_dtype: str  # e.g. "bfloat16", or "mixed(...)"
    dtype: str  # of the loaded model
    device: str
    tokenizer_path: str
    fingerprint: str

    def to_dict(self) -> dict:
        """JSON-able, for the run manifest."""
        return {"kind": "mtp", "path": str(self.path), "params": dict(vars(self.args)),
                "n_future_tokens": self.n_future_tokens, "n_params": self.n_params,
                "stored_dtype": self.stored_dtype, "dtype": self.dtype, "device": self.device,
                "tokenizer": self.tokenizer_path, "fingerprint": self.fingerprint}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """auto: CUDA when there is one. A bare "cuda" is this process's GPU (under torchrun, the rank's
    LOCAL_RANK one, set before models load), with its index, so memory sizing asks the right card."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but torch sees no CUDA device")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None/"auto": bf16 on CUDA, fp32 on CPU."""
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r} (use auto, {', '.join(DTYPES)})")
    return DTYPES[dtype]


def checkpoint_file(directory: Path) -> Path:
    """consolidated.pth, or a single consolidated.00.pth (model-parallel shards are not supported)."""
    files = sorted(directory.glob("consolidated*.pth"))
    if not files:
        raise UsageError(f"{directory}: no consolidated.pth (not a Meta checkpoint directory)")
    if len(files) > 1:
        raise UsageError(f"{directory}: {len(files)} model-parallel shards; merge them into one consolidated.pth first")
    return files[0]


def is_mtp_checkpoint(path: str | Path) -> bool:
    path = Path(path)
    return (path / "params.json").is_file() and any(path.glob("consolidated*.pth"))


def read_params(directory: Path) -> dict:
    try:
        params = json.loads((directory / "params.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"{directory}: no params.json (not a Meta checkpoint directory)") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"{directory / 'params.json'}: not valid JSON ({e})") from None
    if not isinstance(params, dict):
        raise UsageError(f"{directory / 'params.json'}: expected a JSON object")
    return params


def read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """Memory-mapped, weights only: nothing is read from disk until a tensor is touched."""
    try:
        try:
            state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            state = torch.load(file, map_location="cpu", weights_only=True)  # legacy (pre-zip) format: no mmap
    except Exception as e:  # a truncated zip, pickle with code, an empty file...: one line, not a traceback
        raise UsageError(f"{file}: cannot read as a torch checkpoint ({first_line(e)})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise UsageError(f"{file}: expected a state dict, got {type(state).__name__}")
    return {k: v for k, v in state.items() if k not in IGNORED_KEYS}


def first_line(e: BaseException, limit: int = 200) -> str:
    """An exception as one short line; its class name when its message is empty."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]


MAX_SEQ_LEN = 1 << 20  # the RoPE table covers 2x max_seq_len positions: beyond this it alone needs GBs


def params_problem(params: dict) -> str | None:
    """Why params.json cannot describe a model (None when it can): each ModelArgs field of the right
    type and range, and the shapes that must divide (head dim from dim / n_heads, even for RoPE)."""
    def count(key, low=1, optional=False):
        value = params.get(key)
        if value is None and optional:
            return None
        if not (isinstance(value, int) and not isinstance(value, bool)) or value < low:
            return f"'{key}' must be an integer >= {low}, got {value!r}"
        return None

    def positive(key, optional=False):
        value = params.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < float("inf"):
            return f"'{key}' must be a positive finite number, got {value!r}"
        return None

    defaults = ModelArgs()
    params = {**vars(defaults), **{k: v for k, v in params.items() if k in vars(defaults)}}
    vocab = params["vocab_size"]
    problem = (count("dim") or count("n_layers") or count("n_heads") or count("n_kv_heads", optional=True)
               or count("multiple_of") or count("n_future_tokens", optional=True) or count("max_seq_len")
               or positive("norm_eps") or positive("rope_theta") or positive("ffn_dim_multiplier", optional=True)
               or (None if vocab == -1 or (isinstance(vocab, int) and not isinstance(vocab, bool) and vocab > 0)
                   else f"'vocab_size' must be -1 (from the tokenizer) or an integer >= 1, got {vocab!r}"))
    if problem:
        return problem
    dim, heads, kv = params["dim"], params["n_heads"], params["n_kv_heads"] or params["n_heads"]
    if dim % heads or (dim // heads) % 2:
        return f"'dim' ({dim}) must be 'n_heads' ({heads}) times an even head dimension"
    if heads % kv:
        return f"'n_heads' ({heads}) must be a multiple of 'n_kv_heads' ({kv})"
    if params["max_seq_len"] > MAX_SEQ_LEN:
        return f"'max_seq_len' ({params['max_seq_len']}) is above the {MAX_SEQ_LEN} this harness supports"
    return None


def count_future_heads(state: dict[str, torch.Tensor]) -> int:
    """n = 1 + the number of distinct extra_heads.{j} blocks in the state dict."""
    extra = {int(m.group(1)) for k in state if (m := re.match(r"extra_heads\.(\d+)\.", k))}
    return 1 + len(extra)


def model_args(params: dict, state: dict[str, torch.Tensor], tokenizer: Tokenizer, where: Path) -> ModelArgs:
    """ModelArgs from params.json, with vocab_size -1 resolved and n checked against the weights."""
    problem = params_problem(params)
    if problem:
        raise UsageError(f"{where / 'params.json'}: {problem}")
    args = ModelArgs.from_params(params)
    detected = count_future_heads(state)
    declared = params.get("n_future_tokens")
    if declared is not None and declared != detected:
        raise UsageError(f"{where}: params.json says n_future_tokens={declared} but the weights have "
                         f"{detected} head(s) ({detected - 1} extra_heads blocks)")
    args.n_future_tokens = detected
    blocks = len({m.group(1) for k in state if (m := re.match(r"layers\.(\d+)\.", k))})
    if args.n_layers != blocks + detected - 1:  # checked before a skeleton of n_layers blocks is built
        raise UsageError(f"{where}: params.json says n_layers={args.n_layers} but the weights have "
                         f"{blocks} layers blocks and {detected - 1} extra_heads ({blocks + detected - 1} in all)")
    if args.vocab_size in (None, -1):
        args.vocab_size = tokenizer.vocab_size
    if tokenizer.vocab_size > args.vocab_size:
        raise UsageError(f"{where}: the tokenizer has {tokenizer.vocab_size} ids but the model only "
                         f"{args.vocab_size} (wrong tokenizer?)")
    return args


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], where: Path) -> None:
    """One-line error naming the first missing, misshapen or unexpected key (in the model's order)."""
    expected = model.state_dict()
    for name, ref in expected.items():
        if name not in state:
            raise UsageError(f"{where}: missing key {name} (expected shape {list(ref.shape)})")
        if tuple(state[name].shape) != tuple(ref.shape):
            raise UsageError(f"{where}: key {name} has shape {list(state[name].shape)}, "
                             f"expected {list(ref.shape)} from params.json")
    for name in state:
        if name not in expected:
            raise UsageError(f"{where}: unexpected key {name} (params.json describes a different model?)")


def weights_digest(state: dict[str, torch.Tensor], samples: int = 256) -> str:
    """Cheap: names, shapes, dtypes and an evenly strided sample of each tensor (touches few pages)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        h.update(f"{name}:{list(t.shape)}:{t.dtype};".encode())
        flat = t.reshape(-1)
        step = max(1, flat.numel() // samples)
        h.update(flat[::step][:samples].float().numpy().tobytes())
    return h.hexdigest()


def fingerprint(params: dict, state: dict[str, torch.Tensor], tokenizer_path: Path | str | None) -> str:
    h = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    h.update(weights_digest(state).encode())
    if tokenizer_path is not None and Path(tokenizer_path).is_file():
        h.update(hashlib.sha256(Path(tokenizer_path).read_bytes()).digest())
    return h.hexdigest()[:16]


def stored_dtype(state: dict[str, torch.Tensor]) -> str:
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state.values()})
    return dtypes[0] if len(dtypes) == 1 else f"mixed({','.join(dtypes)})"


@dataclass
class RawCheckpoint:
    """A validated checkpoint whose tensors are still memory-mapped (nothing materialized)."""

    directory: Path
    params: dict
    args: ModelArgs
    state: dict[str, torch.Tensor]
    tokenizer: Tokenizer
    tokenizer_path: Path | str


def open_mtp_checkpoint(path: str | Path, tokenizer_path: str | Path | None = None) -> RawCheckpoint:
    """Read params.json, the tokenizer and the mmap'd state dict, and validate names and shapes."""
    directory = Path(path)
    if directory.is_file():
        directory = directory.parent
    if not directory.is_dir():
        raise UsageError(f"checkpoint directory not found: {path}")
    params = read_params(directory)
    tok_path = tokenizer_path or find_tokenizer(directory)
    if tok_path is None:
        raise UsageError(f"{directory}: no tokenizer.model (or {BYTE_TOKENIZER_FILE}) here or in the parent; "
                         "pass the tokenizer path explicitly")
    tokenizer = load_tokenizer(tok_path)
    state = read_state_dict(checkpoint_file(directory))
    args = model_args(params, state, tokenizer, directory)
    try:
        with torch.device("meta"):
            skeleton = MTPTransformer(args)
    except (ValueError, RuntimeError, OverflowError, TypeError) as e:  # sizes no tensor can have
        raise UsageError(f"{directory / 'params.json'}: {first_line(e)}") from None
    check_state_dict(skeleton, state, directory)
    return RawCheckpoint(directory, params, args, state, tokenizer, tok_path)


def load_mtp_checkpoint(path: str | Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
                        tokenizer_path: str | Path | None = None) -> tuple[MTPTransformer, Tokenizer, CheckpointInfo]:
    """(model in eval mode without grads, tokenizer, info). dtype None: bf16 on CUDA, fp32 on CPU."""
    raw = open_mtp_checkpoint(path, tokenizer_path)
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    info = CheckpointInfo(
        path=raw.directory, args=raw.args, n_future_tokens=raw.args.n_future_tokens,
        n_params=sum(t.numel() for t in raw.state.values()), stored_dtype=stored_dtype(raw.state),
        dtype=str(dtype).removeprefix("torch."), device=str(device), tokenizer_path=str(raw.tokenizer_path),
        fingerprint=fingerprint(raw.params, raw.state, raw.tokenizer_path),
    )
    with torch.device("meta"):
        model = MTPTransformer(raw.args)
    # Tensor by tensor: a no-op (still mmap'd) when dtype and device match, else one converted copy each.
    state = {k: v.to(device=device, dtype=dtype) for k, v in raw.state.items()}
    model.load_state_dict(state, assign=True, strict=True)
    return model.eval().requires_grad_(False), raw.tokenizer, info


# ---------------------------------------------------------------- writing


def write_mtp_checkpoint(model: MTPTransformer, directory: str | Path, extra_params: dict | None = None) -> Path:
    """params.json + consolidated.pth in Meta's layout (every ModelArgs key, n_future_tokens included)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = {**vars(model.args), **(extra_params or {})}
    (directory / "params.json").write_text(json.dumps(params, indent=2) + "\n")
    torch.save({k: v.detach().contiguous() for k, v in model.state_dict().items()}, directory / "consolidated.pth")
    return directory


def tiny_sentencepiece_texts() -> list[str]:
    """Python source from the standard library: a fixed, offline corpus for tiny tokenizers."""
    import inspect
    import json.encoder
    import string
    import textwrap

    return [line for m in (textwrap, json.encoder, string) for line in inspect.getsource(m).splitlines(keepends=True)]


def make_tiny_checkpoint(directory: str | Path, n_future: int = 4, dim: int = 64, n_layers: int | None = None,
                         n_heads: int = 4, n_kv_heads: int | None = None, tokenizer: str = "bytes", seed: int = 0,
                         multiple_of: int = 32, max_seq_len: int = 2048, dtype: torch.dtype = torch.float32) -> Path:
    """A small random MTP checkpoint in Meta's exact format; n_layers counts all blocks (default n + 2)."""
    n_layers = n_future + 2 if n_layers is None else n_layers
    kv_heads = n_kv_heads or n_heads
    if dim % n_heads or n_heads % kv_heads or (dim // n_heads) % 2:
        raise UsageError(f"need dim ({dim}) divisible by heads ({n_heads}) with an even quotient, "
                         f"and heads divisible by kv-heads ({kv_heads})")
    if n_layers < n_future:
        raise UsageError(f"layers ({n_layers}) counts all blocks and must be >= n-future ({n_future})")
    if tokenizer not in ("bytes", "sentencepiece"):
        raise UsageError(f"unknown tiny tokenizer {tokenizer!r} (use bytes or sentencepiece)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if tokenizer == "bytes":
        tok: Tokenizer = ByteTokenizer()
        tok.save(directory / BYTE_TOKENIZER_FILE)
    else:
        from .tokenizers import SentencePieceTokenizer, train_sentencepiece

        tok = SentencePieceTokenizer(train_sentencepiece(tiny_sentencepiece_texts(), directory / "tokenizer", 512))
    args = ModelArgs(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, vocab_size=tok.vocab_size,
                     multiple_of=multiple_of, n_future_tokens=n_future, max_seq_len=max_seq_len)
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = MTPTransformer(args).to(dtype)
    return write_mtp_checkpoint(model, directory)


# ---------------------------------------------------------------- transformers export


def permute_for_rotate_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder each head's rows from interleaved pairs (Meta) to the two-halves layout (HF Llama)."""
    out_dim, in_dim = w.shape
    return w.view(n_heads, out_dim // n_heads // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def hf_state_dict(raw: RawCheckpoint) -> dict[str, torch.Tensor]:
    """Trunk + head 1 under HF Llama names (extra heads dropped): an ordinary next-token model."""
    a, s = raw.args, raw.state
    out = {"model.embed_tokens.weight": s["tok_embeddings.weight"], "model.norm.weight": s["norm.weight"],
           "lm_head.weight": s["output.weight"]}
    names = {"attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
             "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj", "feed_forward.w3": "mlp.up_proj",
             "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
    for i in range(a.n_layers - a.n_future_tokens + 1):
        src, dst = f"layers.{i}.", f"model.layers.{i}."
        out[dst + "self_attn.q_proj.weight"] = permute_for_rotate_half(s[src + "attention.wq.weight"], a.n_heads)
        out[dst + "self_attn.k_proj.weight"] = permute_for_rotate_half(s[src + "attention.wk.weight"], a.kv_heads)
        for meta, hf in names.items():
            out[f"{dst}{hf}.weight"] = s[f"{src}{meta}.weight"]
    return {k: v.contiguous() for k, v in out.items()}


def hf_config(raw: RawCheckpoint) -> dict:
    a = raw.args
    dtype = stored_dtype(raw.state)
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": a.dim, "intermediate_size": a.ffn_hidden_dim,
        "num_hidden_layers": a.n_layers - a.n_future_tokens + 1,
        "num_attention_heads": a.n_heads, "num_key_value_heads": a.kv_heads, "head_dim": a.head_dim,
        "vocab_size": a.vocab_size, "max_position_embeddings": a.max_seq_len, "rms_norm_eps": a.norm_eps,
        "rope_theta": a.rope_theta, "rope_scaling": None, "hidden_act": "silu", "tie_word_embeddings": False,
        "attention_bias": False, "mlp_bias": False, "initializer_range": 0.02, "use_cache": True,
        "bos_token_id": raw.tokenizer.bos_id, "eos_token_id": raw.tokenizer.eos_id,
        "torch_dtype": dtype if not dtype.startswith("mixed") else "float32",
    }


def convert_to_hf(path: str | Path, out: str | Path, tokenizer_path: str | Path | None = None,
                  shard_bytes: int = 4 << 30) -> list[str]:
    """Write trunk + head 1 as a transformers Llama directory; return notes (e.g. tokenizer not converted)."""
    from safetensors.torch import save_file

    raw = open_mtp_checkpoint(path, tokenizer_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(hf_config(raw), indent=2) + "\n")
    state = hf_state_dict(raw)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], out / "model.safetensors", metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, out / fname, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, fname))
        total = sum(t.numel() * t.element_size() for t in state.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return export_tokenizer(raw, out)


def export_tokenizer(raw: RawCheckpoint, out: Path) -> list[str]:
    """SentencePiece -> a transformers Llama tokenizer; bytes -> our marker file (transformers has none)."""
    import shutil
    import tempfile

    src = Path(raw.tokenizer_path)
    if src.name == BYTE_TOKENIZER_FILE:
        shutil.copy(src, out / BYTE_TOKENIZER_FILE)
        return [f"byte tokenizer copied as {BYTE_TOKENIZER_FILE} (transformers has no equivalent; "
                "evalharness loads it)"]
    if src.is_dir():  # already an HF tokenizer
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(src)).save_pretrained(str(out))
        return []
    shutil.copy(src, out / "tokenizer.model")
    try:  # transformers converts SentencePiece itself (needs protobuf); accept it only if it encodes alike
        from transformers import LlamaTokenizer

        with tempfile.TemporaryDirectory() as tmp:  # alone in a directory: beside config.json it loads empty
            shutil.copy(src, Path(tmp) / "tokenizer.model")
            hf = LlamaTokenizer.from_pretrained(tmp, legacy=True, add_bos_token=True, add_eos_token=False)
        probe = "def f(x):\n    return x + 1  # done\n\tpass\n"
        if hf.encode(probe, add_special_tokens=False) != raw.tokenizer.encode(probe, bos=False):
            return ["tokenizer not converted (transformers encodes differently); copied tokenizer.model"]
        hf.save_pretrained(str(out))
    except Exception as e:  # noqa: BLE001 -- optional libraries (protobuf); the weights are converted regardless
        return [f"tokenizer not converted ({str(e).splitlines()[0][:120]}); copied tokenizer.model"]
    return []

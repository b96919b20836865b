"""Meta checkpoint format: loading, validation errors, HF export parity, the CLI and the model resolver."""
import json

import pytest
import torch

from evalharness.cli import main
from evalharness.errors import UsageError
from evalharness.models import load_mtp_checkpoint, make_tiny_checkpoint, resolve_model
from evalharness.models.checkpoint import convert_to_hf


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny4", n_future=4, n_kv_heads=2, seed=3)


def edit(directory, params=None, state=None):
    """Rewrite a checkpoint's params.json / state dict through the given functions."""
    if params:
        p = json.loads((directory / "params.json").read_text())
        params(p)
        (directory / "params.json").write_text(json.dumps(p))
    if state:
        sd = torch.load(directory / "consolidated.pth", weights_only=True)
        state(sd)
        torch.save(sd, directory / "consolidated.pth")


@pytest.fixture
def copy(ckpt, tmp_path):
    import shutil

    return shutil.copytree(ckpt, tmp_path / "copy")


@pytest.mark.parametrize("n,kv,tokenizer", [(1, None, "bytes"), (2, 2, "bytes"), (4, None, "sentencepiece"),
                                            (4, 1, "bytes")])
def test_head1_matches_transformers_llama(tmp_path, n, kv, tokenizer):
    """Trunk + head 1 exported with the RoPE permutation gives LlamaForCausalLM the same logits."""
    from transformers import LlamaForCausalLM

    src = make_tiny_checkpoint(tmp_path / "mtp", n_future=n, n_kv_heads=kv, tokenizer=tokenizer, seed=n)
    model, tok, info = load_mtp_checkpoint(src)
    convert_to_hf(src, tmp_path / "hf")
    hf = LlamaForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval()
    ids = torch.tensor([tok.encode("def add(a, b):\n    return a + b\n" * 3)])
    with torch.no_grad():
        ours, theirs = model(ids, n_heads=1)[:, :, 0], hf(ids).logits
    assert ours.abs().max() > 0.5  # not a degenerate all-zero comparison
    assert (ours - theirs).abs().max().item() < 1e-4


def test_load_defaults_and_info(ckpt):
    model, tok, info = load_mtp_checkpoint(ckpt)
    assert model.n_future_tokens == info.n_future_tokens == 4
    assert model.output.weight.dtype == torch.float32 and not model.output.weight.requires_grad
    assert info.n_params == sum(p.numel() for p in model.parameters())
    assert tok.vocab_size == model.args.vocab_size == 258
    assert json.loads(json.dumps(info.to_dict()))["fingerprint"] == info.fingerprint
    with torch.no_grad():
        assert model(torch.tensor([tok.encode("x")])).shape == (1, 2, 4, 258)


def test_load_converts_dtype_and_keeps_fingerprint(ckpt):
    model, _, info = load_mtp_checkpoint(ckpt, dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert info.dtype == "bfloat16" and info.stored_dtype == "float32"
    assert info.fingerprint == load_mtp_checkpoint(ckpt)[2].fingerprint


def test_fingerprint_sees_weights(copy, ckpt):
    edit(copy, state=lambda sd: sd["layers.0.attention.wq.weight"].mul_(2))
    assert load_mtp_checkpoint(copy)[2].fingerprint != load_mtp_checkpoint(ckpt)[2].fingerprint


def test_tolerates_rope_freqs_unknown_keys_and_vocab_minus_one(copy):
    edit(copy, params=lambda p: p.update(vocab_size=-1, max_batch_size=32, something_new="x"),
         state=lambda sd: sd.update({"rope.freqs": torch.zeros(8)}))
    model, tok, info = load_mtp_checkpoint(copy)
    assert info.args.vocab_size == tok.vocab_size == 258


def test_missing_n_future_tokens_is_detected_from_weights(copy):
    edit(copy, params=lambda p: p.pop("n_future_tokens"))
    assert load_mtp_checkpoint(copy)[0].n_future_tokens == 4


def test_tokenizer_found_in_parent_or_given(copy, tmp_path):
    (copy / "byte_tokenizer.json").rename(tmp_path / "byte_tokenizer.json")
    assert load_mtp_checkpoint(copy)[2].tokenizer_path == str(tmp_path / "byte_tokenizer.json")
    (tmp_path / "byte_tokenizer.json").rename(tmp_path / "elsewhere.json")
    with pytest.raises(UsageError, match="no tokenizer"):
        load_mtp_checkpoint(copy)
    assert load_mtp_checkpoint(copy, tokenizer_path=tmp_path / "elsewhere.json")[1].eos_id == 257


@pytest.mark.parametrize("change,message", [
    (dict(state=lambda sd: sd.pop("layers.1.feed_forward.w3.weight")), "missing key layers.1.feed_forward.w3.weight"),
    (dict(state=lambda sd: sd.update({"norm.weight": torch.ones(65)})), "key norm.weight has shape [65], expected [64]"),
    (dict(params=lambda p: p.update(n_future_tokens=2)), "n_future_tokens=2 but the weights have 4 head"),
    (dict(state=lambda sd: sd.pop("extra_heads.2.ffn_norm.weight")), "missing key extra_heads.2.ffn_norm.weight"),
    (dict(params=lambda p: p.update(n_layers=7)), "missing key layers.3.attention.wq.weight"),
    (dict(params=lambda p: p.update(n_kv_heads=None)), "key layers.0.attention.wk.weight has shape"),
    (dict(state=lambda sd: sd.update({"lm_head.weight": torch.ones(1)})), "unexpected key lm_head.weight"),
])
def test_bad_checkpoints_give_one_line_errors(copy, change, message):
    edit(copy, **change)
    with pytest.raises(UsageError) as e:
        load_mtp_checkpoint(copy)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_tokenizer_larger_than_the_model_is_refused(copy):
    (copy / "byte_tokenizer.json").write_text('{"bos_id": 256, "eos_id": 257, "vocab_size": 300}')
    with pytest.raises(UsageError, match="tokenizer has 300 ids but the model only 258"):
        load_mtp_checkpoint(copy)


def test_unreadable_files(copy, tmp_path):
    (copy / "consolidated.pth").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="cannot read"):
        load_mtp_checkpoint(copy)
    with pytest.raises(UsageError, match="not found"):
        load_mtp_checkpoint(tmp_path / "nowhere")
    (copy / "params.json").write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_mtp_checkpoint(copy)


def test_cli_make_tiny_inspect_convert(tmp_path, capsys):
    assert main(["checkpoint", "make-tiny", str(tmp_path / "m"), "--n-future", "2", "--layers", "3",
                 "--dim", "32", "--heads", "2", "--seed", "5"]) == 0
    assert "wrote" in capsys.readouterr().out
    params = json.loads((tmp_path / "m" / "params.json").read_text())
    assert (params["n_future_tokens"], params["n_layers"], params["dim"]) == (2, 3, 32)
    assert main(["checkpoint", "inspect", str(tmp_path / "m"), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["trunk_layers"] == 1 and len(facts["params_per_head"]) == 2 and facts["stored_dtype"] == "float32"
    assert main(["checkpoint", "inspect", str(tmp_path / "m")]) == 0
    assert "2 (head 1 = layers.1, 1 extra_heads)" in capsys.readouterr().out
    assert main(["checkpoint", "convert", str(tmp_path / "m"), "--to", "hf", str(tmp_path / "hf")]) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2 and (tmp_path / "hf" / "model.safetensors").is_file()
    assert main(["checkpoint", "make-tiny", str(tmp_path / "m")]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err


def test_resolve_model(tmp_path, monkeypatch, ckpt):
    monkeypatch.delenv("EVALHARNESS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = resolve_model("tiny", device="cpu")
    assert (spec.kind, spec.dtype) == ("mtp", torch.float32)
    assert spec.path == tmp_path / "cache" / "evalharness" / "tiny-0"
    monkeypatch.setenv("EVALHARNESS_CACHE_DIR", str(tmp_path / "one"))  # the variable task data uses wins
    assert resolve_model("tiny:2", device="cpu").path == tmp_path / "one" / "tiny-2"
    monkeypatch.setenv("EVALHARNESS_CACHE_DIR", str(tmp_path / "cache" / "evalharness"))
    first = (spec.path / "consolidated.pth").read_bytes()
    assert resolve_model("tiny:0", device="cpu").path == spec.path and resolve_model("tiny:1", "cpu").path.name == "tiny-1"
    assert load_mtp_checkpoint(spec.path)[0].n_future_tokens == 4
    (spec.path / "consolidated.pth").unlink()  # rebuilt identically
    assert (resolve_model("tiny", "cpu").path / "consolidated.pth").read_bytes() == first
    assert resolve_model(str(ckpt), "cpu").kind == "mtp"
    assert resolve_model(str(ckpt / "consolidated.pth"), "cpu").path == ckpt
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path / "hf"), "cpu").kind == "hf"
    for bad in (str(tmp_path / "nothing"), str(tmp_path), "tiny:x"):
        with pytest.raises(UsageError):
            resolve_model(bad, "cpu")


def file_mappings(path) -> list[tuple[int, int]]:
    """Address ranges where this process has `path` memory-mapped (Linux)."""
    ranges = []
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(path):
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_load_keeps_weights_in_the_mapped_file(ckpt):
    """No second copy: with matching dtype every parameter lives inside the mmap of consolidated.pth."""
    model, _, _ = load_mtp_checkpoint(ckpt)
    ranges = file_mappings((ckpt / "consolidated.pth").resolve())
    assert ranges
    for name, p in model.named_parameters():
        assert any(lo <= p.data_ptr() < hi for lo, hi in ranges), name


@pytest.mark.benchmark
def test_load_peak_memory_is_about_one_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_load.py"
    out = subprocess.run([sys.executable, str(script), "--mb", "100", "--json"], check=True,
                         capture_output=True, text=True).stdout
    ratio = json.loads(out)["ratio"]
    assert ratio["evalharness"] < 1.25 < 1.75 < ratio["anchor"]

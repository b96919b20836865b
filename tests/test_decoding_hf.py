"""The transformers backend: same Generator, same results as our transformer on the same weights."""
import pytest
import torch
from doubles import one_torch_thread  # noqa: F401

from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.decoding.finish import RowWatch
from evalharness.decoding.hf import load_hf_generator
from evalharness.errors import UsageError
from evalharness.models import convert_to_hf, load_mtp_checkpoint, make_tiny_checkpoint

PROMPTS = ["def add(a, b):\n", "import json\n\n\nclass Encoder:\n    def", "x = 1", "    return"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny random 2-head MTP checkpoint with a SentencePiece tokenizer, and its HF Llama conversion."""
    root = tmp_path_factory.mktemp("hf")
    mtp = make_tiny_checkpoint(root / "mtp", n_future=2, dim=64, n_layers=3, tokenizer="sentencepiece", seed=3)
    convert_to_hf(mtp, root / "hf", tokenizer_path=root / "mtp" / "tokenizer.model")
    return mtp, root / "hf"


def texts(generator, requests, settings, batch_size):
    got = dict(generator.generate(requests, settings, batch_size))
    return [(c.raw_text, c.tokens, c.finish_reason) for i in range(len(requests)) for c in got[i]]


def test_hf_backend_matches_our_transformer_on_the_same_weights(checkpoints):
    mtp_dir, hf_dir = checkpoints
    model, tok, _ = load_mtp_checkpoint(mtp_dir, device="cpu", dtype=torch.float32,
                                        tokenizer_path=mtp_dir / "tokenizer.model")
    ours = Generator(model, tok, "cpu")
    hf, record = load_hf_generator(hf_dir, "cpu", torch.float32, tokenizer=mtp_dir / "tokenizer.model")
    assert record.kind == "hf" and record.details["model_type"] == "llama" and record.fingerprint
    requests = [Request(p, 2, (5 + i, 9 + i), ("\n\n",)) for i, p in enumerate(PROMPTS)]
    for settings in (SamplingSettings(max_new_tokens=24), SamplingSettings(temperature=0.8, top_p=0.9, max_new_tokens=24)):
        reference = texts(ours, requests, settings, 8)
        assert texts(hf, requests, settings, 3) == reference  # right padding and n-fold fan-out through HF's cache
        assert texts(hf, requests, settings, 8) == reference


def test_hf_backend_greedy_equals_transformers_generate(checkpoints):
    _, hf_dir = checkpoints
    hf, _ = load_hf_generator(hf_dir, "cpu", torch.float32)
    model, tok = hf.model.model, hf.tokenizer
    for prompt in PROMPTS[:2]:
        ids = tok.encode(prompt)
        expected = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                  max_new_tokens=16, min_new_tokens=16, do_sample=False, eos_token_id=None,
                                  pad_token_id=0)[0, len(ids):].tolist()
        got = texts(hf, [Request(prompt, 1, (0,))], SamplingSettings(max_new_tokens=16), 1)[0]
        if tok.eos_id in expected:
            expected = expected[: expected.index(tok.eos_id) + 1]
        assert got[1] == len(expected) and got[0] == tok.decode_completion(ids, [t for t in expected if t != tok.eos_id])


def test_hf_loader_rejects_a_directory_without_config(tmp_path):
    with pytest.raises(UsageError, match="config.json"):
        load_hf_generator(tmp_path, "cpu")


def test_windowed_stop_checks_equal_decoding_everything(checkpoints):
    """RowWatch decodes only a window behind a few context tokens; with a real SentencePiece
    tokenizer (leading spaces, byte fallback) it must find what decoding everything finds."""
    mtp_dir, _ = checkpoints
    _, tok, _ = load_mtp_checkpoint(mtp_dir, device="cpu", tokenizer_path=mtp_dir / "tokenizer.model")
    stops = ("\ndef", "d é", "  # ok")
    text = "x = 1\n    return fé(x)  # ok\n\n\ndef g():\n    return 2\n# end é\n" * 2
    ids = tok.encode(text, bos=False)
    prompt = tok.encode("def f(x):\n    ")
    gen = torch.Generator().manual_seed(0)
    for trial in range(40):
        start = int(torch.randint(0, len(ids) - 10, (1,), generator=gen))
        tokens = ids[start:] + [int(t) for t in torch.randint(3, tok.vocab_size, (5,), generator=gen)]
        expected = next((t for t in range(1, len(tokens) + 1)
                         if any(s in tok.decode_completion(prompt, tokens[:t]) for s in stops)), None)
        watch, seen, finish = RowWatch(tok, prompt, stops, tok.eos_id, 10_000), 0, None
        while finish is None and seen < len(tokens):
            seen = min(len(tokens), seen + int(torch.randint(1, 9, (1,), generator=gen)))
            finish = watch.check(tokens[:seen])
        if expected is None:
            assert finish is None
        else:
            assert (finish.tokens, finish.raw_text) == (expected, tok.decode_completion(prompt, tokens[:expected]))


@pytest.mark.slow
def test_bench_decode_runs(monkeypatch, capsys):
    """The benchmark script stays runnable (tiny sizes; its figures are not asserted)."""
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_decode.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--dim", "64", "--layers", "5", "--new-tokens", "9",
                                      "--samples", "4", "--repeat", "1"])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "ratio" in out and "oracle drafts batch   1 k=4: tokens/forward  3.00" in out

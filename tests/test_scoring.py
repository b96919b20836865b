"""The scoring seam: standard scoring re-judges `suspicious` samples in strict mode where the problem is
served (the strict program in the sandbox, the checks here), and every row whose verdict rests on such a
decision says so. Honest programs pass; hostile ones never do, re-judged or not."""
import json
from dataclasses import dataclass, replace

import pytest

from evalharness import integrity
from evalharness.cli import main
from evalharness.pipeline import execute
from evalharness.records import Result, Sample
from evalharness.reports import status_label
from evalharness.sandboxes import Limits, Verdict
from evalharness.scoring import Program, Scoring, StandardScoring, StrictScoring
from evalharness.tasks import Task, TestProgram, load_task
from test_integrity import ALWAYS_EQUAL, FORGERIES

# Correct HumanEval/0 solutions that use words the sandbox's source markers flag.
HONEST = {
    "a helper class with __eq__": (
        "    class Point:\n        def __init__(self, x):\n            self.x = x\n\n"
        "        def __eq__(self, other):\n            return abs(self.x - other.x) < threshold\n\n"
        "    points = [Point(x) for x in numbers]\n"
        "    return any(points[i] == points[j] for i in range(len(points)) for j in range(i + 1, len(points)))\n"),
    "sys.exit in unreached code": (
        "    import sys\n    if not isinstance(numbers, list):\n        sys.exit(1)\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"),
}
WRONG = "    return False\n"
# A correct HumanEval/32 (whose checks loop over random inputs: strict mode cannot serve it) with a marker.
UNSERVED_HONEST = (
    "    class Bracket:\n        def __eq__(self, other):\n            return False\n\n"
    "    lo, hi = -1.0, 1.0\n    while poly(xs, lo) * poly(xs, hi) > 0:\n        lo, hi = 2 * lo, 2 * hi\n"
    "    while hi - lo > 1e-10:\n        mid = (lo + hi) / 2\n"
    "        if poly(xs, mid) * poly(xs, lo) > 0:\n            lo = mid\n        else:\n            hi = mid\n"
    "    return lo\n")
MARKED = "passed, but uses __eq__"


class ForceSuspicious:
    """The real pool, except that every clean pass comes back `suspicious`, as a source marker makes it:
    the re-judging path runs whatever the sandbox's markers are."""

    def __init__(self, pool):
        self.pool = pool

    def run(self, jobs, cancel=None):
        for key, verdict in self.pool.run(jobs, cancel):
            yield key, replace(verdict, status="suspicious", detail=MARKED) if verdict.passed else verdict


@pytest.fixture(scope="module")
def humaneval():
    return load_task("humaneval")


def judge(scoring, items, pool):
    """{index: result row} for (task_id, completion) items."""
    samples = [Sample(task_id, i, completion) for i, (task_id, completion) in enumerate(items)]
    return {r.sample_idx: r.to_row() for r in execute(scoring, samples, pool, Limits(cpu_s=3.0))}


def test_a_suspicious_honest_program_is_re_judged_in_strict_mode_and_passes(pool, humaneval):
    items = [("HumanEval/0", source) for source in HONEST.values()] + [("HumanEval/0", WRONG)]
    rows = judge(StandardScoring(humaneval), items, ForceSuspicious(pool))
    for i, name in enumerate(HONEST):
        assert rows[i]["passed"], (name, rows[i])
        decision = rows[i]["decision"]  # the marker is the sandbox's own where it has one (sys.exit)
        assert decision.startswith("suspicious in standard mode (passed, but uses ") and decision.endswith(
            "); re-judged in strict mode: passed"), decision
    assert rows[2]["status"] == "failed" and "decision" not in rows[2]  # a plain failure rests on the checks


def test_hostile_programs_do_not_pass_after_re_judging(pool, humaneval):
    hostile = {"always-equal object": ALWAYS_EQUAL, **FORGERIES,
               "always-equal object, __eq__ spelled out": (
                   "    class Yes:\n        def __eq__(self, other):\n            return True\n\n    return Yes()\n"),
               "always-equal object, and ascii rebound to forge the results line": (
                   ALWAYS_EQUAL + "\n\nimport builtins\nbuiltins.ascii = lambda value: repr([('ok', 'True')] * 7)\n")}
    rows = judge(StandardScoring(humaneval), [("HumanEval/0", s) for s in hostile.values()], ForceSuspicious(pool))
    labels = {name: (status_label(rows[i]), rows[i].get("decision")) for i, name in enumerate(hostile)}
    assert not any(rows[i]["passed"] for i in rows), labels
    assert labels["always-equal object"][0] == "error:NonLiteralResult"
    assert labels["always-equal object"][1].endswith("re-judged in strict mode: error:NonLiteralResult")


def test_where_strict_mode_cannot_serve_the_problem_the_sample_stays_suspicious(pool, humaneval):
    rows = judge(StandardScoring(humaneval), [("HumanEval/32", UNSERVED_HONEST)], ForceSuspicious(pool))
    assert rows[0]["status"] == "suspicious" and not rows[0]["passed"]
    assert rows[0]["decision"].startswith("suspicious; not re-judged: problem not served by strict mode (")
    assert "loop" in rows[0]["decision"]


@dataclass(frozen=True)
class ToyTask(Task):
    """A task with no literal checks at all (as EvalPlus's): nothing of it can be re-judged."""

    def test_programs(self, problem, completion):
        return {"test": TestProgram(text=completion, solution=completion, checks="")}


def test_a_task_without_literal_checks_keeps_suspicious_with_its_reason(pool, humaneval):
    toy = ToyTask("toy", "1", (replace(humaneval.problems[0], task_id="Toy/0"),))
    rows = judge(StandardScoring(toy), [("Toy/0", "assert 1 + 1 == 2\n")], ForceSuspicious(pool))
    assert rows[0]["status"] == "suspicious"
    assert rows[0]["decision"] == ("suspicious; not re-judged: problem not served by strict mode "
                                   "(task 'toy' has no literal checks)")


def test_strict_mode_judges_a_marked_program_by_its_results(pool, humaneval):
    """In a strict run the checks run here on literal results: a source marker does not fail an honest
    program, and the row says the sandbox found it suspicious."""
    strict = StrictScoring.for_run(humaneval)
    items = [("HumanEval/0", HONEST["a helper class with __eq__"]), ("HumanEval/0", ALWAYS_EQUAL)]
    rows = judge(strict, items, ForceSuspicious(pool))
    assert rows[0]["passed"] and rows[0]["decision"] == (
        f"suspicious in the sandbox ({MARKED}); judged by the checks in the parent: passed")
    assert status_label(rows[1]) == "error:NonLiteralResult"


def test_execute_passes_honest_programs_that_use_marked_words(tmp_path):
    """End to end with the sandbox's own markers: honest programs pass (they were `suspicious`, a failure,
    before); a re-judged row says so, and hostile ones still fail."""
    samples = tmp_path / "samples.jsonl"
    items = [("HumanEval/0", s) for s in HONEST.values()] + [
        ("HumanEval/0", "    class Yes:\n        def __eq__(self, other):\n            return True\n\n    return Yes()\n"),
        ("HumanEval/32", UNSERVED_HONEST)]
    samples.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in items))
    out = tmp_path / "run"
    assert main(["execute", str(samples), "--task", "humaneval", "--out", str(out), "--quiet"]) == 0
    rows = {(r["task_id"], r["sample_idx"]): r for r in map(json.loads, (out / "results.jsonl").open())}
    for key in (("HumanEval/0", 0), ("HumanEval/0", 1)):
        assert rows[key]["passed"], rows[key]
        assert rows[key].get("decision", "re-judged in strict mode: passed").endswith("re-judged in strict mode: passed")
    assert not rows[("HumanEval/0", 2)]["passed"]
    unserved = rows[("HumanEval/32", 0)]
    assert unserved["passed"] or "problem not served by strict mode" in unserved["decision"]


def test_a_new_way_of_judging_needs_no_change_to_the_pipeline(pool, humaneval):
    """A third scoring, defined here: the pipeline runs its programs and takes its results as they are."""

    class Lenient(Scoring):
        name = "lenient"

        def programs(self, problem, completion):
            return {"test": Program(problem.prompt + completion + "\nprint('ran')\n", keep_output=True)}

        def judge(self, key, problem, verdicts):
            verdict = verdicts["test"]
            return Result.from_verdicts(key, {"test": replace(verdict, detail=verdict.output.strip())}, ("test",))

    rows = judge(Lenient(humaneval), [("HumanEval/0", WRONG)], pool)
    assert rows[0]["passed"] and rows[0]["detail"] == "ran"


def test_the_standard_rows_of_unsuspicious_samples_are_unchanged(pool, humaneval):
    """Re-judging touches only suspicious samples: the rest are judged as before, with no decision."""
    rows = judge(StandardScoring(humaneval), [("HumanEval/0", WRONG), ("HumanEval/0", humaneval.problems[0].reference)],
                 pool)
    assert [(rows[i]["status"], "decision" in rows[i]) for i in (0, 1)] == [("failed", False), ("passed", False)]


def test_judge_of_a_suspicious_verdict_needs_every_result(humaneval):
    checks = StrictScoring(humaneval).checks(humaneval.problems[0])
    complete = "\n" + integrity.RESULTS_MARK + repr([("ok", "True")] * len(checks.calls)) + "\n"
    judged = integrity.judge(checks, Verdict("suspicious", detail=MARKED, output=complete))
    assert judged.status == "failed"  # judged by the checks (some expect False), not kept as suspicious
    stopped = Verdict("suspicious", "Introspection", "stopped at run-time introspection", output="partial")
    assert integrity.judge(checks, stopped) == replace(stopped, output="")


def test_a_results_row_carries_a_decision_only_when_there_is_one():
    assert "decision" not in Result("T/0", 0, "passed", True, None, 0.1, "").to_row()
    assert Result("T/0", 0, "passed", True, None, 0.1, "", decision="why").to_row()["decision"] == "why"

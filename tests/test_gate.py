import json

import pytest

from evalharness.cli import main
from test_reports_fixtures import greedy_outcomes, write_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    return {
        "baseline": write_run(root / "baseline", greedy_outcomes(164)),
        "same": write_run(root / "same", greedy_outcomes(164)),
        "flip15": write_run(root / "flip15", greedy_outcomes(164, flipped=15)),
        "flip1": write_run(root / "flip1", greedy_outcomes(164, flipped=1)),
        "partial": write_run(root / "partial", {k: v for k, v in list(greedy_outcomes(164).items())[:100]}),
        "other_task": write_run(root / "other", greedy_outcomes(164), task="mbpp", fingerprint="fp-other"),
        "sampled": write_run(root / "sampled", {f"Syn/{i}": [i % 3 != 0, i % 2 == 0] for i in range(164)}),
    }


def gate(capsys, run, baseline, *extra):
    code = main(["gate", str(run), "--baseline", str(baseline), *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_identical_run_passes(capsys, runs):
    code, out, _ = gate(capsys, runs["same"], runs["baseline"])
    assert code == 0
    assert "passed" in out and "| pass@1 |" in out


def test_fifteen_of_164_flipped_to_failing_fails_and_names_them(capsys, runs):
    code, out, _ = gate(capsys, runs["flip15"], runs["baseline"])
    assert code == 1
    assert "failed" in out and "Solved in baseline, unsolved in run** (15)" in out
    flipped = [f"Syn/{i}" for i in range(164) if i % 3 != 0][:15]
    assert all(f"`{t}`" in out for t in flipped)
    assert "McNemar exact" in out


def test_one_flip_is_not_significant_even_with_no_allowed_margin(capsys, runs):
    assert gate(capsys, runs["flip1"], runs["baseline"])[0] == 0
    code, out, _ = gate(capsys, runs["flip1"], runs["baseline"], "--max-drop", "0")
    assert code == 0 and "not significant" in out


def test_significant_drop_within_the_margin_passes(capsys, runs):
    assert gate(capsys, runs["flip15"], runs["baseline"], "--max-drop", "10")[0] == 0


def test_baseline_may_be_a_report_json_and_json_output_is_the_decision(capsys, runs, tmp_path):
    assert main(["report", str(runs["baseline"]), "--format", "json", "--out", str(tmp_path / "base.json")]) == 0
    capsys.readouterr()
    code, out, _ = gate(capsys, runs["flip15"], tmp_path / "base.json", "--format", "json")
    decision = json.loads(out)
    assert code == 1 and decision["passed"] is False and len(decision["lost"]) == 15
    assert decision["drop_points"] == pytest.approx(100 * 15 / 164)


def test_sampled_runs_use_the_paired_bootstrap(capsys, runs):
    code, out, _ = gate(capsys, runs["sampled"], runs["sampled"], "--format", "json")
    assert code == 0 and json.loads(out)["test"] == "paired bootstrap"


@pytest.mark.parametrize("case, args, message", [
    ("bad path", ["NOPE", "baseline"], "no run directory or report file"),
    ("bad baseline", ["same", "NOPE"], "no run directory or report file"),
    ("bad metric", ["same", "baseline", "--metric", "accuracy"], "unknown metric 'accuracy'"),
    ("k > n", ["same", "baseline", "--metric", "pass@10"], "not computable"),
    ("different tasks", ["other_task", "baseline"], "different tasks"),
    ("partial run", ["partial", "baseline"], "lacks 64 problem"),
    ("bad confidence", ["same", "baseline", "--confidence", "1.5"], "confidence must be between 0 and 1"),
])
def test_bad_input_exits_2_with_one_line(capsys, runs, tmp_path, case, args, message):
    run, baseline, *extra = args
    run = runs.get(run, tmp_path / run)
    baseline = runs.get(baseline, tmp_path / baseline)
    code, out, err = gate(capsys, run, baseline, *extra)
    assert code == 2, case
    assert err.startswith("evalharness: error:") and message in err and err.count("\n") == 1
    assert out == ""


def test_partial_run_can_be_gated_on_the_common_problems(capsys, runs):
    code, out, _ = gate(capsys, runs["partial"], runs["baseline"], "--allow-partial")
    assert code == 0 and "Not evaluated in the run (64)" in out


def test_compare_command_prints_the_paired_table(capsys, runs):
    assert main(["compare", str(runs["baseline"]), str(runs["flip15"]), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    m = result["metrics"]["pass@1"]
    assert m["difference"] == pytest.approx(-15 / 164) and len(result["lost"]) == 15
    assert main(["compare", str(runs["baseline"]), str(runs["other_task"])]) == 2
    assert "different tasks" in capsys.readouterr().err

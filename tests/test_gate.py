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


# ---- a gate CI can trust ---------------------------------------------------------------------------

def cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def stored_report(capsys, run, path):
    assert main(["report", str(run), "--format", "json", "--out", str(path)]) == 0
    capsys.readouterr()
    return json.loads(path.read_text())


@pytest.mark.parametrize("case, edit, message", [
    ("per_problem an int", lambda r: r.update(per_problem=3), "per_problem: 3 is not of type 'array'"),
    ("missing n", lambda r: r["per_problem"][0].pop("n"), "per_problem/0: 'n' is a required property"),
    ("n a string", lambda r: r["per_problem"][0].update(n="x"), "per_problem/0/n: 'x' is not of type 'integer'"),
    ("c above n", lambda r: r["per_problem"][0].update(c=5), "per_problem/0: c=5 > n=1"),
    ("estimate a string", lambda r: r["pass_at_k"]["pass@1"].update(estimate="high"), "pass_at_k/pass@1/estimate"),
    ("an empty object", lambda r: r.clear(), "top level: 'task' is a required property"),
])
def test_malformed_baseline_exits_2_with_one_line(capsys, runs, tmp_path, case, edit, message):
    report = stored_report(capsys, runs["baseline"], tmp_path / "base.json")
    edit(report)
    (tmp_path / "bad.json").write_text(json.dumps(report))
    r = cli("gate", runs["same"], "--baseline", tmp_path / "bad.json")
    assert r.returncode == 2, (case, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert "is not a valid report.json" in r.stderr


def test_report_json_written_by_report_validates_and_carries_the_header(capsys, runs, tmp_path):
    report = stored_report(capsys, runs["baseline"], tmp_path / "base.json")
    from evalharness.reports import validate_report

    assert validate_report(report) is report and report["schema_version"] == 2
    assert report["header"]["model"]["name"] == "tiny-mtp" and report["header"]["harness_version"] == "0.1.0"
    del report["header"]  # a schema-2 report must carry its header
    with pytest.raises(ValueError, match="'header' is a required property"):
        validate_report(report)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "x"])
def test_max_drop_must_be_finite_and_not_negative(runs, value):
    r = cli("gate", runs["flip15"], "--baseline", runs["baseline"], f"--max-drop={value}")
    assert r.returncode == 2 and "--max-drop" in r.stderr and "Traceback" not in r.stderr
    from evalharness import reports

    with pytest.raises(reports.ComparisonError, match="finite number >= 0"):
        reports.gate([], [], max_drop=float(value) if value != "x" else float("nan"))


def test_unwritable_out_is_exit_2_even_when_the_gate_passed(capsys, runs, tmp_path):
    for out, message in ((tmp_path, "is a directory"), (tmp_path / "missing" / "gate.md", "does not exist")):
        code, _, err = gate(capsys, runs["same"], runs["baseline"], "--out", str(out))
        assert code == 2 and message in err and err.count("\n") == 1


def test_exit_2_still_writes_a_short_out_file_saying_why(capsys, runs, tmp_path):
    out = tmp_path / "gate.md"
    code, _, err = gate(capsys, runs["other_task"], runs["baseline"], "--out", str(out))
    assert code == 2
    text = out.read_text()
    assert "not evaluated" in text and "different tasks" in text and "Exit code 2" in text
    code, _, _ = gate(capsys, runs["same"], tmp_path / "nope.json", "--out", str(out), "--format", "json")
    assert code == 2 and "no run directory or report file" in json.loads(out.read_text())["error"]


def test_limited_run_against_a_full_baseline_with_allow_partial(capsys, runs, tmp_path):
    """A --limit'ed run has its own task fingerprint (of the problems it covers): refused without
    --allow-partial, gated on the common problems with it."""
    limited = write_run(tmp_path / "limited", dict(list(greedy_outcomes(164).items())[:40]),
                        fingerprint="fp-first-40")
    code, _, err = gate(capsys, limited, runs["baseline"])
    assert code == 2 and "--allow-partial" in err
    code, out, err = gate(capsys, limited, runs["baseline"], "--allow-partial")
    assert code == 0 and "Not evaluated in the run (124)" in out
    assert "task fingerprints differ" in err and "task fingerprints differ" in out


def test_gate_names_both_runs_and_warns_when_decoding_differs(capsys, runs, tmp_path):
    other = write_run(tmp_path / "other", greedy_outcomes(164), model="big-mtp")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["decoding"] = {"passes": [{"temperature": 0.0, "n": 1}], "max_new_tokens": 256, "speculative": 4}
    (other / "manifest.json").write_text(json.dumps(manifest))
    base = json.loads((runs["baseline"] / "manifest.json").read_text())
    base["decoding"] = {"passes": [{"temperature": 0.0, "n": 1}], "max_new_tokens": 512, "speculative": 0}
    (tmp_path / "base").mkdir()
    for name in ("samples.jsonl", "results.jsonl"):
        (tmp_path / "base" / name).write_bytes((runs["baseline"] / name).read_bytes())
    (tmp_path / "base" / "manifest.json").write_text(json.dumps(base))
    code, out, err = gate(capsys, other, tmp_path / "base")
    assert code == 0
    assert "- **baseline**: tiny-mtp (greedy, 512 new tokens)" in out
    assert "- **run**: big-mtp (greedy, speculative 4, 256 new tokens)" in out
    assert "warning: decoding settings differ: max_new_tokens: 512 vs 256" in err
    assert "speculative: 0 vs 4" in err and "decoding settings differ" in out
    assert main(["compare", str(tmp_path / "base"), str(other)]) == 0
    shown = capsys.readouterr()
    assert "- **A**: tiny-mtp (greedy, 512 new tokens)" in shown.out and "decoding settings differ" in shown.err


def test_gate_on_speed_figures_with_a_tolerance(capsys, runs, tmp_path):
    base = stored_report(capsys, runs["baseline"], tmp_path / "base.json")
    base["speed"] = {"tokens_per_forward": 2.90, "tokens_per_s": 1000.0}
    (tmp_path / "base.json").write_text(json.dumps(base))
    for tpf, tps, metric, max_drop, expected in [(2.85, 990.0, "tokens_per_forward", "5", 0),
                                                 (2.00, 990.0, "tokens_per_forward", "5", 1),
                                                 (2.85, 800.0, "tokens_per_s", "10", 1),
                                                 (2.85, 950.0, "tokens/s", "10", 0)]:
        run = {**base, "speed": {"tokens_per_forward": tpf, "tokens_per_s": tps}}
        (tmp_path / "run.json").write_text(json.dumps(run))
        code, out, _ = gate(capsys, tmp_path / "run.json", tmp_path / "base.json", "--metric", metric,
                            "--max-drop", max_drop)
        assert code == expected, (metric, tpf, tps, out)
        assert "tolerance" in out
    (tmp_path / "run.json").write_text(json.dumps({**base, "speed": None}))
    code, _, err = gate(capsys, tmp_path / "run.json", tmp_path / "base.json", "--metric", "tokens_per_s")
    assert code == 2 and "no tokens per second figure" in err


def test_a_real_limited_run_gates_against_the_full_run_with_allow_partial(capsys, tmp_path):
    """Real task fingerprints: `--limit 10` fingerprints the first 10 problems, not the task."""
    full, limited = tmp_path / "full", tmp_path / "limited"
    assert main(["execute", "--task", "humaneval", "--reference", "--out", str(full), "--quiet"]) == 0
    assert main(["execute", "--task", "humaneval", "--reference", "--limit", "10", "--out", str(limited),
                 "--quiet"]) == 0
    capsys.readouterr()
    fingerprints = {json.loads((d / "report.json").read_text())["task_fingerprint"] for d in (full, limited)}
    assert len(fingerprints) == 2
    code, _, err = gate(capsys, limited, full / "report.json")
    assert code == 2 and "--allow-partial" in err
    code, out, _ = gate(capsys, limited, full / "report.json", "--allow-partial")
    assert code == 0 and "Not evaluated in the run (154)" in out and "did not drop" in out


def test_a_report_of_0_1_without_header_is_still_a_baseline(capsys, runs, tmp_path):
    old = stored_report(capsys, runs["baseline"], tmp_path / "base.json")
    for key in ("schema_version", "header", "truncated", "decoding_stats"):
        old.pop(key, None)
    for entry in old["pass_at_k"].values():
        entry.pop("interval", None)
    old["bootstrap"]["method"] = "percentile, resampling problems"
    (tmp_path / "old.json").write_text(json.dumps(old))
    code, out, _ = gate(capsys, runs["flip15"], tmp_path / "old.json")
    assert code == 1 and "- **baseline**: baseline (a report without a header: made by 0.1.x)" in out
    assert "- **run**: tiny-mtp" in out

import json

import pytest

from evalharness.cli import main
from test_reports_fixtures import outcome_rows, write_run


def test_report_command_rebuilds_and_writes_into_the_run(capsys, tmp_path):
    run = write_run(tmp_path / "run", {"Syn/0": [True, "error:KeyError", False], "Syn/1": [False, True, True]})
    (run / "report.json").write_text(json.dumps({"speed": {"tokens_per_s": 99.0}, "ks": [1, 2],
                                                 "model_note": "kept"}))
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# synthetic: evaluation report") and "| pass@2 |" in out
    report = json.loads((run / "report.json").read_text())
    assert report["ks"] == [1, 2] and report["speed"] == {"tokens_per_s": 99.0} and report["model_note"] == "kept"
    assert report["pass_at_k"]["pass@1"]["estimate"] == pytest.approx(0.5) and (run / "report.md").read_text().strip() == out.strip()

    assert main(["report", str(run), "--format", "html", "--k", "1,3"]) == 0
    assert capsys.readouterr().out.strip() == str(run / "report.html")
    assert "data:image/png;base64," in (run / "report.html").read_text()
    assert json.loads((run / "report.json").read_text())["ks"] == [1, 3]

    assert main(["report", str(run), "--format", "json", "--out", "-", "--confidence", "0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["confidence"] == 0.5


def test_speed_comes_from_sample_stats_when_no_report_has_it(capsys, tmp_path):
    run = write_run(tmp_path / "run", {"Syn/0": [True, False]})
    assert main(["report", str(run), "--format", "json", "--out", "-"]) == 0
    speed = json.loads(capsys.readouterr().out)["speed"]
    # each fixture sample: 7 tokens, 4 forwards, draft heads accepted [2, 1] of 4 drafts each
    assert speed["tokens_per_forward"] == 7 / 4 and speed["acceptance_per_head"] == [1.0, 2 / 4, 1 / 4]


def test_report_command_bad_input_exits_2(capsys, tmp_path):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    samples, _ = outcome_rows({"Syn/0": [True]})
    run = write_run(tmp_path / "noresults", samples=samples, results=[])
    assert main(["report", str(run)]) == 2
    assert "no results yet" in capsys.readouterr().err
    assert main(["report", str(run), "--confidence", "2"]) == 2


def test_terminal_summary_aligns_suites_and_prints_a_speed_line(tmp_path):
    import io

    from evalharness import reports
    from evalharness.summary import print_summary

    samples, rows = outcome_rows({f"P/{i}": [i % 2 == 0] for i in range(6)}, 0.0)
    for r in rows:
        r["suites"] = {"base": {"status": r["status"], "passed": r["passed"], "error_type": None},
                       "plus": {"status": r["status"], "passed": r["passed"], "error_type": None}}
    report = reports.build_report(rows, task="humaneval-plus", task_fingerprint="fp", problem_ids=[f"P/{i}" for i in range(6)],
                                  ks=(1, 10), samples=samples, speed={"tokens_per_forward": 1.75, "tokens_per_s": 812.4},
                                  header=reports.report_header({"model": {"spec": "demo", "n_future_tokens": 4},
                                                                "decoding": {"passes": [{"temperature": 0, "n": 1}],
                                                                             "speculative": 3, "max_new_tokens": 512}}))
    out = io.StringIO()
    print_summary(report, tmp_path, file=out)
    lines = out.getvalue().splitlines()
    assert lines[1] == "model: demo (greedy, speculative 3, 512 new tokens)"
    table = [line for line in lines if "pass@1" in line and "not computable" not in line]
    assert [line.split()[0:2] for line in table] == [["pass@1", "50.0"], ["base", "pass@1"], ["plus", "pass@1"]]
    assert len({line.index("50.0") for line in table}) == 1  # the estimates line up
    assert "not computable: pass@10, base pass@10, plus pass@10 (k=10 > n=1 samples for some problems)" in lines
    assert "speed: 1.75 tokens per forward, 812 tokens/s; draft acceptance heads 2-3: 50% 25%" in lines
    assert not any("n/a" in line for line in lines)


def test_readme_explains_every_status_a_report_can_show():
    import re
    from pathlib import Path

    from evalharness.sandboxes import STATUSES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("**Statuses.**"):]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    assert documented[:len(STATUSES)] == list(STATUSES)

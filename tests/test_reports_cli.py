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

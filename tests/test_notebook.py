import json
import math

import pandas as pd
import pytest

from evalharness.cli import main
from evalharness.notebook import load_run, load_runs, plot_runs
from test_reports_fixtures import greedy_outcomes, outcome_rows, write_run


def records(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows back as JSON-like dicts; cells that are missing (NaN/NA) are dropped."""
    out = []
    for row in df.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
                continue
            clean[key] = value.item() if hasattr(value, "item") else value
        out.append(clean)
    return out


def without_none(row: dict) -> dict:
    return {k: v for k, v in row.items() if v is not None}


def test_load_run_round_trips_every_field(tmp_path):
    samples, results = outcome_rows({"Syn/0": [True, "error:ZeroDivisionError"], "Syn/1": ["timeout"]}, 0.8)
    samples[0]["model_extra"] = {"nested": [1, 2]}
    results[0]["suites"] = {"base": {"status": "passed", "passed": True, "error_type": None},
                            "plus": {"status": "passed", "passed": True, "error_type": None}}
    path = write_run(tmp_path / "run", samples=samples, results=results)
    run = load_run(path)
    assert run.manifest == json.loads((path / "manifest.json").read_text())
    assert records(run.samples) == [without_none(r) for r in samples]
    assert records(run.results) == [without_none(r) for r in results]
    assert run.results["status"].dtype == "category"
    assert run.samples["sample_idx"].dtype == "int64" and run.results["sample_idx"].dtype == "int64"
    assert run.results["temperature"].dtype == "float64"
    assert run.samples["finish_reason"].dtype == "category"
    assert main(["report", str(path), "--format", "json"]) == 0
    assert load_run(path).report == json.loads((path / "report.json").read_text())


def test_truncated_last_line_is_ignored(tmp_path):
    path = write_run(tmp_path / "run", {"Syn/0": [True, False, True]})
    with open(path / "results.jsonl", "a") as f:
        f.write('{"task_id": "Syn/0", "sample_idx": 3, "sta')
    run = load_run(path)
    assert len(run.results) == 3 and run.report["n_samples"] == 3


def test_problems_pass_at_k_and_compare(tmp_path):
    a = load_run(write_run(tmp_path / "a", greedy_outcomes(30)))
    b = load_run(write_run(tmp_path / "b", greedy_outcomes(30, flipped=5), model="other-mtp"))
    problems = a.problems
    assert list(problems.columns[:3]) == ["task_id", "n", "c"] and len(problems) == 30
    assert problems["n"].dtype == "int64" and problems["pass@1"].dtype == "float64"
    assert problems["solve_rate"].mean() == pytest.approx(20 / 30)
    assert problems["pass@10"].isna().all()  # n = 1 < 10
    table = a.pass_at_k([1, 10], confidence=0.8)
    assert table.loc["pass@1", "estimate"] == pytest.approx(20 / 30)
    assert table.loc["pass@1", "ci_low"] < table.loc["pass@1", "estimate"] < table.loc["pass@1", "ci_high"]
    assert not table.loc["pass@10", "computable"]
    wide = a.pass_at_k([1], confidence=0.99)
    assert wide.loc["pass@1", "ci_high"] - wide.loc["pass@1", "ci_low"] > \
        table.loc["pass@1", "ci_high"] - table.loc["pass@1", "ci_low"]
    cmp = a.compare(b)
    assert isinstance(cmp, pd.DataFrame) and list(cmp.index) == ["pass@1", "pass@10", "pass@100"]
    assert math.isnan(cmp.loc["pass@10", "difference"]) and "k=10 > n=1" in cmp.loc["pass@10", "reason"]
    assert cmp.loc["pass@1", "difference"] == pytest.approx(-5 / 30) and cmp.loc["pass@1", "test"] == "McNemar exact"
    assert len(cmp.attrs["lost"]) == 5 and cmp.attrs["b"] == "other-mtp"


def test_the_api_is_listed_and_a_run_is_one_short_line(tmp_path):
    import evalharness

    assert {"load_run", "load_runs", "plot_runs", "Run", "__version__"} <= set(dir(evalharness))
    run = load_run(write_run(tmp_path / "run", greedy_outcomes(30)))
    text = repr(run)
    assert "\n" not in text and len(text) < 200 and text.startswith("<Run synthetic: tiny-mtp")
    assert "pass@1 66.7%" in text


def test_samples_joined_with_their_results(tmp_path):
    samples, results = outcome_rows({"Syn/0": [True, "error:KeyError"], "Syn/1": ["timeout"]}, 0.8)
    run = load_run(write_run(tmp_path / "run", samples=samples, results=results))
    joined = run.joined()
    assert len(joined) == 3 and {"completion", "finish_reason", "status", "passed", "error_type"} <= set(joined)
    row = joined[(joined["task_id"] == "Syn/0") & (joined["sample_idx"] == 1)].iloc[0]
    assert row["status"] == "error" and row["error_type"] == "KeyError" and "Syn/0" in row["completion"]


def test_load_runs_is_tidy_takes_any_k_and_skips_unfinished_runs(tmp_path):
    write_run(tmp_path / "runs" / "one", {f"Syn/{i}": [i % 2 == 0] * 3 + [False] for i in range(20)}, model="small")
    write_run(tmp_path / "runs" / "two", {f"Syn/{i}": [i % 3 == 0] * 4 for i in range(20)}, model="big")
    (tmp_path / "runs" / "not_a_run").mkdir()
    samples, _ = outcome_rows({"Syn/0": [True]})
    write_run(tmp_path / "runs" / "unfinished", samples=samples, results=[])
    with pytest.warns(UserWarning) as caught:
        df = load_runs(str(tmp_path / "runs" / "*"), ks=(1, 3))
    messages = " ".join(str(w.message) for w in caught)
    assert "not_a_run" in messages and "unfinished" in messages and "no results yet" in messages
    assert len(df) == 4 and list(df["metric"]) == ["pass@1", "pass@3"] * 2
    assert list(df.columns[:10]) == ["path", "run", "task", "model", "decoding", "metric", "k", "estimate",
                                     "ci_low", "ci_high"]
    one = df[(df["model"] == "small") & (df["metric"] == "pass@3")].iloc[0]
    assert one["estimate"] == pytest.approx(0.5) and one["ci_low"] <= one["estimate"] <= one["ci_high"]
    assert one["tokens_per_forward"] == pytest.approx(1.75) and one["heads"] == 2
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_runs(df, "pass@1")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["small", "big"]


def test_load_runs_takes_a_list_and_bad_ks_are_one_clear_error(tmp_path):
    """Before: load_runs(["runs/a", "runs/b"]) globbed the list's repr and returned an empty frame without
    a word; pass_at_k(ks=(0,)) reported a "pass@0" and ks=() died with KeyError 'estimate'."""
    a = write_run(tmp_path / "a", {f"Syn/{i}": [i % 2 == 0] * 2 for i in range(6)}, model="small")
    b = write_run(tmp_path / "b", {f"Syn/{i}": [True] * 2 for i in range(6)}, model="big")
    df = load_runs([str(a), b, str(tmp_path / "?")], ks=(1,))  # a path twice (itself and by glob): once
    assert list(df["model"]) == ["small", "big"] and list(df["metric"]) == ["pass@1"] * 2
    for ks in [(0,), (), (1, -2), (1.5,), (True,)]:
        with pytest.raises(ValueError, match="ks must be one or more integers >= 1"):
            load_run(a).pass_at_k(ks=ks)
        with pytest.raises(ValueError, match="ks must be"):
            load_runs(str(a), ks=ks)
    assert list(load_run(a).pass_at_k(ks=2).index) == ["pass@2"]

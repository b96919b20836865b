"""The README's GitHub Actions workflow, run as CI would run its shell steps, against tiny runs.

The steps are taken from the README's YAML as they stand; only `evalharness run` gets a
`--limit` (a shell function in front of each step), so the job takes seconds on a CPU.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 5
# What a test changes about the README's commands: fewer problems and tokens for `run`.
SHIM = (f'evalharness() {{ if [ "$1" = run ]; then "{sys.executable}" -m evalharness "$@" --limit {LIMIT} '
        f'--max-new-tokens 24 --quiet; else "{sys.executable}" -m evalharness "$@"; fi; }}\n')


def workflow_steps() -> list[dict]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### GitHub Actions"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return yaml.safe_load(block)["jobs"]["eval-gate"]["steps"]


def run_job(workdir: Path, baseline: Path) -> tuple[int, str, str]:
    """Run the shell steps in order, stopping at the first failure, as Actions does outside a pull
    request (the comment step's `if` is false there; `pip install -e .` is this checkout already)."""
    summary, output = workdir / "summary.md", workdir / "output.txt"
    env = {**os.environ, "CHECKPOINT": "tiny", "BASELINE_REPORT": str(baseline),
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    code = 0
    for step in workflow_steps():
        script = step.get("run")
        if script is None or "pip install" in script or "github.event_name == 'pull_request'" in step.get("if", ""):
            continue
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", SHIM + script],
                              cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode != 0:
            code = proc.returncode
            break
    read = lambda p: p.read_text(encoding="utf-8") if p.exists() else ""  # noqa: E731
    return code, read(summary), read(output)


@pytest.fixture(scope="module")
def candidate_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("first") / "run"
    r = subprocess.run([sys.executable, "-m", "evalharness", "run", "--model", "tiny", "--task", "humaneval",
                        "--out", str(out), "--limit", str(LIMIT), "--max-new-tokens", "24", "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "report.json").read_text())


def test_the_workflow_passes_against_an_equal_baseline(tmp_path, candidate_report):
    (tmp_path / "base.json").write_text(json.dumps(candidate_report))
    code, summary, output = run_job(tmp_path, tmp_path / "base.json")
    assert code == 0 and "Regression gate ✅ passed" in summary and "code=0" in output
    assert "- **baseline**: tiny (greedy, 24 new tokens)" in summary


def test_the_workflow_fails_on_a_significant_drop(tmp_path, candidate_report):
    solved = {**candidate_report, "per_problem": [{**r, "c": r["n"], "pass@1": 1.0}
                                                  for r in candidate_report["per_problem"]]}
    assert not any(r["c"] for r in candidate_report["per_problem"]), "the tiny model solves nothing"
    (tmp_path / "base.json").write_text(json.dumps(solved))
    code, summary, output = run_job(tmp_path, tmp_path / "base.json")
    assert code == 1 and "Regression gate ❌ failed" in summary and "code=1" in output
    assert f"Solved in baseline, unsolved in run** ({LIMIT})" in summary


def test_the_workflow_stops_with_2_on_a_malformed_baseline(tmp_path, candidate_report):
    (tmp_path / "base.json").write_text(json.dumps({**candidate_report, "per_problem": 7}))
    code, summary, output = run_job(tmp_path, tmp_path / "base.json")
    assert code == 2 and "not evaluated" in summary and "per_problem" in summary and "code=2" in output

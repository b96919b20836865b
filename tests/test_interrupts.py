"""Ctrl-C and SIGTERM, sent to real `run`, `generate` and `execute` processes as a terminal or a CI
runner sends them: one line on stderr and exit 130 / 143, never a traceback; no row written after
the run's lock is released, none finished lost; no sandbox worker left; a re-run resumes to the
uninterrupted run's samples, results and report."""
import fcntl
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

# Long enough that generation outlasts the 2 s flush interval: a signal lands mid-generation.
SETTINGS = ("--task", "humaneval", "--limit", "6", "--n", "8", "--temperature", "0.8", "--max-new-tokens", "160",
            "--seed", "7", "--quiet")
TOTAL = 6 * 8
SLOW = "    import time\n    time.sleep(0.4)\n    return None\n"  # a completion that takes a while to judge


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny4"
    make_tiny_checkpoint(path, n_future=4, tokenizer="bytes", seed=3)
    return path


def command(name, tiny, out):
    model = ("--model", str(tiny)) if name != "execute" else ()
    workers = ("--workers", "1") if name != "generate" else ()
    return [name, *model, *SETTINGS, *workers, "--out", str(out)]


def cli(args):
    return subprocess.run([sys.executable, "-m", "evalharness", *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def whole(tiny, tmp_path_factory):
    """An uninterrupted run, the reference every resumed one must equal."""
    out = tmp_path_factory.mktemp("whole") / "run"
    r = cli(command("run", tiny, out))
    assert r.returncode == 0, r.stderr
    return out


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()] if path.exists() else []


def by_key(items, drop=()):
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in items),
                  key=lambda r: (r["task_id"], r["sample_idx"], r.get("temperature") or 0))


def stable(report):
    """The report less timings and its date."""
    return {k: v if k != "header" else {**v, "created": None} for k, v in report.items()
            if k not in ("speed", "slowest_problems", "failure_taxonomy")}


def count(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def lock_is_free(out: Path) -> bool:
    with open(out / ".lock", "ab") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def descendants(root: int) -> set[int]:
    """Every live process below `root` (sandbox workers, bwrap, forkers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


class Signalled:
    """What a signalled command did: exit code, stderr, and the run directory as it stood when its
    lock came free (None: the lock was still held at exit, released with the process)."""

    def __init__(self, args, out: Path, ready, signals, gap_s=0.05, settle_s=0.0):
        proc = subprocess.Popen([sys.executable, "-m", "evalharness", *args], start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.children: set[int] = set()
        deadline = time.monotonic() + 300
        while proc.poll() is None and not ready(out) and time.monotonic() < deadline:
            self.children |= descendants(proc.pid)
            time.sleep(0.002)
        if proc.poll() is not None:
            pytest.skip(f"{args[0]} finished before the signal could land")
        time.sleep(settle_s)
        self.rows_at_signal = count(out / "results.jsonl")
        for i, signum in enumerate(signals):
            time.sleep(gap_s if i else 0)
            os.killpg(proc.pid, signum)  # as a terminal sends Ctrl-C: to the foreground process group
        self.at_release = None
        while proc.poll() is None:
            self.children |= descendants(proc.pid)
            if self.at_release is None and (out / "manifest.json").exists() and lock_is_free(out):
                self.at_release = {n: (out / n).read_bytes() for n in ("samples.jsonl", "results.jsonl")
                                   if (out / n).exists()}
            time.sleep(0.002)
        self.code = proc.returncode
        self.stderr = proc.stderr.read()
        proc.stderr.close()

    def assert_clean_exit(self, code: int, word: str) -> None:
        assert self.code == code, (self.code, self.stderr)
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("evalharness: ") and word in lines[0], self.stderr
        deadline = time.monotonic() + 5  # workers die with their lifeline pipe, a moment after the harness
        while running(self.children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(self.children), "sandbox workers outlived the harness"


def assert_same_run(out: Path, whole: Path) -> None:
    results = rows(out / "results.jsonl")
    assert len({(r["task_id"], r["sample_idx"]) for r in results}) == len(results) == TOTAL
    assert by_key(rows(out / "samples.jsonl")) == by_key(rows(whole / "samples.jsonl"))
    drop = ("duration_s", "detail")
    assert by_key(results, drop) == by_key(rows(whole / "results.jsonl"), drop)
    assert stable(json.loads((out / "report.json").read_text())) == stable(
        json.loads((whole / "report.json").read_text()))


def mid_generation(out: Path) -> bool:
    return 0 < count(out / "samples.jsonl") < TOTAL


def test_ctrl_c_while_the_commands_load_is_one_line(tiny, tmp_path):
    """The CLI imports its commands (numpy, the reports, the sandbox) before any work: a Ctrl-C
    then was a KeyboardInterrupt traceback out of an import."""
    proc = subprocess.Popen([sys.executable, "-m", "evalharness", *command("run", tiny, tmp_path / "run")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and "_multiarray_umath" not in maps.read_text():
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines() == ["evalharness: interrupted; re-run the same command to resume"], err


@pytest.mark.parametrize("name, signals, code, word", [
    ("run", (signal.SIGINT, signal.SIGINT), 130, "interrupted"),  # Ctrl-C twice in quick succession
    pytest.param("run", (signal.SIGTERM,), 143, "terminated",  # a CI runner's timeout; generate's case below
                 marks=pytest.mark.slow),  # takes the same way out (5 s saved in the default suite)
    ("generate", (signal.SIGTERM,), 143, "terminated"),
])
def test_signals_mid_generation_end_cleanly_and_a_rerun_resumes(tiny, whole, tmp_path, name, signals, code, word):
    out = tmp_path / "run"
    args = command(name, tiny, out)
    got = Signalled(args, out, mid_generation, signals)
    got.assert_clean_exit(code, word)
    if got.at_release is not None:  # released before the exit: nothing written after
        assert {n: (out / n).read_bytes() for n in got.at_release} == got.at_release
    assert count(out / "samples.jsonl") < TOTAL

    resumed = cli(args)
    assert resumed.returncode == 0, resumed.stderr
    if name == "generate":
        assert by_key(rows(out / "samples.jsonl")) == by_key(rows(whole / "samples.jsonl"))
    else:
        assert_same_run(out, whole)


def slow_copy(whole: Path, out: Path, slow: int) -> None:
    """The whole run's samples, the first `slow` completions sleeping a while (the rest return at
    once), and no results yet: re-running `run` there only executes, in this order."""
    out.mkdir()
    for name in ("manifest.json", "prompts.json"):
        shutil.copy(whole / name, out)
    samples = [{**r, "completion": SLOW if i < slow else "    return None\n"}
               for i, r in enumerate(rows(whole / "samples.jsonl"))]
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))


def test_ctrl_c_while_run_executes_keeps_every_result_and_writes_none_after_the_lock(tiny, whole, tmp_path):
    """The execution thread appends results while the main thread waits for it. A Ctrl-C there
    used to release the lock at once, leaving the thread to start a new sandbox worker and its
    unflushed results to be lost with the process; now the results that finished before the
    signal are on disk before the lock is released, and nothing after."""
    out = tmp_path / "run"
    slow_copy(whole, out, slow=12)
    args = command("run", tiny, out)
    # the first results reach disk ~2 s in (the flush interval); 0.9 s later two more have finished
    got = Signalled(args, out, lambda d: count(d / "results.jsonl") > 0, (signal.SIGINT,), settle_s=0.9)
    got.assert_clean_exit(130, "interrupted")
    assert got.at_release is not None, "the lock was held until the process ended"
    assert {n: (out / n).read_bytes() for n in got.at_release} == got.at_release
    done = rows(out / "results.jsonl")
    assert got.rows_at_signal < len(done) < TOTAL  # the unflushed rows were flushed, not lost

    resumed = cli(args)
    assert resumed.returncode == 0, resumed.stderr
    results = rows(out / "results.jsonl")
    assert len({(r["task_id"], r["sample_idx"]) for r in results}) == len(results) == TOTAL
    assert results[:len(done)] == done  # kept as they were, the rest executed once


@pytest.mark.slow  # 7 s; the default suite stops execution with Ctrl-C in `run` above
def test_sigterm_while_execute_runs_ends_cleanly_and_a_rerun_resumes(whole, tmp_path):
    """`execute` judges in the main thread: SIGTERM there is 143 and one line, not death by signal."""
    samples = tmp_path / "slow.jsonl"
    samples.write_text("".join(json.dumps({"task_id": r["task_id"], "completion": SLOW}) + "\n"
                               for r in rows(whole / "samples.jsonl") if r["sample_idx"] < 2))
    out = tmp_path / "run"
    args = ["execute", str(samples), "--task", "humaneval", "--limit", "6", "--workers", "1", "--quiet",
            "--out", str(out)]
    got = Signalled(args, out, lambda d: count(d / "results.jsonl") > 0, (signal.SIGTERM,))
    got.assert_clean_exit(143, "terminated")
    assert count(out / "results.jsonl") < 12

    resumed = cli(args)
    assert resumed.returncode == 0, resumed.stderr
    results = rows(out / "results.jsonl")
    assert len({(r["task_id"], r["sample_idx"]) for r in results}) == len(results) == 12


def test_ctrl_c_while_a_report_is_written_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    """Reports are written last, so an interrupt often lands in their write: it left
    `.report.json.tmp` beside the run's files."""
    from evalharness import runstore

    target = tmp_path / "report.json"
    target.write_text("old\n")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(runstore.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runstore.write_file_atomic(target, "new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"] and target.read_text() == "old\n"

import json

import pytest

from evalharness.errors import UsageError
from evalharness.runstore import JsonlAppender, RunDir, row_key, read_jsonl


def test_truncated_last_line_is_ignored_and_cut_before_append(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"task_id": "a", "sample_idx": 0}\n{"task_id": "a", "sam')
    assert [r["sample_idx"] for r in read_jsonl(path)] == [0]
    with JsonlAppender(path) as log:
        log.append({"task_id": "a", "sample_idx": 1})
    assert [r["sample_idx"] for r in read_jsonl(path, strict=True)] == [0, 1]


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(UsageError, match=":2: invalid JSON"):
        read_jsonl(path)


def test_appender_flushes_in_batches(tmp_path):
    path = tmp_path / "r.jsonl"
    log = JsonlAppender(path, batch=3, interval_s=1e9)
    for i in range(4):
        log.append({"i": i})
    assert len(read_jsonl(path)) == 3  # the fourth is still in the batch in flight
    log.close()
    assert len(read_jsonl(path)) == 4


def test_key_includes_temperature():
    assert row_key({"task_id": "t", "sample_idx": 3}) == ("t", 3, None)
    assert row_key({"task_id": "t", "sample_idx": 3, "temperature": 0.8}) == ("t", 3, 0.8)


def test_manifest_identity_must_match(tmp_path):
    run = RunDir(tmp_path / "run")
    run.open({"command": "execute"}, {"task": "humaneval", "task_fingerprint": "abc"})
    run.open({"command": "execute"}, {"task": "humaneval", "task_fingerprint": "abc"})  # resume: fine
    with pytest.raises(UsageError, match="task: \"humaneval\" there, \"mbpp\" here"):
        run.open({"command": "execute"}, {"task": "mbpp", "task_fingerprint": "abc"})
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["identity"]["task"] == "humaneval"


def test_refuses_non_empty_directory_without_manifest(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match="non-empty directory"):
        RunDir(tmp_path).open({}, {})
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_directory_holding_only_our_leftover_temp_manifest_is_a_fresh_run(tmp_path):
    """A kill or a full disk at the manifest's write leaves only .manifest.json.tmp: recoverable."""
    run_path = tmp_path / "run"
    run_path.mkdir()
    (run_path / ".manifest.json.tmp").write_text('{"harness_version": "0.1')  # torn by the crash
    run = RunDir(run_path)
    run.open({"command": "execute"}, {"task": "humaneval"})
    run.close()
    assert sorted(p.name for p in run_path.iterdir()) == [".lock", "manifest.json"]
    assert json.loads((run_path / "manifest.json").read_text())["identity"] == {"task": "humaneval"}


def test_a_foreign_file_beside_our_leftovers_is_still_refused(tmp_path):
    (tmp_path / ".manifest.json.tmp").write_text("{")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="non-empty directory .*notes.txt"):
        RunDir(tmp_path).open({}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".manifest.json.tmp", "notes.txt"]  # no lock left in it


def test_a_failed_manifest_write_is_one_line_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import errno
    import os

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("evalharness.runstore.os.fsync", full_disk)
    with RunDir(tmp_path / "run") as run, pytest.raises(UsageError, match="manifest.json: No space left on device"):
        run.open({}, {"task": "t"})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]
    monkeypatch.undo()
    with RunDir(tmp_path / "run") as run:
        run.open({}, {"task": "t"})  # the disk has room again: the same command starts the run


def test_one_writer_per_run_directory(tmp_path):
    first, second = RunDir(tmp_path / "run"), RunDir(tmp_path / "run")
    first.open({}, {"task": "t"})
    with pytest.raises(UsageError, match="in use by another evalharness process"):
        second.open({}, {"task": "t"})
    with pytest.raises(UsageError, match="in use"):
        second.lock()
    first.close()
    with second:
        second.open({}, {"task": "t"})  # released: the next writer resumes


def test_appender_turns_write_failures_and_unstorable_rows_into_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="cannot write /dev/full: No space left on device"):
        with JsonlAppender("/dev/full", batch=1) as log:
            log.append({"task_id": "a", "sample_idx": 0})
    path = tmp_path / "r.jsonl"
    with JsonlAppender(path) as log, pytest.raises(UsageError, match="cannot store a row of 'a'"):
        log.append({"task_id": "a", "completion": "\ud800"})
    assert path.read_bytes() == b""


@pytest.mark.parametrize("line, reason", [
    ('{"task_id": "a", "sample_idx": 0, "status": "passed"}', "no 'passed' true/false"),
    ('{"task_id": "a", "sample_idx": -1, "status": "passed", "passed": true}', "sample_idx"),
    ('[1, 2]', "a row must be a JSON object"),
    ('{"task_id": "a", "sample_idx": 0, "status": "passed", "passed": true, "n": ' + "9" * 5000 + "}",
     "an integer longer than 4300 digits"),
    ('{"task_id": "a", "sample_idx": 0, "status": "passed", "passed": true, "n": ' + "[" * 100000 + "]" * 100000 + "}",
     "nested too deeply"),
], ids=["no-passed", "negative-idx", "not-object", "huge-int", "deep"])
def test_rows_of_the_wrong_shape_stop_reading_with_the_line_and_the_repair_command(tmp_path, line, reason):
    run = RunDir(tmp_path)
    (tmp_path / "results.jsonl").write_text(line + "\n" + '{"task_id": "b", "sample_idx": 0, "status": "passed", '
                                            '"passed": true}\n')
    with pytest.raises(UsageError, match=rf"results.jsonl:1: .*{reason}.*evalharness repair {tmp_path}"):
        run.results()


@pytest.mark.parametrize("manifest", ['[1]', '{"task": 5}', '{"identity": "x"}', '{"decoding": {"headline": {"x": 1}}}',
                                      '{"integrity": {"not_served": 3}}', '{"seed": "0"}'])
def test_a_manifest_of_the_wrong_shape_is_a_usage_error(tmp_path, manifest):
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(UsageError, match="manifest.json: .*not touching this run directory"):
        RunDir(tmp_path).manifest()


def test_no_output_file_may_be_a_runs_record_file(tmp_path):
    from evalharness.runstore import write_output_file

    run = RunDir(tmp_path / "run")
    with run:
        run.open({}, {"task": "t"})
    (tmp_path / "run" / "results.jsonl").write_text("finished work\n")
    for name in ("results.jsonl", "samples.jsonl", "manifest.json", ".lock", "samples.rank0.jsonl"):
        with pytest.raises(UsageError, match="record file of the run"):
            write_output_file(tmp_path / "run" / name, "report")
    assert (tmp_path / "run" / "results.jsonl").read_text() == "finished work\n"
    write_output_file(tmp_path / "run" / "report.md", "report")  # derived files may be rewritten
    with pytest.raises(UsageError, match="does not exist"):
        write_output_file(tmp_path / "nodir" / "x.md", "report")
    with pytest.raises(UsageError, match="is a directory"):
        write_output_file(tmp_path, "report")

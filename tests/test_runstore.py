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

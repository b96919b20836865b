"""The typed run identity: everything that decides a run's samples and results is in it, so a run
directory is never resumed by another model, samples file or sandbox tier; and a report is rebuilt
from the directory alone."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from evalharness import tasks
from evalharness.backends import ModelRecord
from evalharness.cli import main
from evalharness.decoding.hf import files_fingerprint
from evalharness.models.tokenizers import ByteTokenizer
from evalharness.notebook import load_run
from evalharness.sandboxes import probe_tier
from evalharness.tasks.data import read_records
from evalharness.tasks.humaneval import bundled_humaneval_path


def one_line_refusal(capsys, *words):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("evalharness: error:"), err
    for word in words:
        assert word in err, err
    return err


def snapshot(path: Path) -> dict:
    return {p.name: p.read_bytes() for p in path.iterdir()}


# ------------------------------------------------------------------------------------------ model


def hf_checkpoint(path: Path, seed: int) -> Path:
    """A tiny random LlamaForCausalLM saved by transformers (byte-level vocabulary: --tokenizer bytes)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=ByteTokenizer().vocab_size, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_two_hf_checkpoints_into_one_out_are_refused(tmp_path, capsys):
    """The issue's repro: HF models had no fingerprint, so a second checkpoint resumed the first one's run."""
    a, b = hf_checkpoint(tmp_path / "a", seed=1), hf_checkpoint(tmp_path / "b", seed=2)
    out = tmp_path / "run"
    args = ["run", "--tokenizer", "bytes", "--task", "humaneval", "--limit", "2", "--max-new-tokens", "3",
            "--device", "cpu", "--out", str(out), "--quiet"]
    assert main([*args, "--model", str(a)]) == 0
    first = json.loads((out / "manifest.json").read_text())["model"]
    assert first["kind"] == "hf" and first["fingerprint"] and first["device_name"].startswith("cpu")
    before = snapshot(out)
    capsys.readouterr()
    assert main([*args, "--model", str(b)]) == 2
    err = capsys.readouterr().err  # transformers' own loading bars come first (not ours to silence here)
    assert "Traceback" not in err and err.endswith("\n")
    last = err.splitlines()[-1]
    assert last.startswith("evalharness: error:") and "different run" in last and "model_fingerprint" in last
    assert snapshot(out) == before
    assert main([*args, "--model", str(a)]) == 0  # the same checkpoint resumes (nothing to do)
    assert {k: v for k, v in snapshot(out).items() if not k.startswith("report")} == \
        {k: v for k, v in before.items() if not k.startswith("report")}


def test_hf_fingerprint_is_the_files_not_their_place(tmp_path):
    a = hf_checkpoint(tmp_path / "a", seed=1)
    shutil.copytree(a, tmp_path / "copy")
    (tmp_path / "copy" / "README.md").write_text("notes do not change the model\n")
    assert files_fingerprint([a]) == files_fingerprint([tmp_path / "copy"])
    assert files_fingerprint([a]) != files_fingerprint([hf_checkpoint(tmp_path / "b", seed=2)])
    config = json.loads((a / "config.json").read_text())
    (tmp_path / "copy" / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    assert files_fingerprint([a]) != files_fingerprint([tmp_path / "copy"])


def test_a_model_record_needs_a_fingerprint():
    with pytest.raises(ValueError, match="no fingerprint"):
        ModelRecord("hf", "m", "", "float32", "cpu")


# ------------------------------------------------------------------------------ samples and sandbox


def samples_file(path: Path, problems: list[int]) -> Path:
    task = tasks.load_task("humaneval")
    path.write_text("".join(json.dumps({"task_id": task.problems[i].task_id, "completion": task.problems[i].reference})
                            + "\n" for i in problems))
    return path


def test_execute_of_another_samples_file_into_a_run_is_refused(tmp_path, capsys):
    """18.6: `execute B.jsonl --out RUN_of_A` merged B into A under a manifest naming A."""
    a, b = samples_file(tmp_path / "a.jsonl", [0, 1]), samples_file(tmp_path / "b.jsonl", [2, 3])
    out = tmp_path / "run"
    assert main(["execute", str(a), "--task", "humaneval", "--out", str(out), "--quiet"]) == 0
    before = snapshot(out)
    assert main(["execute", str(b), "--task", "humaneval", "--out", str(out), "--quiet"]) == 2
    one_line_refusal(capsys, "different run", "samples")
    assert snapshot(out) == before
    shutil.copy(a, tmp_path / "moved.jsonl")  # the same content elsewhere is the same run: it resumes
    assert main(["execute", str(tmp_path / "moved.jsonl"), "--task", "humaneval", "--out", str(out), "--quiet"]) == 0


@pytest.mark.skipif(not (probe_tier("process")[0] and probe_tier("hardened")[0]), reason="needs two sandbox tiers")
def test_resuming_with_another_sandbox_tier_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["execute", "--reference", "--task", "humaneval", "--limit", "2", "--out", str(out), "--quiet"]
    assert main([*args, "--sandbox", "process"]) == 0
    before = snapshot(out)
    assert main([*args, "--sandbox", "hardened"]) == 2
    one_line_refusal(capsys, "sandbox_tier", '"process" there, "hardened" here')
    assert snapshot(out) == before
    assert main([*args, "--sandbox", "process"]) == 0


def test_a_run_made_by_0_1_1_is_read_but_not_resumed(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["execute", "--reference", "--task", "humaneval", "--limit", "2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    old_identity = {"command": "execute", "task": "humaneval", "task_fingerprint": manifest["task"]["fingerprint"],
                    "limits": {"cpu_s": 3.0, "memory_mb": 4096}}  # what 0.1.1 wrote, no problem ids either
    del manifest["problem_ids"]
    (out / "manifest.json").write_text(json.dumps({**manifest, "harness_version": "0.1.1", "identity": old_identity}))
    capsys.readouterr()
    assert main(args) == 2
    one_line_refusal(capsys, "made by evalharness 0.1.1", "use another --out")
    for command in (["report", str(out), "--out", "-"], ["compare", str(out), str(out)],
                    ["gate", str(out), "--baseline", str(out)]):
        assert main(command) == 0, command
    assert load_run(out).report["n_problems"] == 2


# ------------------------------------------------------------------------------------------ report


def test_a_report_is_rebuilt_without_the_task(tmp_path, monkeypatch, capsys):
    """The manifest lists the run's problems: re-rendering, or Run.report, never loads the task (here its
    data file is gone and loading any task fails), and problems without a result are still named."""
    problems = tmp_path / "five.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in read_records(bundled_humaneval_path())[:5]))
    samples = samples_file(tmp_path / "samples.jsonl", [0, 2, 4])
    out = tmp_path / "run"
    assert main(["execute", str(samples), "--task", "humaneval", "--problems", str(problems), "--out", str(out),
                 "--quiet"]) == 0
    expected = json.loads((out / "report.json").read_text())
    assert json.loads((out / "manifest.json").read_text())["problem_ids"] == [f"HumanEval/{i}" for i in range(5)]
    problems.unlink()
    (out / "report.json").unlink()  # as after a crash before the report was written

    def unavailable(*args, **kwargs):
        raise AssertionError("the task was loaded")

    monkeypatch.setattr(tasks, "load_task", unavailable)
    capsys.readouterr()
    assert main(["report", str(out), "--format", "json", "--out", "-"]) == 0
    rebuilt = json.loads(capsys.readouterr().out)
    assert rebuilt["missing_problems"] == ["HumanEval/1", "HumanEval/3"] and rebuilt["n_problems_total"] == 5
    assert rebuilt["pass_at_k"] == expected["pass_at_k"]
    (out / "report.json").unlink(missing_ok=True)
    assert load_run(out).report["missing_problems"] == ["HumanEval/1", "HumanEval/3"]

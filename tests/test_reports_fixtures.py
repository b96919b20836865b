"""Synthetic run directories in the RUNFORMAT layout, shared by the report, gate and notebook tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evalharness.runstore import RESULTS, SAMPLES, read_jsonl


def outcome_rows(outcomes: dict[str, list], temperature: float | None = None, seed: int = 0):
    """Sample and result rows for {task_id: [passed or status label, ...]} (one entry per sample)."""
    rng = np.random.default_rng(seed)
    samples, results = [], []
    for task_id, column in outcomes.items():
        for idx, outcome in enumerate(column):
            status = outcome if isinstance(outcome, str) else ("passed" if outcome else "failed")
            error_type = None
            if status.startswith("error:"):
                status, error_type = "error", status.split(":", 1)[1]
            key = {"task_id": task_id, "sample_idx": idx}
            if temperature is not None:
                key["temperature"] = temperature
            samples.append({**key, "completion": f"    return {idx}  # {task_id}\n",
                            "raw_completion": f"    return {idx}\n\ndef", "prompt_sha": "ab12", "tokens": 7,
                            "finish_reason": "stop",
                            # the decoder's stats: entry 0 is head 1 (one per forward), then each draft head
                            "stats": {"forwards": 4, "tokens_per_forward": 1.75, "accepted_per_head": [4, 2, 1],
                                      "drafted_per_head": [4, 4, 4]}})
            results.append({**key, "status": status, "passed": status == "passed", "error_type": error_type,
                            "duration_s": round(float(rng.uniform(0.01, 0.5)), 4),
                            "detail": "" if status == "passed" else f"{status} in {task_id}"})
    return samples, results


def write_run(path: Path, outcomes: dict[str, list] | None = None, *, task: str = "synthetic",
              fingerprint: str = "fp-synthetic", temperatures=(None,), model: str = "tiny-mtp",
              n_problems: int | None = None, samples=None, results=None) -> Path:
    """Write manifest.json, samples.jsonl and results.jsonl; return the run directory."""
    path.mkdir(parents=True, exist_ok=True)
    if samples is None:
        samples, results = [], []
        for i, t in enumerate(temperatures):
            s, r = outcome_rows(outcomes, t, seed=i)
            samples += s
            results += r
    manifest = {
        "harness_version": "0.1.0", "created": "2026-11-24T08:00:00+00:00", "command": "run",
        "task": {"name": task, "version": "1", "fingerprint": fingerprint,
                 "n_problems": n_problems or len({r["task_id"] for r in results}), "stop": ["\ndef"],
                 "timeout_s": 3.0, "suites": ["test"], "source": ""},
        "model": {"name": model, "n_future_tokens": 2}, "decoding": {"temperature": 0.8, "top_p": 0.95},
        "seed": 1, "sandbox": None,
        "environment": {"python": "3.11", "platform": "linux", "torch": None, "transformers": None, "device": "cpu"},
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (path / SAMPLES).write_text("".join(json.dumps(r) + "\n" for r in samples))
    (path / RESULTS).write_text("".join(json.dumps(r) + "\n" for r in results))
    return path


def greedy_outcomes(n_problems: int = 164, fail_every: int = 3, flipped: int = 0) -> dict[str, list]:
    """One sample per problem; every `fail_every`-th fails; the first `flipped` passing ones fail too."""
    out, flips = {}, 0
    for i in range(n_problems):
        ok = i % fail_every != 0
        if ok and flips < flipped:
            ok, flips = False, flips + 1
        out[f"Syn/{i}"] = [ok]
    return out


def test_written_run_reads_back_in_the_run_format(tmp_path):
    run = write_run(tmp_path / "run", {"Syn/0": [True, "error:NameError"]})
    results = read_jsonl(run / RESULTS)
    assert [(r["status"], r["error_type"]) for r in results] == [("passed", None), ("error", "NameError")]
    assert json.loads((run / "manifest.json").read_text())["task"]["fingerprint"] == "fp-synthetic"

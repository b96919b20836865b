"""`--model facebook/multi-token-prediction:7B_200B_4`: Meta's checkpoints through the Hugging Face cache.

The tests build a hub-style cache themselves (models--facebook--multi-token-prediction with
refs/main and a snapshot holding a tiny checkpoint in Meta's layout: the model folder, and
tokenizer.model beside it) and run offline from it, as HF_HUB_OFFLINE=1 does on a GPU box.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalharness.errors import UsageError
from evalharness.models import resolve

REPO = "facebook/multi-token-prediction"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf") / "hub"
    repo = cache / "models--facebook--multi-token-prediction"
    snapshot = repo / "snapshots" / COMMIT
    r = subprocess.run([sys.executable, "-m", "evalharness", "checkpoint", "make-tiny", str(snapshot / "7B_200B_4"),
                        "--tokenizer", "sentencepiece"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (snapshot / "7B_200B_4" / "tokenizer.model").rename(snapshot / "tokenizer.model")  # Meta's layout
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


@pytest.fixture
def offline(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub_cache


def test_hub_ids_are_recognised_and_local_paths_win(tmp_path):
    assert resolve.parse_hub_id(f"{REPO}:7B_200B_4") == (REPO, "7B_200B_4")
    assert resolve.parse_hub_id("codellama/CodeLlama-7b-hf") == ("codellama/CodeLlama-7b-hf", None)
    assert resolve.parse_hub_id("./runs/x") is None and resolve.parse_hub_id("tiny:3") is None
    assert resolve.parse_hub_id("/abs/path") is None and resolve.parse_hub_id("a/b/c") is None


def test_only_the_folder_and_the_tokenizer_are_asked_for(monkeypatch, tmp_path):
    calls = []

    def fake_download(repo_id, allow_patterns=None, **kw):
        calls.append((repo_id, allow_patterns))
        (tmp_path / "7B_1T_4").mkdir(exist_ok=True)
        return str(tmp_path)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert resolve.hub_checkpoint(REPO, "7B_1T_4") == tmp_path / "7B_1T_4"
    assert calls == [(REPO, ["7B_1T_4/*", "tokenizer.model"])]


def test_offline_run_from_the_hf_cache(offline, tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(offline), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "evalharness", "run", "--model", f"{REPO}:7B_200B_4", "--task",
                        "humaneval", "--limit", "2", "--max-new-tokens", "8", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["spec"] == f"{REPO}:7B_200B_4" and manifest["model"]["n_future_tokens"] == 4
    assert Path(manifest["model"]["path"]).parent == offline / "models--facebook--multi-token-prediction" / \
        "snapshots" / COMMIT
    assert manifest["model"]["tokenizer"].endswith(f"{COMMIT}/tokenizer.model")
    assert f"- **model**: {REPO}:7B_200B_4" in (out / "report.md").read_text()


@pytest.mark.parametrize("spec, message", [
    (f"{REPO}:7B_1T_4", "no folder '7B_1T_4'"),
    ("facebook/other-model:7B", "not in the Hugging Face cache"),
])
def test_offline_without_a_cached_copy_is_one_line(offline, spec, message):
    with pytest.raises(UsageError, match=message) as e:
        resolve.resolve_model(spec, device="cpu")
    assert "\n" not in str(e.value)


def test_gated_repository_says_what_to_do(monkeypatch):
    import huggingface_hub
    from huggingface_hub import errors

    def gated(*args, **kw):
        error = errors.GatedRepoError.__new__(errors.GatedRepoError)  # its __init__ wants an HTTP response
        Exception.__init__(error, "403 Client Error: Cannot access gated repo")
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(UsageError) as e:
        resolve.resolve_model(f"{REPO}:7B_200B_4", device="cpu")
    text = str(e.value)
    assert "gated" in text and "accept its license" in text and "HF_TOKEN" in text and "\n" not in text

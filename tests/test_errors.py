"""User errors end in one place: every command, one line on stderr, exit 2, never a traceback."""
import argparse

import pytest

from evalharness import cli
from evalharness.sandboxes import pool as sandbox_pool
from test_reports_fixtures import write_run


def _uses_sandbox(command: str) -> bool:
    """Whether the command takes --sandbox (read from the parser, so a new command is covered)."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return any("--sandbox" in action.option_strings for action in sub.choices[command]._actions)


def _argv(command: str, tmp_path) -> list[str]:
    run = write_run(tmp_path / "fixture", {"Syn/0": [True, False]})
    small = ["--task", "humaneval", "--limit", "1", "--quiet"]
    model = ["--model", "tiny", "--max-new-tokens", "2"]
    return {
        "run": ["run", *model, *small, "--sandbox", "bwrap", "--out", str(tmp_path / "out")],
        "generate": ["generate", *model, *small, "--out", str(tmp_path / "out")],
        "execute": ["execute", "--reference", *small, "--sandbox", "bwrap", "--out", str(tmp_path / "out")],
        "report": ["report", str(run), "--out", "-"],
        "compare": ["compare", str(run), str(run)],
        "gate": ["gate", str(run), "--baseline", str(run)],
        "prompt": ["prompt", "--task", "humaneval", "--task-id", "0"],
        "tasks": ["tasks"],
        "checkpoint": ["checkpoint", "make-tiny", str(tmp_path / "out")],
        "export": ["export", str(run), "--format", "humaneval", "--out", str(tmp_path / "export.jsonl")],
    }[command]


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_an_unavailable_sandbox_tier_is_one_line_and_exit_2_on_every_command(command, tmp_path, monkeypatch, capsys):
    """The issue's repro: `execute --reference --task humaneval --sandbox bwrap` without bwrap was a
    15-line traceback and exit 1 (the gate's "regression" code). Commands without a sandbox still work."""
    monkeypatch.setattr(sandbox_pool, "probe_tier", lambda tier: (False, f"{tier} is switched off in this test"))
    code = cli.main(_argv(command, tmp_path))
    err = capsys.readouterr().err
    if _uses_sandbox(command):
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith("evalharness: error: sandbox tier 'bwrap' is not available here") and "switched off" in err
        assert not (tmp_path / "out").exists()  # refused before any work
    else:
        assert code == 0, err


def test_every_command_is_covered():
    assert {"run", "execute"} <= {c for c in cli.COMMANDS if _uses_sandbox(c)}


def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, capsys):
    run = write_run(tmp_path / "run", {"Syn/0": [True]})
    assert cli.main(["report", str(run), "--out", str(tmp_path / "missing" / "dir" / "report.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No such file or directory" in err


def test_comparison_errors_are_user_errors(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"Syn/0": [True]})
    b = write_run(tmp_path / "b", {"Syn/0": [True]}, task="other", fingerprint="fp-other")
    for argv in (["compare", str(a), str(b)], ["gate", str(a), "--baseline", str(b)]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "different tasks" in err

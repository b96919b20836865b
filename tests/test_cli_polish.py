"""The command line's own manners (issue 17.9's flags, issue 18's argparse and no-command items)."""
import argparse
import os
import subprocess
import sys

import pytest
from cli_helpers import assert_one_line_error, in_process

import evalharness
from evalharness.cli import HelpFormatter, build_parser


def test_version(capsys):
    r = in_process(capsys, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"evalharness {evalharness.__version__}"


def all_parsers(parser, name="evalharness"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from all_parsers(sub, f"{name} {sub_name}")


def test_every_option_has_help_that_states_its_default():
    """A value-taking option's help names its default (or the option is required); every flag has help."""
    missing = []
    for name, parser in all_parsers(build_parser()):
        formatter = HelpFormatter(name)
        for action in parser._actions:
            if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            text = formatter._expand_help(action) if action.help else ""
            if not text or (action.nargs != 0 and not action.required and "default" not in text.lower()):
                missing.append(f"{name} {action.option_strings[0]}: {text!r}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("args, words", [
    (["execute", "--task"], "expected one argument"),
    (["run", "--n", "many"], "not an integer"),
    (["gate", "RUN"], "--baseline"),
    (["checkpoint"], "ACTION"),
    (["nonsense"], "invalid choice"),
])
def test_usage_errors_are_one_line_pointing_at_help(capsys, args, words):
    """Before: 4-13 lines of usage came first."""
    r = in_process(capsys, *args)
    assert_one_line_error(r, words, "--help)")


def test_no_command_prints_the_commands_and_fails_with_one_line(capsys):
    """The help goes to stdout (what there is to choose from), one error line to stderr, exit 2:
    a script that lost its command fails visibly. Before: help on stdout, nothing on stderr."""
    r = in_process(capsys)
    assert r.returncode == 2
    assert "execute" in r.stdout and "repair" in r.stdout
    assert r.stderr.strip() == "evalharness: error: no command given (see the commands above)"


@pytest.mark.parametrize("args", [["tasks"], ["prompt", "--task", "humaneval", "--task-id", "HumanEval/0"],
                                  ["run", "--help"]])
def test_a_closed_stdout_ends_quietly(args):
    """`evalharness ... | head`: the reader is gone before we write. Before: a BrokenPipeError traceback, exit 1."""
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as stdout:
        r = subprocess.run([sys.executable, "-m", "evalharness", *args], stdout=stdout, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    assert r.stderr == ""
    assert r.returncode in (0, 141)  # argparse's --help swallows the error itself; commands exit as SIGPIPE would

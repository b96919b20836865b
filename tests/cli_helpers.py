"""Running the CLI as a user meets it: exit code, stdout, stderr; and checks shared by the CLI tests."""
import subprocess
import sys
from pathlib import Path

from evalharness.cli import main


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess (slow: use for what only a process shows)."""
    return subprocess.run([sys.executable, "-m", "evalharness", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kwargs)


def in_process(capsys, *args) -> subprocess.CompletedProcess:
    """evalharness.cli.main in this process (fast), seen as a subprocess result. An exception that
    escapes main is what a user would see as a traceback: it fails the test as it is."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # argparse: --help, --version, usage errors
        code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line_error(r: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2 and exactly one line on stderr, naming each of `words`."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evalharness"), r.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]


def snapshot(root: Path) -> dict:
    """Every file under root (or root itself) and its bytes."""
    root = Path(root)
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

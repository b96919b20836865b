"""The distribution installs one import name: `evalharness` (its leaves as evalharness.tasks & co)."""
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1:]}")
    return next(out.glob("evalharness-*.whl"))


def test_a_clean_venv_gets_only_evalharness_as_a_new_top_level_name(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    before = set(p.name for p in site.iterdir())
    # the outer pip installs into the venv (no network, no dependencies: only the names matter)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                    "--target", str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    new = {p.name for p in site.iterdir()} - before
    importable = {n.removesuffix(".py") for n in new if not n.endswith((".dist-info", ".pth")) and n != "bin"}
    assert importable == {"evalharness"}, sorted(new)
    names = subprocess.check_output(
        [str(python), "-c", "import importlib.util as u;"
                            "print([u.find_spec('evalharness.' + n) is not None for n in ('tasks', 'sandboxes', 'reports')],"
                            "      [n for n in ('tasks', 'sandboxes', 'reports') if u.find_spec(n)])"],
        text=True, cwd=tmp_path).strip()
    assert names == "[True, True, True] []"

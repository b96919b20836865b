import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EVALHARNESS_DATA_DIR") or ROOT.parent / "shared" / "data")
os.environ.setdefault("EVALHARNESS_DATA_DIR", str(SHARED_DATA))
# Tiny test models decode far faster on one intra-op thread than on threads that spin against
# sandbox workers and other tests (12x measured); subprocesses inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: use --runslow")
    for item in items:
        if "slow" in item.keywords or "benchmark" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def pool():
    """A real two-worker sandbox pool, strongest tier available (skips where none can run)."""
    from evalharness.sandboxes import SandboxPool, SandboxUnavailable

    try:
        with SandboxPool(workers=2) as p:
            yield p
    except SandboxUnavailable as e:
        pytest.skip(f"no sandbox here: {e}")

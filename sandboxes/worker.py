"""A warm sandbox worker: pre-imports common modules once, then forks a fresh child per program.

Started by `SandboxPool` as `python -I -c <boot> <config-json>`. It speaks JSON
lines: jobs arrive on stdin, verdicts leave on stdout. Where the machine
allows (root, or unprivileged user namespaces) the worker first makes itself
pid 1 of private pid, mount, net, ipc and uts namespaces, turns the whole
filesystem read-only and nodev there (programs write only to a private tmpfs),
and drops every capability. Programs then cannot see or signal anything
outside, have no network, and one `kill(-1)` removes every process a program
left behind. Otherwise it falls back to a subreaper plus process-group kills.

Programs are forked by a forker: a process forked from the worker once, after
set-up, that never sees a token or a program's output. Per job it forks the
child and hands the read ends of the child's pipes to the worker over a unix
socket; the child makes its own token and sends it first on its output pipe.
The worker watches, judges and answers, and never forks again: no child can
find another job's token or output in the memory it inherited. When the job
is over the forker kills and reaps everything the program left, and the
worker removes everything it left in the scratch dir. Where the machine allows,
the forker is pid 1 of a nested pid namespace that holds only programs: they
can neither signal it nor see the worker.

Per program (the child): new session, the work dir as cwd (the only writable
place), scrubbed environment, stdin /dev/null, rlimits, and where the tier
confines programs Landlock + seccomp. The program runs with fresh globals.

Verdict protocol: the child writes a per-job secret token to a private pipe
(fd 3) only after `exec` of the program returned normally. Exit status alone
never passes; an exception is reported on the same pipe as JSON.

The worker's stdin is its lifeline: when the harness dies (even by SIGKILL)
the pipe hangs up, the running program is killed and the worker exits.
"""
from __future__ import annotations

import collections
import gc
import json
import math
import os
import resource
import secrets
import select
import signal
import socket
import sys
import tempfile
import time
import types

from . import _linux, judge, scratch
from .judge import SUSPICIOUS_EXIT, VERDICT_FD

# Modules programs commonly import: loaded once here so `import x` in a
# program is a dict lookup. They live in sys.modules only, never in a
# program's globals.
PREIMPORTS = (
    "abc", "array", "bisect", "cmath", "collections", "collections.abc", "copy", "dataclasses", "datetime",
    "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "itertools", "json", "math", "numbers",
    "operator", "random", "re", "statistics", "string", "textwrap", "typing", "unicodedata", "queue",
    "struct", "time", "traceback", "contextlib", "io", "types", "weakref", "pprint",
)

_SAFE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
_TAIL = 2000  # bytes of output kept for the verdict detail
_COMPILE_CACHE = 512  # code objects kept per worker
_MAX_COMPILE_IN_WORKER = 200_000  # longer sources compile in the child, under its limits
_WORK = "work"  # the program's dir inside the scratch dir: one inode for the worker's life (Landlock rule)
_TOKEN_BYTES = 32  # the child's first bytes on its output pipe: its token, in hex
# what the forker needs of a job to start its child (the worker keeps the rest)
_FORKER_KEYS = ("source", "limits", "checks", "prelude", "names", "modules", "call_limits", "keep_output")

class Worker:
    def __init__(self, config: dict):
        self.confine = bool(config.get("confine_programs"))  # Landlock + seccomp per program
        self.permission_is_violation = bool(config.get("permission_is_violation"))
        self.layers: dict[str, dict] = {}
        self.pid1 = False  # pid 1 of a private pid namespace
        self.scratch = config.get("scratch") or ""  # made by the pool, which removes it
        self.workdir = ""
        self.lifeline = -1  # the protocol's stdin: it hangs up when the harness dies
        self.landlock_abi = 0
        self.ruleset_fd = -1
        self.read_paths: list[str] = list(config.get("read_paths", []))
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.userns_per_program = False
        self.forker = 0  # pid of the process that forks the programs
        self.to_forker = -1  # jobs go down this pipe ...
        self.from_forker: socket.socket | None = None  # ... and each child's pipes and exit come back
        self.trust = judge.Trust()  # captured in main(), once the pre-imports are loaded
        self.compiled: collections.OrderedDict = collections.OrderedDict()  # source -> code or SyntaxError

    # ------------------------------------------------------------ start-up

    def isolate(self, want_namespaces: bool, launcher_namespaces: str | None = None) -> None:
        """Become pid 1 of a new pid+mount namespace with a private /proc and a tmpfs scratch
        (or take the launcher's namespaces), then make the program's work dir."""
        self.scratch = self.scratch or scratch.make()
        self._namespaces(want_namespaces, launcher_namespaces)
        self.workdir = os.path.join(self.scratch, _WORK)
        os.mkdir(self.workdir, 0o700)

    def _namespaces(self, want_namespaces: bool, launcher_namespaces: str | None) -> None:
        if want_namespaces:
            try:
                # The outer shell takes only the pid (and user) namespace: it stays in the host's
                # mount namespace, where it can remove the scratch dir once pid 1 is gone.
                flags = _linux.CLONE_NEWPID
                if os.geteuid() != 0:
                    flags |= _linux.CLONE_NEWUSER
                    uid, gid = os.getuid(), os.getgid()
                _linux.unshare(flags)
                if os.geteuid() != 0 and flags & _linux.CLONE_NEWUSER:
                    with open("/proc/self/setgroups", "w") as f:
                        f.write("deny")
                    with open("/proc/self/uid_map", "w") as f:
                        f.write(f"{uid} {uid} 1")
                    with open("/proc/self/gid_map", "w") as f:
                        f.write(f"{gid} {gid} 1")
                pid = os.fork()
                if pid:  # outer shell: wait for the namespace's pid 1, then clean up
                    os.close(0)
                    os.close(1)
                    try:
                        _, status = os.waitpid(pid, 0)
                    finally:
                        scratch.remove(self.scratch)
                    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
                self.pid1 = True
                _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                _linux.unshare(_linux.CLONE_NEWNS | _linux.CLONE_NEWNET | _linux.CLONE_NEWIPC | _linux.CLONE_NEWUTS)
                _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)
                _linux.mount("proc", "/proc", "proc", _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC)
                self._layer("worker_namespaces", True, "worker is pid 1 of private pid+mount+net+ipc+uts "
                            "namespaces: /proc shows only its programs, no network, leftovers die with kill(-1)")
                self._lock_down_filesystem()
                try:
                    _linux.mount("tmpfs", self.scratch, "tmpfs", _linux.MS_NOSUID | _linux.MS_NODEV,
                                 "size=512m,mode=0700")
                    self._layer("scratch_tmpfs", True, "program dirs on a private 512 MiB tmpfs")
                except OSError as e:
                    self._layer("scratch_tmpfs", False, str(e))
                return
            except OSError as e:
                if self.pid1:
                    raise
                self._layer("worker_namespaces", False, f"{e}; falling back to subreaper + process-group kill")
        else:
            self._layer("worker_namespaces", bool(launcher_namespaces), launcher_namespaces or "not requested")
        try:
            _linux.prctl(_linux.PR_SET_CHILD_SUBREAPER, 1)
            self._layer("subreaper", True, "orphaned grandchildren are reparented to the worker and killed")
        except OSError as e:
            self._layer("subreaper", False, str(e))

    def _lock_down_filesystem(self) -> None:
        """In our private mount namespace: everything read-only, device nodes unusable except
        the harmless ones (a root program could otherwise write /dev/vda), /proc/sys and
        /proc/sysrq-trigger read-only (they are not namespaced)."""
        try:
            _linux.mount_setattr("/", _linux.MOUNT_ATTR_RDONLY | _linux.MOUNT_ATTR_NODEV | _linux.MOUNT_ATTR_NOSUID)
            for dev in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"):
                try:
                    _linux.mount(dev, dev, None, _linux.MS_BIND)
                    _linux.mount_setattr(dev, clear=_linux.MOUNT_ATTR_NODEV, recursive=False)
                except OSError:
                    pass  # that device stays unusable; programs rarely open it themselves
            for p in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"):
                try:
                    _linux.mount(p, p, None, _linux.MS_BIND)
                    _linux.mount_setattr(p, _linux.MOUNT_ATTR_RDONLY)
                except OSError:
                    pass
            self._layer("readonly_root", True, "filesystem read-only, nodev (except null/zero/random), "
                        "/proc/sys read-only, for the worker and its programs")
        except OSError as e:
            self._layer("readonly_root", False, str(e))

    def drop_privileges(self) -> None:
        """After set-up the worker needs no capability: programs inherit none (as root they could
        otherwise set the clock, change the hostname, write raw devices, load modules)."""
        try:
            _linux.drop_capabilities()
            self._layer("no_capabilities", True, "worker and programs hold no capabilities")
        except OSError as e:
            self._layer("no_capabilities", False, str(e))
        try:  # nobody without CAP_SYS_PTRACE may attach to the worker or open its /proc/<pid>/{fd,mem}
            _linux.prctl(_linux.PR_SET_DUMPABLE, 0)
            self._layer("worker_not_dumpable", True, "programs cannot ptrace the worker or open its fds/memory")
        except OSError as e:
            self._layer("worker_not_dumpable", False, str(e))

    def _layer(self, name: str, active: bool, reason: str) -> None:
        self.layers[name] = {"active": active, "reason": reason}

    def setup_hardening(self) -> None:
        """Probe, in this worker, the layers a confining tier adds per program."""
        if not self.confine:
            return
        try:
            self.landlock_abi = _linux.landlock_abi()
            # The work dir only: the scratch dir around it (and whatever another program could
            # leave there) is neither readable nor writable.
            # Site-packages dirs are listable (import's path finder lists them; only their code
            # entries are readable), else a library import depends on the worker's import cache.
            site_dirs = sorted({os.path.dirname(p) for p in self.read_paths
                                if os.path.basename(os.path.dirname(p)) in ("site-packages", "dist-packages")})
            self.ruleset_fd = _linux.landlock_ruleset(self.landlock_abi, self.read_paths, [self.workdir],
                                                      ["/dev/null", "/dev/zero", "/dev/urandom"], site_dirs)
            self._layer("landlock", True, f"ABI {self.landlock_abi}: read-only runtime, write only the program dir"
                        + (", no TCP" if self.landlock_abi >= 4 else "")
                        + (", scoped signals" if self.landlock_abi >= 6 else ""))
        except OSError as e:
            self._layer("landlock", False, str(e))
        self._layer("seccomp", _linux.X86_64, "no sockets (AF_UNIX pairs only), processes, exec, foreign signals, "
                    "ptrace, namespaces" if _linux.X86_64 else "filter written for x86_64 only")
        if not self.pid1 and not self.layers.get("worker_namespaces", {}).get("active"):
            # No private worker namespaces: give each program a fresh user+net namespace
            # instead (with them it would be redundant, and it costs ~1 ms per program).
            # Try once in a throwaway child whether one can be made.
            pid = os.fork()
            if pid == 0:
                try:
                    _linux.unshare(_linux.CLONE_NEWUSER | _linux.CLONE_NEWNET | _linux.CLONE_NEWIPC)
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            self.userns_per_program = status == 0
            self._layer("user_net_namespace", self.userns_per_program,
                        "fresh user+net+ipc namespace per program" if self.userns_per_program
                        else "unshare(CLONE_NEWUSER|CLONE_NEWNET) refused here")

    # ------------------------------------------------------------- one job

    def compile(self, source: str):
        """Code object (or the compile error) for `source`, cached: samples repeat a lot.
        Safe to do here: CPython bounds constant folding and parser nesting."""
        hit = self.compiled.get(source)
        if hit is not None:
            self.compiled.move_to_end(source)
            return hit
        if len(source) > _MAX_COMPILE_IN_WORKER:
            return None  # compile in the child, under its limits
        try:
            code = compile(source, "<program>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as e:
            code = e
        self.compiled[source] = code
        if len(self.compiled) > _COMPILE_CACHE:
            self.compiled.popitem(last=False)
        return code

    def nest_programs(self) -> None:
        """Before capabilities are dropped: programs will live in a nested pid namespace whose
        pid 1 is the forker (signals from inside cannot kill it, the worker is out of sight)."""
        try:
            _linux.unshare(_linux.CLONE_NEWPID)
            self._layer("program_pid_namespace", True, "programs run in a nested pid namespace whose pid 1 "
                        "is the forker: they cannot signal it or see the worker")
        except OSError as e:
            self._layer("program_pid_namespace", False, f"{e}; the forker is a subreaper child of the worker")

    def start_forker(self, close: tuple[int, ...]) -> None:
        """Fork the forker (see the module docstring); `close`: the worker's protocol fds."""
        jobs_r, jobs_w = os.pipe()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        worker = os.getpid()
        pid = os.fork()
        if pid == 0:
            try:
                _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)
                if os.getppid() not in (worker, 0):  # 0: the worker is outside our pid namespace
                    os._exit(0)
                if os.getpid() != 1:
                    _linux.prctl(_linux.PR_SET_CHILD_SUBREAPER, 1)  # a program's orphans come to us
                for fd in (*close, jobs_w):
                    os.close(fd)
                mine.close()
                self._serve_forks(jobs_r, theirs)
            finally:
                os._exit(0)
        os.close(jobs_r)
        theirs.close()
        self.forker, self.to_forker, self.from_forker = pid, jobs_w, mine

    def stop_forker(self) -> None:
        """Let the forker end by itself and reap it: its programs' CPU time then reaches the pool."""
        os.close(self.to_forker)
        os.waitpid(self.forker, 0)

    def _serve_forks(self, jobs_r: int, sock: socket.socket) -> None:
        """The forker's loop, per job: fork the child, hand its pipes and a pidfd to the worker;
        once the child is dead (by itself, or killed by the worker at a limit) kill and reap
        everything the program left, and report the child's exit status and CPU time."""
        for line in _lines(lambda: os.read(jobs_r, 1 << 16)):
            job = json.loads(line)
            code = self.compile(job["source"])
            parts = None
            if job.get("checks"):
                parts = judge.Parts(checks=self.compile(job["checks"]) or job["checks"],
                                    prelude=(self.compile(job["prelude"]) or job["prelude"]) if job.get("prelude") else None,
                                    names=tuple(job.get("names", ())), modules=tuple(job.get("modules", ())),
                                    call_limits=tuple(job.get("call_limits", ())))
            out_r, out_w = os.pipe()
            ver_r, ver_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    self._child(job["source"] if code is None else code, out_w, ver_w, self.workdir, job["limits"],
                                parts, swallow=not job.get("keep_output", False))
                finally:
                    os._exit(70)  # whatever the program did, a child never returns into this loop
            os.close(out_w)
            os.close(ver_w)
            pidfd = os.pidfd_open(pid)  # the worker's handle on the child, valid after it is reaped
            socket.send_fds(sock, [b"started"], [out_r, ver_r, pidfd])
            for fd in (out_r, ver_r, pidfd):
                os.close(fd)
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            self._kill_group(pid)  # its pid is still the child's: not reaped yet
            _, status, usage = os.wait4(pid, 0)
            self._kill_leftovers()
            rusage = {f: getattr(usage, f) for f in dir(usage) if f.startswith("ru_")}
            sock.send(json.dumps({"status": status, "rusage": rusage}).encode())

    def run(self, job: dict) -> dict | None:
        """Run one job; its verdict, or None when the harness is gone (the lifeline hung up)."""
        limits = job["limits"]
        start = time.monotonic()
        data = (json.dumps({k: job[k] for k in _FORKER_KEYS if k in job}) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.to_forker, data):]
            msg, fds, _, _ = socket.recv_fds(self.from_forker, 1024, 3)
        except OSError as e:
            raise _ForkerGone() from e
        if msg != b"started" or len(fds) != 3:
            raise _ForkerGone()
        out_r, ver_r, pidfd = fds
        try:
            outcome, output, report = self._watch(pidfd, out_r, ver_r, start, limits, job.get("keep_output", False))
            try:
                ended = self.from_forker.recv(1024)  # everything the program started is gone
            except OSError:
                ended = b""
            if not ended:
                raise _ForkerGone()
            duration = time.monotonic() - start
        finally:
            for fd in (out_r, ver_r, pidfd):
                os.close(fd)
        self._wipe_scratch()
        if outcome == "harness_gone":
            return None
        # the child wrote its token first (one write, before the program ran): the output's head
        token, output = output[:_TOKEN_BYTES].decode("ascii", "replace"), output[_TOKEN_BYTES:]
        ended = json.loads(ended)
        usage = types.SimpleNamespace(**ended["rusage"])  # read like the child's resource.struct_rusage
        verdict = self._classify(job, token, outcome, output, report, ended["status"], usage, limits)
        if job.get("keep_output") and outcome == "exited":
            verdict["output"] = output.decode("utf-8", "replace")
        verdict["duration_s"] = round(duration, 4)
        verdict["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 4)
        return verdict

    def _wipe_scratch(self) -> None:
        """Nothing a program left survives into the next one: the work dir is emptied (it keeps
        its inode, which the Landlock rule names) and anything else in scratch is removed."""
        scratch.empty(self.scratch, keep=frozenset({_WORK}))
        try:
            scratch.empty(self.workdir)
        except FileNotFoundError:  # the process tier's program removed its own dir
            os.mkdir(self.workdir, 0o700)

    def _watch(self, pidfd: int, out_r: int, ver_r: int, start: float, limits: dict, keep: bool = False):
        """Collect output and the verdict pipe until the child exits, the wall cap or the output cap.
        The output comes back as head + tail, or whole (at most the cap) when `keep`."""
        poller = select.poll()
        for fd in (out_r, ver_r, pidfd):
            poller.register(fd, select.POLLIN)
        if self.lifeline >= 0:
            poller.register(self.lifeline, 0)  # reports only the hang-up: pending jobs are not ours
        deadline = start + limits["wall_s"]
        cap = limits["output_bytes"] + _TOKEN_BYTES
        head, tail, total = bytearray(), bytearray(), 0
        whole = bytearray()
        report = bytearray()
        outcome = "exited"
        open_fds = {out_r, ver_r}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                outcome = "wall_timeout"
                break
            events = poller.poll(max(1, math.ceil(left * 1000)))
            exited = False
            if any(fd == self.lifeline for fd, _ in events):
                outcome = "harness_gone"
                break
            for fd, _ in events:
                if fd == pidfd:
                    exited = True
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                if fd == ver_r:
                    if len(report) < 4096:
                        report += data[: 4096 - len(report)]
                    continue
                total += len(data)
                if keep and total <= cap:
                    whole += data
                if len(head) < _TAIL:
                    head += data[: _TAIL - len(head)]
                tail = (tail + data)[-_TAIL:]
            if total > cap:
                outcome = "output_limit"
                break
            if exited:
                break
        if outcome != "exited":
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # the forker kills the rest of its tree
            except ProcessLookupError:
                pass  # it ended by itself meanwhile (wrote past the cap, then exited)
        # drain what is already buffered without waiting for lingering holders
        for fd in open_fds:
            os.set_blocking(fd, False)
            try:
                while (data := os.read(fd, 1 << 16)):
                    if fd == ver_r:
                        report += data[: max(0, 4096 - len(report))]
                    else:
                        total += len(data)
                        if keep and total <= cap:
                            whole += data
                        tail = (tail + data)[-_TAIL:]
                        if total > cap:
                            outcome = "output_limit" if outcome == "exited" else outcome
                            break
            except BlockingIOError:
                pass
        if keep and total <= cap:
            output = bytes(whole)
        else:
            output = bytes(tail) if total <= _TAIL else bytes(head[:200]) + b"\n...\n" + bytes(tail[-(_TAIL - 200):])
        return outcome, output, bytes(report)

    def _kill_group(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def _kill_leftovers(self) -> None:
        """In the forker: kill and reap everything a program left behind, the orphans reparented
        to us (pid 1 of the programs' namespace, or a subreaper), until none is left."""
        if os.getpid() == 1:  # kill(-1) reaches exactly the programs' namespace
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            while True:
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    return
        for _ in range(100):
            kids = _children_of("self")  # /proc numbers our pid namespace here
            if not kids:
                return
            for k in kids:
                self._kill_group(k)
                try:
                    os.waitpid(k, 0)
                except ChildProcessError:
                    pass

    def _classify(self, job, token, outcome, output, report, status, usage, limits) -> dict:
        text = output.decode("utf-8", "replace")
        detail = text[-300:]
        cpu = usage.ru_utime + usage.ru_stime
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if outcome == "output_limit":
            return {"status": "output_limit", "detail": f"more than {limits['output_bytes']} bytes of output"}
        if outcome == "wall_timeout":
            return {"status": "timeout", "detail": f"wall-clock cap {limits['wall_s']:g}s (cpu {cpu:.2f}s)"}
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits["cpu_s"]):
            return {"status": "timeout", "detail": f"cpu limit {limits['cpu_s']:g}s"}
        tok = token.encode()
        if report == tok and code == 0:
            return {"status": "passed", "detail": ""}
        if report.endswith(tok) and code == 0:
            return {"status": "suspicious", "error_type": "VerdictChannel",
                    "detail": "ran to the end but wrote to the verdict channel"}
        if code == SUSPICIOUS_EXIT:
            return _suspicious(report)
        if sig == signal.SIGPROF:  # judge's per-call CPU timer (Job.call_limits), by its default action
            return {"status": "timeout", "detail": "a call of the solution took longer than its CPU limit "
                    "(EvalPlus's per-input limit)"}
        if sig:
            name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
            if sig == signal.SIGSYS:
                return {"status": "sandbox_violation", "error_type": name, "detail": "blocked system call"}
            if "MemoryError" in text or "Cannot allocate memory" in text:
                return {"status": "out_of_memory", "error_type": name, "detail": detail}
            return {"status": "error", "error_type": name, "detail": detail or f"killed by {name}"}
        line = report.rsplit(b"\n", 2)[-2] if report.endswith(b"\n") and b"\n" in report else b""
        try:
            rep = json.loads(line) if line else None
        except ValueError:
            rep = None
        if isinstance(rep, dict) and rep.get("status") in ("failed", "error", "syntax_error", "out_of_memory",
                                                             "sandbox_violation", "harness_error"):
            return {"status": rep["status"], "error_type": rep.get("error_type"), "detail": detail}
        return {"status": "error", "error_type": "EarlyExit",
                "detail": f"exited with code {code} before the checks finished; " + detail}

    # ------------------------------------------------------------ the child

    def _child(self, program, out_w: int, ver_w: int, workdir: str, limits: dict, parts=None,
               swallow: bool = True):
        """Runs in the forked child: make the token, confine, run the program with fresh globals,
        report. Never returns."""
        try:
            token = secrets.token_hex(_TOKEN_BYTES // 2)
            os.write(out_w, token.encode())  # first on the output pipe: the worker reads it from there
            os.setsid()
            os.dup2(self.devnull, 0)
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.dup2(ver_w, VERDICT_FD)
            os.chdir(workdir)
            os.environ.clear()
            os.environ.update(_SAFE_ENV, HOME=workdir, TMPDIR=workdir)
            tempfile.tempdir = workdir
            sys.argv = ["<program>"]
            self._limits(limits)
            self._harden(workdir)
            os.closerange(VERDICT_FD + 1, 1 << 20)  # worker pipes, ruleset, everything else
        except BaseException as e:  # noqa: BLE001 - anything here is the harness's fault
            _report("harness_error", type(e).__name__, f"sandbox setup failed: {e}")
            os._exit(70)
        judge.run(program, token, self.permission_is_violation, self.trust, parts, swallow)

    def _limits(self, limits: dict) -> None:
        cpu = max(1, math.ceil(limits["cpu_s"]))
        mem = limits["memory_mb"] << 20
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_mb"] << 20,) * 2)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if not self.pid1:
            _linux.prctl(_linux.PR_SET_PDEATHSIG, signal.SIGKILL)

    def _harden(self, workdir: str) -> None:
        if not self.confine:
            return
        if self.userns_per_program:
            _linux.unshare(_linux.CLONE_NEWUSER | _linux.CLONE_NEWNET | _linux.CLONE_NEWIPC)
        if self.ruleset_fd >= 0:
            _linux.landlock_enforce(self.ruleset_fd)
        if _linux.X86_64:
            _linux.seccomp_install(os.getpid())


class _ForkerGone(Exception):
    """The forker died: this worker cannot run programs any more."""


def _lines(read):
    """The lines of a stream read in chunks (`read()` returns b"" at its end)."""
    buf = b""
    while chunk := read():
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line


def _children_of(pid: int | str) -> set[int]:
    kids: set[int] = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.update(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def _report(status: str, error_type: str | None, message: str = "") -> None:
    line = json.dumps({"status": status, "error_type": error_type}) + "\n"
    try:
        if message:
            os.write(2, message.encode("utf-8", "replace") + b"\n")
        os.write(VERDICT_FD, line.encode())
    except OSError:
        pass


_SUSPICIOUS_KINDS = {"introspection": ("Introspection", "stopped at run-time introspection: "),
                     "always-equal": ("AlwaysEqual", ""), "rebinding": ("Rebinding", "")}


def _suspicious(report: bytes) -> dict:
    """The verdict for a program judge.run stopped: its last `S <kind>: <what>` line says why."""
    lines = [ln[2:].decode(errors="replace") for ln in report.split(b"\n") if ln.startswith(b"S ")]
    kind, _, what = (lines[-1] if lines else "").partition(": ")
    error_type, prefix = _SUSPICIOUS_KINDS.get(kind, ("Introspection", "stopped: "))
    return {"status": "suspicious", "error_type": error_type,
            "detail": prefix + (what or kind or f"exit code {SUSPICIOUS_EXIT}")}


def main() -> None:
    config = json.loads(sys.argv[1])
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.dup(1)
    worker = Worker(config)
    worker.lifeline = proto_in.fileno()
    os.dup2(worker.devnull, 0)
    os.dup2(2, 1)  # stray prints of the worker go to stderr, never into the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    worker.isolate(want_namespaces=config.get("make_namespaces", True),
                   launcher_namespaces=config.get("launcher_namespaces"))
    worker.setup_hardening()
    worker.nest_programs()
    worker.drop_privileges()
    for name in PREIMPORTS:
        try:
            __import__(name)
        except ImportError:
            pass
    worker.trust = judge.Trust.capture()
    gc.collect()
    gc.freeze()  # children never walk (and so never copy) the worker's own objects
    worker.start_forker(close=(proto_in.fileno(), proto_out))
    os.write(proto_out, (json.dumps({"ready": True, "pid": os.getpid(), "layers": worker.layers}) + "\n").encode())
    for line in _lines(lambda: proto_in.read(1 << 16)):
        job = json.loads(line)
        try:
            verdict = worker.run(job)
        except _ForkerGone:
            os._exit(1)  # the pool re-runs the job on a fresh worker
        except BaseException as e:  # noqa: BLE001 - keep serving; the job gets harness_error
            verdict = {"status": "harness_error", "error_type": type(e).__name__, "detail": str(e)[:300]}
        if verdict is None:  # the harness is gone
            break
        data = (json.dumps({**verdict, "id": job["id"]}) + "\n").encode()
        while data:
            data = data[os.write(proto_out, data):]
    worker.stop_forker()
    if worker.pid1:
        os._exit(0)
    scratch.remove(worker.scratch)

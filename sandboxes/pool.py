"""SandboxPool: warm worker processes that run untrusted programs and return honest verdicts.

    with SandboxPool(tier="auto") as pool:
        for key, verdict in pool.run(jobs):   # jobs: any iterable of Job, read lazily
            ...

The tiers (process, hardened, bwrap; `tier="auto"` takes the strongest that works here) are
described in `tiers.py`.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import queue
import selectors
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from . import scratch
from .tiers import TIER_NAMES, TIERS, TIERS_BY_NAME, Tier, probe_tier, probe_tiers, runtime_read_paths
from .types import Job, Limits, SandboxUnavailable, Verdict

# The worker imports only `sandboxes.worker` (+ `_linux`), not the package's __init__ and
# this module: less memory to copy-on-write in every forked child.
_BOOT = ("import sys, types; pkg = types.ModuleType('sandboxes'); pkg.__path__ = [{pkg!r}]; "
         "sys.modules['sandboxes'] = pkg; from sandboxes.worker import main; main()")
_START_TIMEOUT_S = 60.0
_WATCHDOG_GRACE_S = 30.0  # a worker silent this long past a job's wall cap is killed


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
_WORKER_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _resolve(name: str) -> Tier:
    """The tier `name` stands for; "auto": the strongest that works here."""
    if name == "auto":
        usable = [t for t in TIERS if probe_tier(t.name)[0]]
        if not usable:
            raise SandboxUnavailable("no sandbox tier works here: " + probe_tier(TIERS[0].name)[1])
        return usable[-1]
    if name not in TIERS_BY_NAME:
        raise SandboxUnavailable(f"unknown sandbox tier {name!r}; choose {', '.join(TIER_NAMES)}")
    ok, reason = probe_tier(name)
    if not ok:
        raise SandboxUnavailable(f"sandbox tier {name!r} is not available here: {reason}")
    return TIERS_BY_NAME[name]


class SandboxPool:
    """A pool of warm sandbox workers; see the module docstring."""

    def __init__(self, workers: int | None = None, tier: str = "auto"):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._tier = _resolve(tier)
        self.tier = self._tier.name
        self.respawns = 0
        self._read_paths = runtime_read_paths()
        scratch.reap_stale()  # left by harness processes that were killed
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
        t, launch = self._tier, self._tier.launch(self._read_paths)
        return {"read_paths": self._read_paths if t.confine_programs else [],
                "make_namespaces": t.own_namespaces, "launcher_namespaces": launch.namespaces,
                "confine_programs": t.confine_programs, "permission_is_violation": t.permission_is_violation}

    def _start(self) -> _Worker:
        launch = self._tier.launch(self._read_paths)
        # The pool owns the worker's scratch dir: a worker in its own mount namespace makes the
        # filesystem read-only there and so cannot remove it itself. bwrap has a private /tmp.
        where = None if launch.private_tmp else scratch.make()
        config = {**self._worker_config(), "scratch": where}
        cmd = [*launch.prefix, sys.executable, "-I", "-c", _BOOT.format(pkg=launch.package_dir), json.dumps(config)]
        errlog = tempfile.TemporaryFile()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, env=_WORKER_ENV,
                                close_fds=True, start_new_session=True, cwd="/")
        return _Worker(proc, errlog, where)

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
            try:
                scratch.remove(w.scratch)
            except OSError:
                pass  # reaped by a later pool

    def _respawn(self, *indices: int) -> None:
        """Replace these workers, the new ones starting side by side (an abandoned run replaces
        every busy worker, and a start takes a few hundred ms)."""
        for i in indices:
            self._stop(self._pool[i], graceful=False)
            self._pool[i] = self._start()  # in the pool at once: close() stops it if a start fails
        for i in indices:
            self._await_ready(self._pool[i])
        self.respawns += len(indices)

    # ---------------------------------------------------------------- run

    def run(self, jobs: Iterable[Job], cancel: threading.Event | None = None) -> Iterator[tuple[object, Verdict]]:
        """Run jobs, yielding (key, verdict) as they complete. `jobs` is consumed lazily by a
        feeder thread, at most about 2 * workers ahead of the verdicts. Setting `cancel` (from
        another thread: an interrupted run) ends the run within about a second; the workers of
        programs still running are replaced, as when the caller stops reading."""
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
            while cancel is None or not cancel.is_set():
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
            busy = [i for i, w in enumerate(self._pool) if w.inflight]
            for i in busy:  # abandoned mid-run: their verdicts must not leak into a later run
                self._pool[i].inflight.clear()
            self._respawn(*busy)

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
        """Sandbox settings for the run manifest: tier, what it protects against and what not,
        whether its passes are verified, active and missing layers with reasons."""
        layers = {
            "rlimits": {"active": True, "reason": "AS, CPU, FSIZE, NOFILE, CORE=0 per program"},
            "session_and_private_dir": {"active": True, "reason": "new session, own work dir as cwd (emptied, "
                                        "with the rest of the scratch dir, before the next program), scrubbed env, "
                                        "stdin /dev/null, output cap"},
            "verdict_token": {"active": True, "reason": "pass needs a per-job secret written after the checks"},
        }
        layers.update(self._pool[0].layers if self._pool else {})
        return {
            "tier": self.tier,
            **self._tier.to_record(),
            "probe": probe_tier(self.tier)[1],
            "workers": len(self._pool),
            "tiers": {name: {"available": ok, "reason": reason} for name, (ok, reason) in probe_tiers().items()},
            "layers": {k: v["reason"] for k, v in layers.items() if v["active"]},
            "missing": {k: v["reason"] for k, v in layers.items() if not v["active"]},
            "python": sys.executable,
            "uid": os.geteuid(),
            "timeouts": f"CPU-time limit per program, wall cap {Limits.wall_cap_rule()} by default; a timeout is "
                        "re-run once on an idle worker",
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

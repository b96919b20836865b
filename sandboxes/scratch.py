"""Scratch directories: named after the harness process that owns them, emptied without
recursion (a program may leave a tree thousands of levels deep, with odd modes), and reaped
once their owner is gone (a SIGKILLed harness cannot clean up after itself)."""
from __future__ import annotations

import os
import re
import stat
import tempfile

PREFIX = "evalharness-sbx-"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)-(\d+)-")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (clock ticks since boot), None if no such process: with the
    pid it names one process for good, whatever pid reuse happens later."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def make(parent: str | None = None) -> str:
    """A new private (0700) scratch dir whose name says which process owns it."""
    pid = os.getpid()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{pid}-{_start_time(pid) or 0}-", dir=parent)


def empty(path: str, keep: frozenset[str] = frozenset()) -> None:
    """Remove everything below `path` except its direct entries named in `keep`; `path` stays.

    Iterative, one or two fds at a time, never following a symlink, and restoring the owner's
    permissions on directories a program locked: depth and modes cannot stop it."""
    os.chmod(path, stat.S_IRWXU)
    top = os.open(path, _DIR_FLAGS)
    fd, names = top, []  # names: the directories entered below `path`, in order
    try:
        while True:
            sub = None
            with os.scandir(fd) as it:
                for entry in it:
                    if not names and entry.name in keep:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        sub = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if sub is not None:
                os.chmod(sub, stat.S_IRWXU, dir_fd=fd)  # a program may have left it 000
                child = os.open(sub, _DIR_FLAGS, dir_fd=fd)
                if fd != top:
                    os.close(fd)
                fd = child
                names.append(sub)
                continue
            if not names:
                return
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        if fd != top:
            os.close(fd)
        os.close(top)


def remove(path: str) -> None:
    """Remove the scratch dir `path` and everything in it; a missing one is fine."""
    try:
        empty(path)
        os.rmdir(path)
    except FileNotFoundError:
        pass


def reap_stale(parent: str | None = None) -> list[str]:
    """Remove the scratch dirs (ours, by uid) whose owning process no longer exists. Returns them."""
    parent = parent or tempfile.gettempdir()
    reaped = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return reaped
    for entry in entries:
        m = _NAME.match(entry.name)
        if not m:
            continue
        pid, started = int(m.group(1)), int(m.group(2))
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
        except OSError:
            continue
        if _start_time(pid) == started:
            continue  # its owner is alive
        try:
            remove(entry.path)
            reaped.append(entry.path)
        except OSError:
            pass  # someone else's mount, a race with another reaper: leave it
    return reaped

"""Thin ctypes wrappers for the Linux calls the sandbox needs and `os` lacks.

x86_64 only for the raw syscall numbers (Landlock, seccomp); every helper
raises OSError on failure so callers can probe and fall back.
"""
from __future__ import annotations

import ctypes
import os
import platform

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

X86_64 = platform.machine() == "x86_64"

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUTS = 0x04000000
CLONE_THREAD = 0x00010000

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MS_REC, MS_PRIVATE = 0x4000, 1 << 18

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


_SYS_mount_setattr, _AT_FDCWD, _AT_RECURSIVE = 442, -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
MS_BIND = 0x1000


def mount_setattr(path: str, set_: int = 0, clear: int = 0, recursive: bool = True) -> None:
    """Change mount flags (read-only, nodev, ...) at `path`, and below it when `recursive`."""
    if not X86_64:
        raise OSError(0, "mount_setattr number wired for x86_64 only")
    attr = _MountAttr(set_, clear, 0, 0)
    _check(_libc.syscall(_SYS_mount_setattr, _AT_FDCWD, path.encode(),
                         ctypes.c_uint(_AT_RECURSIVE if recursive else 0),
                         ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))), f"mount_setattr {path}")


def remount_readonly(path: str) -> None:
    mount_setattr(path, MOUNT_ATTR_RDONLY)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), "prctl")


_SYS_capset, _PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 126, 24, 47, 4


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Give up every capability for good (bounding, ambient, effective, permitted, inheritable).
    A uid-0 process keeps its uid but can no longer set the clock, load modules, write raw
    devices, or override file permissions."""
    for cap in range(64):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 and ctypes.get_errno() == 22:
            break  # EINVAL: past the last capability this kernel knows
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.syscall(_SYS_capset, ctypes.byref(header), ctypes.byref(data)), "capset")


# ---------------------------------------------------------------- Landlock

_SYS_landlock_create_ruleset, _SYS_landlock_add_rule, _SYS_landlock_restrict_self = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
FS_TRUNCATE, FS_IOCTL_DEV = 1 << 14, 1 << 15
_FS_BITS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """Landlock ABI version of the running kernel (OSError when unsupported)."""
    if not X86_64:
        raise OSError(0, "Landlock syscall numbers are only wired for x86_64")
    return _check(_libc.syscall(_SYS_landlock_create_ruleset, None, ctypes.c_size_t(0),
                                ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION)), "landlock_create_ruleset")


def landlock_ruleset(abi: int, read_paths: list[str], write_paths: list[str], rw_files: list[str],
                     list_paths: list[str] = ()) -> int:
    """A Landlock ruleset fd: read (and map) under `read_paths`, anything under `write_paths`,
    read/write the single files `rw_files`, list (names only, no file reads) under `list_paths`;
    no TCP bind/connect (ABI>=4); no signals or abstract sockets outside the domain (ABI>=6).
    Build once, enforce per process."""
    fs = _FS_BITS_BY_ABI.get(abi, (1 << 16) - 1)
    attr = _RulesetAttr(fs, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    rfd = _check(_libc.syscall(_SYS_landlock_create_ruleset, ctypes.byref(attr), ctypes.c_size_t(size),
                               ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        file_bits = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | (FS_TRUNCATE if abi >= 3 else 0)
        rules = [(p, FS_EXECUTE | FS_READ_FILE | FS_READ_DIR) for p in read_paths]
        rules += [(p, fs) for p in write_paths]
        rules += [(p, (FS_READ_FILE | FS_WRITE_FILE | (FS_TRUNCATE if abi >= 3 else 0))) for p in rw_files]
        rules += [(p, FS_READ_DIR) for p in list_paths]
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a missing optional path is simply not allowed
            try:
                if not os.path.isdir(path):
                    access &= file_bits
                rule = _PathBeneath(access, fd)
                _check(_libc.syscall(_SYS_landlock_add_rule, rfd, _LANDLOCK_RULE_PATH_BENEATH,
                                     ctypes.byref(rule), ctypes.c_uint32(0)), f"landlock_add_rule {path}")
            finally:
                os.close(fd)
    except BaseException:
        os.close(rfd)
        raise
    return rfd


def landlock_enforce(ruleset_fd: int) -> None:
    """Confine this process (and its future children) to the ruleset; sets no_new_privs."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(_libc.syscall(_SYS_landlock_restrict_self, ruleset_fd, ctypes.c_uint32(0)), "landlock_restrict_self")


def landlock_restrict(abi: int, read_paths: list[str], write_paths: list[str], rw_files: list[str]) -> None:
    rfd = landlock_ruleset(abi, read_paths, write_paths, rw_files)
    try:
        landlock_enforce(rfd)
    finally:
        os.close(rfd)


# ----------------------------------------------------------------- seccomp

class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_JSET_K, _BPF_JGE_K, _BPF_RET_K = 0x20, 0x15, 0x45, 0x35, 0x06
_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ALLOW, _RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
_RET_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38

# x86_64 numbers. Denied with EPERM: networking sockets (socketpair only for AF_UNIX: a connected
# pair reaches nothing outside; asyncio's event loop needs one), new processes, exec,
# signals to other processes, tracing and memory peeking, namespaces, mounts,
# kernel-extension surfaces, session changes.
_DENY = {
    "socket": 41, "fork": 57, "vfork": 58, "execve": 59, "execveat": 322,
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272, "setns": 308,
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "bpf": 321,
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "setsid": 112, "setpgid": 109,
    "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "pidfd_send_signal": 424, "pidfd_open": 434,
    "pidfd_getfd": 438, "keyctl": 250, "add_key": 248, "request_key": 249, "perf_event_open": 298,
    "userfaultfd": 323, "kexec_load": 246, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163, "open_by_handle_at": 304, "mknod": 133,
    "mknodat": 259, "fsopen": 430, "fsmount": 432, "open_tree": 428, "move_mount": 429,
    "personality": 135, "process_madvise": 440, "kcmp": 312,
    "sethostname": 170, "setdomainname": 171, "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305,
    "adjtimex": 159, "syslog": 103, "quotactl": 179, "iopl": 172, "ioperm": 173, "vhangup": 153,
}
_CLONE, _CLONE3, _KILL, _TKILL, _TGKILL, _SOCKETPAIR = 56, 435, 62, 200, 234, 53
_AF_UNIX = 1


def seccomp_install(own_pid: int) -> None:
    """Install the filter: the calls in _DENY fail with EPERM; clone only for threads
    (clone3 answers ENOSYS so libc falls back to clone); kill/tkill/tgkill only at
    `own_pid`; socketpair only for AF_UNIX. Irreversible for this process and whatever it
    would start."""
    if not X86_64:
        raise OSError(0, "seccomp filter is only written for x86_64")
    ins: list[tuple[int, int, int, int]] = []
    J = lambda k, jt, jf: (_BPF_JEQ_K, jt, jf, k)  # noqa: E731
    ins.append((_BPF_LD_W_ABS, 0, 0, 4))  # arch
    ins.append(J(_AUDIT_ARCH_X86_64, 1, 0))
    ins.append((_BPF_RET_K, 0, 0, _RET_KILL_PROCESS))
    ins.append((_BPF_LD_W_ABS, 0, 0, 0))  # nr
    ins.append((_BPF_JGE_K, 0, 1, 0x40000000))  # x32 ABI: deny
    ins.append((_BPF_RET_K, 0, 0, _RET_ERRNO | _EPERM))
    deny = sorted(set(_DENY.values()))
    # Blocks appended at the end; indexes patched below.
    tail: list[tuple[int, int, int, int]] = []
    # jump table: for each special nr, JEQ -> its handler
    specials = [_CLONE, _CLONE3, _KILL, _TKILL, _TGKILL, _SOCKETPAIR]
    head_len = len(ins) + len(deny) + len(specials) + 1  # +1 for the final ALLOW
    # handler layout after head: EPERM ret, ENOSYS ret, clone handler (3), socketpair handler (4),
    # pid handler (4)
    h_eperm = head_len
    h_enosys = h_eperm + 1
    h_clone = h_enosys + 1
    h_socketpair = h_clone + 3
    h_pid = h_socketpair + 4
    for i, nr in enumerate(deny):
        pos = len(ins)
        ins.append(J(nr, h_eperm - pos - 1, 0))
    for nr in specials:
        pos = len(ins)
        target = {_CLONE: h_clone, _CLONE3: h_enosys, _SOCKETPAIR: h_socketpair}.get(nr, h_pid)
        ins.append(J(nr, target - pos - 1, 0))
    ins.append((_BPF_RET_K, 0, 0, _RET_ALLOW))
    assert len(ins) == head_len
    tail.append((_BPF_RET_K, 0, 0, _RET_ERRNO | _EPERM))  # h_eperm
    tail.append((_BPF_RET_K, 0, 0, _RET_ERRNO | _ENOSYS))  # h_enosys
    tail.append((_BPF_LD_W_ABS, 0, 0, 16))  # h_clone: args[0] low word = flags
    tail.append((_BPF_JSET_K, 0, 1, CLONE_THREAD))
    tail.append((_BPF_RET_K, 0, 0, _RET_ALLOW))
    tail.append((_BPF_LD_W_ABS, 0, 0, 16))  # h_socketpair: args[0] low word = domain
    tail.append(J(_AF_UNIX, 0, 1))
    tail.append((_BPF_RET_K, 0, 0, _RET_ALLOW))
    tail.append((_BPF_RET_K, 0, 0, _RET_ERRNO | _EPERM))
    # h_pid: falls through to EPERM below if args[0] != own pid
    tail.append((_BPF_LD_W_ABS, 0, 0, 16))  # args[0] low word = pid / tgid
    tail.append(J(own_pid & 0xFFFFFFFF, 0, 1))
    tail.append((_BPF_RET_K, 0, 0, _RET_ALLOW))
    tail.append((_BPF_RET_K, 0, 0, _RET_ERRNO | _EPERM))
    ins += tail
    # fix: the clone handler's "not a thread" branch must land on EPERM; it is
    # the instruction right after ALLOW, i.e. the h_socketpair load - reroute it.
    clone_jset = h_clone + 1
    ins[clone_jset] = (_BPF_JSET_K, 0, (len(ins) - 1) - clone_jset - 1, CLONE_THREAD)
    prog = (_SockFilter * len(ins))(*[_SockFilter(*x) for x in ins])
    fprog = _SockFprog(len(ins), ctypes.cast(prog, ctypes.POINTER(_SockFilter)))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0), "seccomp")

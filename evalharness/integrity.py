"""Integrity mode's mechanics (`--integrity strict`, scoring.StrictScoring): the checks run in the trusted
parent, only the candidate in the sandbox.

The sandbox program is the task's prefix, the completion, and a driver that
calls the entry point once per literal input of the checks and prints, on one
marked line, what each call returned (its repr) or raised (the exception's
class names). It holds no check and no expected value. The parent parses those
results as literals (never running them), execs the task's checks with the
solution's names bound to a stub that replays them, and judges: AssertionError
is `failed`, another exception `error`, a clean run `passed`. An always-equal
object cannot cross (its repr is no literal, or parses to a plain value), and an
early exit leaves no results line. A program that made all its calls is judged
here even when the sandbox found it `suspicious` (a marker in its source): its
results are literals, so nothing it did there can make a wrong answer pass. Any
other status (timeout, a program stopped before its calls finished, ...) is kept
as the sandbox gave it.
"""
from __future__ import annotations

import builtins
import time
import warnings
from dataclasses import dataclass, replace
from types import CodeType

from evalharness.sandboxes import Verdict
from evalharness.tasks import LiteralChecks
from evalharness.tasks.literal import parse_literal, same_value

RESULTS_MARK = "@@evalharness-integrity-results@@ "
_BIG_INT_BITS = 14_000  # about 4,200 decimal digits: larger ints cross in hex (no str-conversion limit)

# The driver appended to prefix + completion. It must not read frames or other introspection
# the sandbox's guard stops (sandboxes/judge.py), or every program would be `suspicious`.
_DRIVER = '''

def _evalharness_driver(solution, calls):
    """Integrity mode: call the solution on literal inputs, print what it returned or raised."""
    import collections
    import os
    import sys

    def literal(value):
        kind = type(value)
        if kind is collections.defaultdict:
            kind, value = dict, dict(value)  # its repr names the factory; as a dict it compares the same
        if kind is int and value.bit_length() > {big}:
            return hex(value)
        if kind is list:
            return "[" + ", ".join(map(literal, value)) + "]"
        if kind is tuple:
            return "(" + "".join(literal(item) + ", " for item in value) + ")"
        if kind is set:
            return "{{" + ", ".join(map(literal, value)) + "}}" if value else "set()"
        if kind is dict:
            return "{{" + ", ".join(literal(k) + ": " + literal(v) for k, v in value.items()) + "}}"
        return repr(value)

    results = []
    for make in calls:
        args, kwargs = make()
        try:
            value = solution(*args, **kwargs)
        except MemoryError:
            raise
        except Exception as error:
            results.append(("raise", [cls.__name__ for cls in type(error).__mro__]))
            continue
        try:
            results.append(("ok", literal(value)))
        except Exception:
            results.append(("opaque", type(value).__name__))
    for stream in (sys.stdout, sys.stderr):  # the solution's own prints go before the results line
        try:
            stream.flush()
        except Exception:
            pass
    os.write(1, ("\\n" + {mark!r} + ascii(results) + "\\n").encode())


def _evalharness_calls():
    inf, nan = float("inf"), float("nan")
    return [
{calls}
    ]


_evalharness_driver({entry_point}, _evalharness_calls())
'''


class NonLiteralResult(Exception):
    """The solution returned a value with no literal form; every use of it in the checks fails."""


class UnrecordedCall(Exception):
    """The checks made a call the sandbox did not record (a gap in the static analysis)."""


@dataclass(frozen=True)
class StrictChecks:
    """A served problem's checks, compiled and parsed once: the parent runs them for every sample."""

    literal: LiteralChecks
    setup_code: CodeType
    checks_code: CodeType
    calls: tuple  # the (args, kwargs) value of each literal call

    @classmethod
    def of(cls, literal: LiteralChecks) -> "StrictChecks":
        with warnings.catch_warnings():  # datasets hold invalid escapes like "\w" in plain strings
            warnings.simplefilter("ignore")
            setup = compile(literal.setup, "<setup>", "exec", dont_inherit=True)
            checks = compile(literal.checks, "<checks>", "exec", dont_inherit=True)
        return cls(literal, setup, checks, tuple(parse_literal(text) for text in literal.calls))


def program(checks: StrictChecks, completion: str) -> str:
    """The sandbox program: the solution and the driver, fed the literal inputs only."""
    literal = checks.literal
    calls = "".join(f"        lambda: {text},\n" for text in literal.calls)
    return literal.prefix + completion + "\n" + _DRIVER.format(
        big=_BIG_INT_BITS, entry_point=literal.entry_point, mark=RESULTS_MARK, calls=calls)


def judge(checks: StrictChecks, verdict: Verdict) -> Verdict:
    """The parent's verdict: replay the sandbox's recorded results to the checks. A `suspicious` program
    is judged too when it recorded a result for every call; without them the sandbox's verdict stands."""
    recorded = recorded_results(verdict.output) if verdict.status in ("passed", "suspicious") else None
    complete = recorded is not None and len(recorded) == len(checks.calls)
    if verdict.status != "passed" and not complete:
        return replace(verdict, output="")
    start = time.monotonic()
    if not complete:
        got = "no" if recorded is None else f"{len(recorded)} of {len(checks.calls)}"
        return Verdict("failed", None, f"integrity: {got} recorded results (the program ended before its "
                       "calls finished?)", verdict.duration_s)
    stub = _Replay(checks.calls, recorded)
    namespace: dict = {"__name__": "__main__"}
    status, error_type, detail = "passed", None, ""
    try:
        exec(checks.setup_code, namespace)
        namespace[checks.literal.target] = namespace[checks.literal.entry_point] = stub
        exec(checks.checks_code, namespace)
    except AssertionError as e:
        status, error_type, detail = "failed", type(e).__name__, _describe(e)
    except UnrecordedCall as e:
        status, error_type, detail = "harness_error", "UnrecordedCall", str(e)
    except Exception as e:  # noqa: BLE001 - what the checks raised (or replayed from the solution)
        status, error_type, detail = "error", type(e).__name__, _describe(e)
    return Verdict(status, error_type, detail[:300], round(verdict.duration_s + time.monotonic() - start, 4))


def recorded_results(output: str) -> list[tuple] | None:
    """The last results line of the program's output, checked for shape; None if absent or malformed."""
    at = output.rfind("\n" + RESULTS_MARK)
    if at < 0:
        return None
    line = output[at + 1 + len(RESULTS_MARK):].split("\n", 1)[0]
    try:
        rows = parse_literal(line)
    except ValueError:
        return None
    if not isinstance(rows, list):
        return None
    for row in rows:
        ok = isinstance(row, tuple) and len(row) == 2 and row[0] in ("ok", "raise", "opaque")
        if not ok or not isinstance(row[1], list if row[0] == "raise" else str):
            return None
        if row[0] == "raise" and not all(isinstance(name, str) for name in row[1]):
            return None
    return rows


class _Replay:
    """Stands for the solution in the parent: returns (or raises) what the sandbox recorded for
    the first unused call with the same arguments, so call order does not matter."""

    def __init__(self, calls: tuple, recorded: list[tuple]):
        self.calls, self.recorded = calls, recorded
        self.unused = list(range(len(calls)))

    def __call__(self, *args, **kwargs):
        for i in self.unused:
            if same_value(self.calls[i], (args, kwargs)):
                self.unused.remove(i)
                return self._result(*self.recorded[i])
        raise UnrecordedCall(f"integrity: the checks made a call the sandbox did not record: {_short(args)}")

    @staticmethod
    def _result(kind: str, payload):
        if kind == "raise":
            raise _exception(payload)
        if kind == "ok":
            try:
                return parse_literal(payload)
            except ValueError:
                return _Opaque(f"a value whose repr is not a literal ({_short(payload)})")
        return _Opaque(f"a {_short(payload)}")


class _Opaque:
    """What a non-literal return value becomes: comparing, testing or iterating it raises."""

    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what

    def _refuse(self, *_):
        raise NonLiteralResult(f"the solution returned {self.what}")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __bool__ = __len__ = __iter__ = __contains__ = __hash__ = __getitem__ = _refuse

    def __repr__(self) -> str:
        return f"<non-literal: {self.what}>"


def _exception(mro_names: list[str]) -> Exception:
    """The recorded exception rebuilt in the parent: its nearest builtin Exception class,
    under the recorded name so the verdict's error type matches the standard mode's."""
    base = next((c for c in (getattr(builtins, n, None) for n in mro_names)
                 if isinstance(c, type) and issubclass(c, Exception)), RuntimeError)
    name = mro_names[0] if mro_names and mro_names[0].isidentifier() else base.__name__
    cls = base if name == base.__name__ else type(name, (base,), {})
    try:
        return cls("raised by the solution in the sandbox")
    except TypeError:  # UnicodeDecodeError & co want more arguments
        return cls.__new__(cls)


def _describe(e: BaseException) -> str:
    """`Type: message (setup line N)`, the line being the checks' own where it was raised."""
    line, tb = None, e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in ("<setup>", "<checks>"):
            line = (tb.tb_frame.f_code.co_filename.strip("<>"), tb.tb_lineno)
        tb = tb.tb_next
    message = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return message + (f" ({line[0]} line {line[1]})" if line else "")


def _short(value) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


__all__ = ["NonLiteralResult", "StrictChecks", "judge", "program", "recorded_results"]

"""Integrity mode's static side: which checks can run in the trusted parent, fed only literals.

A problem is served when, read from its AST (never by running it):
- every use of the solution in the checks is a call whose arguments each pass
  `ast.literal_eval` (no `*args` / `**kwargs`), so the sandbox can make the same
  call from literal source and the parent can replay its result;
- each such call runs at most once: not in a loop, comprehension, lambda or
  nested function, and a function the checks hand the solution to
  (HumanEval's `check(candidate)`) is handed it once, at top level;
- every other name the checks load is a builtin or bound by the checks
  themselves (names only the prompt or the solution defines, e.g. HumanEval/38's
  `encode_cyclic`, cannot be resolved in the parent).

Otherwise the problem is not served, with a one-line reason; nothing is guessed.
"""
from __future__ import annotations

import ast
import builtins
import collections
import math

from .base import NotLiteral, parse_quietly, parse_source

BUILTIN_NAMES = frozenset(dir(builtins))
# A call in any of these can run more than once (or never be reached in a knowable order).
_REPEATING = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
              ast.Lambda, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_CONTAINERS = {"frozenset": frozenset, "Counter": collections.Counter, "OrderedDict": collections.OrderedDict,
               "deque": collections.deque}
_NONFINITE = {"inf": math.inf, "nan": math.nan, "infj": complex(0, math.inf), "nanj": complex(0, math.nan)}


def literal_calls(setup: str, checks: str, target: str, *, task_id: str, entry_point: str | None = None,
                  labels: tuple[str, str] = ("setup", "checks")) -> tuple[str, ...]:
    """The `(args, kwargs)` literal source of every call of the solution in `setup` + `checks`.

    `checks` runs with `target` (and `entry_point`, the solution's global name) bound to
    the solution; it may hand `target` whole to a function `setup` defines
    (`check(candidate)`), whose parameter is then followed the same way. Calls come in
    visiting order. Raises NotLiteral with the reason when the problem cannot be served;
    `labels` name the two texts in that reason.
    """
    setup_tree = _parse(setup, task_id, labels[0])
    checks_tree = _parse(checks, task_id, labels[1])
    defs = {n.name: n for n in setup_tree.body if isinstance(n, ast.FunctionDef)}
    solution = {target} | ({entry_point} if entry_point else set())
    top = _Scope(solution, task_id, labels[1], handoff=defs)
    top.scan(checks_tree.body)
    calls, handed = list(top.calls), set()
    for fn in top.handed:
        if fn.name in handed:
            raise NotLiteral(f"{task_id}: {labels[1]} hand {target} to {fn.name} more than once")
        handed.add(fn.name)
        params = fn.args.posonlyargs + fn.args.args
        if not params:
            raise NotLiteral(f"{task_id}: {fn.name} takes no positional parameter for {target}")
        inner = _Scope({params[0].arg} | solution - {target}, task_id, labels[0])
        inner.scan(fn.body)
        calls += inner.calls
    rest = [n for n in setup_tree.body if not (isinstance(n, ast.FunctionDef) and n.name in handed)]
    _Scope(solution, task_id, labels[0], calls_allowed=False).scan(rest)
    free = free_names(setup_tree, checks_tree) - solution - BUILTIN_NAMES
    if free:
        raise NotLiteral(f"{task_id}: the checks use names only the solution or prompt defines: "
                         f"{', '.join(sorted(free))}")
    return tuple(text for _, _, _, text in calls)


def solution_name(setup: str, checks: str, *, task_id: str, reference: str = "",
                  labels: tuple[str, str] = ("setup", "checks")) -> str:
    """The one name the checks use without defining it (MBPP's function under test).

    A builtin name counts when the reference solution redefines it (Mbpp/126 tests `sum`).
    """
    setup_tree, checks_tree = _parse(setup, task_id, labels[0]), _parse(checks, task_id, labels[1])
    free = free_names(setup_tree, checks_tree) - BUILTIN_NAMES
    try:
        defined = {n.name for n in _parse(reference, task_id, "reference").body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    except NotLiteral:
        defined = set()
    free |= defined & {n.id for tree in (setup_tree, checks_tree) for n in ast.walk(tree)
                       if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    if len(free) != 1:
        what = ", ".join(sorted(free)) if free else "none"
        raise NotLiteral(f"{task_id}: the checks need exactly one name from the solution, they use {what}")
    return free.pop()


def solution_names(checks: str, reference: str = "") -> tuple[str, ...]:
    """Every name `checks` loads that the solution may provide: not a builtin, unless the
    reference solution defines it at top level (Mbpp/126 tests its own `sum`). Names the
    checks bind themselves are included too: they rebind them after."""
    tree, ref = parse_quietly(checks), parse_quietly(reference)
    if tree is None:
        return ()
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    defined = {n.name for n in (ref.body if ref else ())
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    return tuple(sorted(n for n in loads if n not in BUILTIN_NAMES or n in defined))


def free_names(*trees: ast.AST) -> set[str]:
    """Names loaded anywhere in `trees` and bound nowhere in them (scope-blind, hence conservative
    only together with a run of every served reference solution, which the tests do)."""
    loads, bound = set(), set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (loads if isinstance(node.ctx, ast.Load) else bound).add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(node.name)
            elif isinstance(node, ast.arg):
                bound.add(node.arg)
            elif isinstance(node, ast.alias) and node.name != "*":
                bound.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.ExceptHandler) and node.name:
                bound.add(node.name)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                bound.update(node.names)
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                bound.add(node.name)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                bound.add(node.rest)
    return loads - bound


def constant_value(node: ast.expr):
    """The value of an argument made of literals only: `ast.literal_eval`, or constant
    arithmetic on literals (`3 * 19`, `'ab' + 'c'`, `0**0`), folded without names or calls."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    allowed = (ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.BinOp, ast.UnaryOp, ast.operator,
               ast.unaryop, ast.expr_context)
    if not all(isinstance(n, allowed) for n in ast.walk(node)):
        raise ValueError("not a constant expression")
    try:
        return eval(compile(ast.Expression(node), "<literal>", "eval"), {"__builtins__": {}})  # noqa: S307
    except Exception as e:  # noqa: BLE001 - 1 / 0 and friends are simply not literals
        raise ValueError(f"constant expression fails: {type(e).__name__}") from None


def same_value(a, b) -> bool:
    """Equal and of the same type all the way down (1 != 1.0 != True here); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    if isinstance(a, (float, complex)):
        return a == b or repr(a) == repr(b)
    return a == b


def parse_literal(text: str):
    """The value of a literal's source as repr writes it, never running code.

    Beyond `ast.literal_eval`: the names inf, nan, infj, nanj, and the value containers
    repr writes as one call on a literal (`frozenset({1})`, `Counter({'a': 2})`,
    `OrderedDict([('a', 1)])`, `deque([1])`). Anything else is a ValueError.
    """
    try:
        tree = parse_source(text.strip(), mode="eval")
        return ast.literal_eval(_Containers().visit(tree).body)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"not a literal: {type(e).__name__}") from None


class _Containers(ast.NodeTransformer):
    """Folds inf/nan names and whitelisted container calls into constants, innermost first."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        value = _NONFINITE.get(node.id)
        return node if value is None else ast.copy_location(ast.Constant(value), node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        make = _CONTAINERS.get(node.func.id) if isinstance(node.func, ast.Name) else None
        if make is None or node.keywords or len(node.args) > 1:
            return node  # literal_eval refuses it (set() aside)
        value = make(ast.literal_eval(node.args[0])) if node.args else make()
        return ast.copy_location(ast.Constant(value), node)


class _Scope(ast.NodeVisitor):
    """Walks statements where `names` denote the solution; collects its literal calls."""

    def __init__(self, names: set[str], task_id: str, label: str, handoff: dict | None = None,
                 calls_allowed: bool = True):
        self.names, self.task_id, self.label = names, task_id, label
        self.handoff = handoff or {}
        self.calls_allowed = calls_allowed
        self.calls: list[tuple[str, int, int, str]] = []  # (label, line, column, text)
        self.handed: list[ast.FunctionDef] = []
        self.depth = 0  # enclosing loops, comprehensions, lambdas, nested defs

    def scan(self, statements: list[ast.stmt]) -> None:
        for statement in statements:
            self.visit(statement)

    def generic_visit(self, node: ast.AST) -> None:
        repeating = isinstance(node, _REPEATING)
        self.depth += repeating
        super().generic_visit(node)
        self.depth -= repeating

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in self.names:
            if not self.calls_allowed:
                raise self._error(f"{func.id} is called before the checks bind it", node)
            if self.depth:
                raise self._error(f"{func.id} is called in a loop, comprehension or nested function", node)
            self.calls.append((self.label, node.lineno, node.col_offset, self._call_text(node)))
            return  # its arguments are literals: no names inside
        if (isinstance(func, ast.Name) and func.id in self.handoff and not self.depth and not node.keywords
                and len(node.args) == 1 and isinstance(node.args[0], ast.Name) and node.args[0].id in self.names):
            self.handed.append(self.handoff[func.id])
            return
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.names:
            raise self._error(f"{node.id} is used other than called with literal arguments", node)

    def _call_text(self, node: ast.Call) -> str:
        name = node.func.id
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._error(f"{name} is called with *arguments", node)
        for kw in node.keywords:
            if kw.arg is None:
                raise self._error(f"{name} is called with **arguments", node)
        try:
            args = tuple(constant_value(a) for a in node.args)
            kwargs = {kw.arg: constant_value(kw.value) for kw in node.keywords}
        except ValueError:
            raise self._error(f"{name} is called with a non-literal argument", node) from None
        text = repr((args, kwargs))
        try:
            if same_value(parse_literal(text), (args, kwargs)):
                return text
        except (ValueError, RecursionError):
            pass
        raise self._error(f"{name} is called with a value that has no literal form", node)

    def _error(self, what: str, node: ast.AST) -> NotLiteral:
        return NotLiteral(f"{self.task_id}: {what} ({self.label} line {node.lineno})")


def _parse(source: str, task_id: str, label: str) -> ast.Module:
    try:
        return parse_source(source)
    except (SyntaxError, ValueError) as e:
        raise NotLiteral(f"{task_id}: the {label} do not parse: {e}") from None

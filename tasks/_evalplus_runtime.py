"""EvalPlus differential checks: the checks of every humaneval-plus / mbpp-plus program (its prelude).

Standard library only, every name prefixed `_ep_` (modules imported under
aliases) so the checks can neither collide with a solution's names nor hide
an import the solution forgot. The comparison follows EvalPlus
(evalplus/eval/__init__.py and _special_oracle.py):

- an output passes when `out == expected`, with EvalPlus's per-problem special
  oracles (`oracle`: find_zero, are_equivalent, sum_div, surface_Area,
  digit_distance_nums, set_eq, not_none);
- floats: when `atol` is 0 and an expected value is a float or a non-empty
  list/tuple of floats, `atol` becomes 1e-6 and stays so for later inputs (as
  in EvalPlus, within the base or the plus inputs); a non-equal output then passes when it has the expected type
  (and length) and is elementwise within `atol + 1e-7 * |expected|`
  (`np.allclose(out, exp, rtol=1e-07, atol=atol)` without numpy);
- expected outputs too large to embed are a `_EpDigest` of a canonical form
  that respects `==` (1 == 1.0 == True; set and dict order ignored);
- time: each input may take max(1 s, 4 x the reference's time on it), as in EvalPlus;
  the sandbox enforces it in CPU time around each call of the solution
  (TestProgram.call_limits), outside these checks.

The sandbox runs these checks in a namespace of their own, before the solution: the
solution cannot rebind `bool` or any `_ep_` name for them, and every value it returns is
inspected for always-equal behaviour there (sandboxes/judge.py); standard output is
swallowed there too, as EvalPlus does. A mismatch raises AssertionError; when every
input passes the program simply ends.
"""
import collections as _ep_collections
import hashlib as _ep_hashlib
import json as _ep_json
import marshal as _ep_marshal
import math as _ep_math
import reprlib as _ep_reprlib


class _EpDigest(str):
    """An expected output stored as the sha256 of its canonical form (see `_ep_digest`)."""


def _ep_tagged(obj):
    """JSON object hook: every object in the payload is one tagged non-JSON value."""
    ((tag, value),) = obj.items()
    if tag == "tuple":
        return tuple(value)
    if tag == "set":
        return set(value)
    if tag == "frozenset":
        return frozenset(value)
    if tag == "dict":
        return {k: v for k, v in value}
    if tag == "Counter":
        return _ep_collections.Counter({k: v for k, v in value})
    if tag == "complex":
        return complex(*value)
    if tag == "int":
        return int(value, 16)
    if tag == "bytes":
        return bytes.fromhex(value)
    if tag == "digest":
        return _EpDigest(value)
    raise ValueError(f"unknown payload tag {tag!r}")


def _ep_decode(text):
    return _ep_json.loads(text, object_hook=_ep_tagged)


def _ep_digest(value):
    """Hex sha256 of a canonical form of `value`: equal under `==` means equal digest."""
    h = _ep_hashlib.sha256()
    _ep_feed(h, value)
    return h.hexdigest()


def _ep_feed(h, x):
    t = type(x)
    if t is str:
        h.update(_ep_marshal.dumps(x, 2))
    elif t is int or t is bool:
        h.update(b"i%x;" % x)
    elif t is float:
        h.update(b"i%x;" % int(x) if x.is_integer() else b"f" + x.hex().encode() + b";")
    elif t is complex:
        if x.imag == 0:
            _ep_feed(h, x.real)
        else:
            h.update(b"c" + x.real.hex().encode() + b"," + x.imag.hex().encode() + b";")
    elif x is None:
        h.update(b"N")
    elif t is list or t is tuple:
        h.update(b"%c%d:" % (76 if t is list else 84, len(x)))
        if x and set(map(type, x)) == {str}:
            h.update(_ep_marshal.dumps(x, 2))  # the common big case, at C speed
        else:
            for item in x:
                _ep_feed(h, item)
    elif t is set or t is frozenset:
        h.update(b"S%d:" % len(x) + b"".join(sorted(_ep_digest(i).encode() for i in x)))
    elif isinstance(x, dict):
        h.update(b"D%d:" % len(x) + b"".join(sorted((_ep_digest(k) + _ep_digest(v)).encode() for k, v in x.items())))
    else:
        raise TypeError(f"no canonical form for {t.__name__}")


def _ep_is_floats(x):
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _ep_close(out, exp, atol):
    """np.allclose(out, exp, rtol=1e-07, atol=atol) for numbers and equally long lists/tuples of them."""
    if isinstance(out, (list, tuple)) or isinstance(exp, (list, tuple)):
        return (isinstance(out, (list, tuple)) and isinstance(exp, (list, tuple)) and len(out) == len(exp)
                and all(_ep_close(o, e, atol) for o, e in zip(out, exp)))
    if isinstance(out, (str, bytes)) or isinstance(exp, (str, bytes)):
        return False  # numpy refuses to compare non-numbers with a tolerance
    return out == exp or abs(out - exp) <= atol + 1e-07 * abs(exp)


def _ep_poly(xs, x):
    """HumanEval/32's oracle: the polynomial with coefficients xs at x."""
    return sum(coeff * _ep_math.pow(x, i) for i, coeff in enumerate(xs))


def _ep_surface_area(base_edge, height):
    """Mbpp/581's oracle: a square pyramid's surface with `height` taken as the perpendicular height."""
    slant_height = _ep_math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def _ep_digit_distance(a, b):
    """Mbpp/558's oracle: digits compared after zero-padding both numbers to the same length."""
    x, y = str(a), str(b)
    width = max(len(x), len(y))
    return sum(abs(int(p) - int(q)) for p, q in zip(x.zfill(width), y.zfill(width)))


def _ep_same(out, exp, args, atol, oracle):
    """EvalPlus's verdict on one output; returns (passed, atol for the following inputs)."""
    exact = _ep_digest(out) == exp if type(exp) is _EpDigest else out == exp
    if oracle == "are_equivalent":  # Mbpp/164: the task is ambiguous; any output passes
        exact = True
    elif oracle == "sum_div":
        exact = exact or out == 0
    elif oracle == "surface_Area":
        exact = exact or abs(out - _ep_surface_area(*args)) <= atol
    elif oracle == "digit_distance_nums":
        exact = exact or out == _ep_digit_distance(*args)
    elif oracle == "set_eq":
        exact = set(out) == set(exp)
    elif oracle == "not_none":
        exact = out == exp if isinstance(out, bool) else exp == (out is not None)
    if atol == 0 and _ep_is_floats(exp):
        atol = 1e-6
    if not exact and atol != 0:
        passed = (type(out) == type(exp) and (not isinstance(exp, (list, tuple)) or len(out) == len(exp))
                  and _ep_close(out, exp, atol))
    else:
        passed = bool(exact)
    return passed, atol


def _ep_show(value):
    if type(value) is _EpDigest:
        return f"<large value, sha256 {value[:12]}...>"
    try:
        return _ep_reprlib.repr(value)
    except Exception:  # noqa: BLE001 - a hostile or huge value must not hide the mismatch
        return f"<{type(value).__name__}>"


def _ep_check(candidate, payload, atol, oracle):
    """Call `candidate` on every input of the payload, `[inputs, expected]` of one suite, from the
    problem's `atol` as EvalPlus checks a suite; AssertionError on the first mismatch."""
    inputs, expected = _ep_decode(payload)
    tolerance = atol
    for i, (args, exp) in enumerate(zip(inputs, expected)):
        out = candidate(*args)
        try:
            if oracle == "find_zero":
                passed = abs(_ep_poly(*args, out)) <= tolerance
            else:
                passed, tolerance = _ep_same(out, exp, args, tolerance, oracle)
        except Exception:  # noqa: BLE001 - EvalPlus counts a failing comparison as a mismatch
            passed = False
        if not passed:
            raise AssertionError(f"input {i + 1} of {len(inputs)}: expected {_ep_show(exp)}, got {_ep_show(out)}")

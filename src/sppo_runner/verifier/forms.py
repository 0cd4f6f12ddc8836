"""Equivalence rules for answer forms: labels, ratios, roundings, angles, families.

Used by :mod:`equivalence` inside worker processes. Each rule is narrow on
purpose; the module docstring of :mod:`approx` states the rounding rule.

* Labels: ``g(x) = ...``, ``Maximum = 2``, ``(x, y) = (1, 2)`` compare by
  their right side; two function labels may differ in their argument names
  (``f(n) = 2n`` is ``f(m) = 2m``); labelled lists are ordered by their labels.
* Ratios: ``a : b`` equals ``a/b`` and any proportional ratio; a gold that
  reads like a clock time (``12:05``) must match part by part.
* Angles: a degree sign is read either as decoration (``90^\\circ`` = ``90``)
  or as ``pi/180`` (``30^\\circ`` = ``\\frac{\\pi}{6}``).
* Integer parameters: ``k\\pi`` and ``n\\pi`` name the same family when the
  answer is a multiple-of-pi family in ``k``/``n``/``m`` or declares
  ``k \\in \\mathbb{Z}``; with a declaration, shifted and mirrored families
  count as equal (``\\frac{\\pi}{2} + k\\pi`` = ``-\\frac{\\pi}{2} + n\\pi``).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sympy
from sympy.core.function import AppliedUndef

from . import values as V
from .approx import terminates

Equal = Callable[[object, object], bool]
_PARAM_NAMES = frozenset({"k", "n", "m"})
_DEG_READINGS = (sympy.Integer(1), sympy.pi / 180)
_ORDERABLE_RE = re.compile(r"^[a-zA-Z](?:_(\d{1,3}))?$")
_INDEXED_RE = re.compile(r"^([a-zA-Z])_([a-z])$")
_declared: contextvars.ContextVar[dict] = contextvars.ContextVar("declared", default={})


# -- context ----------------------------------------------------------------
@contextmanager
def declared(params: dict[str, str]) -> Iterator[None]:
    """Makes ``params`` (name -> domain) the declared integer parameters."""
    token = _declared.set(params)
    try:
        yield
    finally:
        _declared.reset(token)


def unwrap(value: object) -> tuple[object, dict[str, str]]:
    """Splits a :class:`values.Family` into its value and declared parameters."""
    if isinstance(value, V.Family):
        return value.value, dict(value.params)
    return value, {}


def degree_readings(a: object, g: object) -> list[tuple[object, object]]:
    """The ``(answer, gold)`` pairs to try: one per reading of the degree sign."""
    if not (V.has_symbol(a, V.DEG) or V.has_symbol(g, V.DEG)):
        return [(a, g)]
    return [(V.transform(a, lambda x, r=r: x.subs(V.DEG, r)),
             V.transform(g, lambda x, r=r: x.subs(V.DEG, r))) for r in _DEG_READINGS]


# -- labels -----------------------------------------------------------------
def is_label(lhs: object) -> bool:
    """True for a left side that names a value rather than constraining it."""
    if isinstance(lhs, (sympy.Symbol, V.Label)):
        return True
    if isinstance(lhs, AppliedUndef):
        return all(a.is_Symbol or a.is_number for a in lhs.args)
    return isinstance(lhs, V.Seq) and lhs.open == "(" and all(
        isinstance(x, sympy.Symbol) for x in lhs.items)


def _indexed(symbol: object) -> tuple[str, sympy.Symbol] | None:
    """``a_n`` -> ("a", n): a sequence term with a one-letter dummy index."""
    if isinstance(symbol, sympy.Symbol):
        m = _INDEXED_RE.match(symbol.name)
        if m is not None:
            return m.group(1), sympy.Symbol(m.group(2))
    return None


def same_label(a: object, g: object) -> dict | None:
    """The renaming of answer arguments that makes two labels equal, or ``None``."""
    if isinstance(a, V.Label) and isinstance(g, V.Label):
        return {} if a.key == g.key else None
    a_index, g_index = _indexed(a), _indexed(g)
    if a_index is not None and g_index is not None and a_index[0] == g_index[0]:
        return {a_index[1]: g_index[1]}
    if isinstance(a, AppliedUndef) and isinstance(g, AppliedUndef):
        if a.func != g.func or len(a.args) != len(g.args):
            return None
        renaming = {}
        for x, y in zip(a.args, g.args):
            if x.is_Symbol and y.is_Symbol:
                renaming[x] = y
            elif not (x.is_number and y.is_number and x == y):
                return None
        return renaming if len(set(renaming.values())) == len(renaming) else None
    return None


def bind(lhs: object, rhs: object, other: object) -> object:
    """The right side of ``lhs = rhs``, compared with ``other``.

    The argument of a function label is a dummy: ``f(t) = t^2`` against the
    gold ``x^2`` renames ``t`` to ``x``; so is the index of ``a_k = 3k + 1``. A tuple label orders a labelled list:
    ``(y, x) = ...`` against ``x = 1, y = 2``.
    """
    index = _indexed(lhs)
    if (isinstance(lhs, AppliedUndef) or index is not None) and V.is_expr(rhs) \
            and V.is_expr(other):
        args = [index[1]] if index is not None else [x for x in lhs.args if x.is_Symbol]
        free = other.free_symbols - {V.DEG}
        if len(args) == 1 and rhs.free_symbols <= set(args) and len(free) == 1 \
                and args[0] not in free:
            return rhs.subs(args[0], next(iter(free)))
    return rhs


def align(names: V.Seq, value: object) -> object:
    """``x = 1, y = 2`` as the tuple ``names`` = ``(x, y)`` orders it, if it fits."""
    if not (isinstance(value, V.Bag) and not value.is_set):
        return value
    by_name = {}
    for item in value.items:
        if not (isinstance(item, V.Equation) and isinstance(item.lhs, sympy.Symbol)):
            return value
        by_name[item.lhs] = item.rhs
    if set(by_name) != set(names.items) or len(by_name) != len(value.items):
        return value
    return V.Seq("(", ")", tuple(by_name[n] for n in names.items))


def _order_key(lhs: object) -> tuple | None:
    if isinstance(lhs, sympy.Symbol):
        m = _ORDERABLE_RE.match(lhs.name)
        return None if m is None else ("letter", lhs.name[0], int(m.group(1) or -1))
    if isinstance(lhs, AppliedUndef) and all(x.is_Rational for x in lhs.args):
        return ("call", str(lhs.func), tuple(lhs.args))
    if isinstance(lhs, V.Label) and lhs.key in ("min", "max"):
        return ("extreme", "", lhs.key == "max")
    return None


def ordered_items(bag: V.Bag) -> tuple:
    """A labelled list in the order its labels give (``y = 2, x = 1`` -> 1, 2).

    Labels order when all are single Latin letters (with numeric subscripts),
    calls of one function at numbers (``T(10)``, ``T(11)``), or min/max words.
    Anything else keeps the written order.
    """
    items = bag.items
    if not all(isinstance(x, V.Equation) for x in items):
        return items
    keys = [_order_key(x.lhs) for x in items]
    if any(k is None for k in keys) or len(set(keys)) != len(keys) \
            or len({k[:2] if k[0] == "call" else k[0] for k in keys}) != 1:
        return items
    return tuple(x.rhs for _, x in sorted(zip(keys, items), key=lambda kx: kx[0]))


# -- ratios -------------------------------------------------------------------
def equal_ratio(a: object, g: object, equal: Equal) -> bool:
    """``2:1`` = ``4:2`` = ``2``; a clock-like gold (``12:05``) matches part by part."""
    if isinstance(a, V.Ratio) and isinstance(g, V.Ratio):
        if len(a.parts) != len(g.parts):
            return False
        if g.clock:
            return all(equal(x, y) for x, y in zip(a.parts, g.parts))
        if all(x == 0 for x in a.parts) or all(y == 0 for y in g.parts):
            return False
        return all(equal(x * g.parts[0], y * a.parts[0]) for x, y in zip(a.parts, g.parts))
    ratio, other = (a, g) if isinstance(a, V.Ratio) else (g, a)
    if ratio.clock or len(ratio.parts) != 2 or not V.is_expr(other) \
            or ratio.parts[1].is_zero is not False:
        return False
    value = V.divide(*ratio.parts)
    return equal(value, other) if ratio is a else equal(other, value)


# -- roundings ----------------------------------------------------------------
def equal_approx(a: object, g: object, equal: Equal) -> bool:
    """The rule of :mod:`approx` on parsed values (see its docstring)."""
    if not isinstance(g, V.Approx):  # an answer "exact \approx 1.36": its exact part
        return a.exact is not None and equal(a.exact, g)
    if g.exact is not None and equal(a, g.exact):
        return True
    shown = [a] if not isinstance(a, V.Approx) else [a.value] + (
        [a.exact] if a.exact is not None else [])
    return any(_rounds_to(x, g) for x in shown)


def _within(x: sympy.Expr, target: sympy.Expr, half_ulp: sympy.Expr) -> bool:
    diff = x - target
    if diff.is_Rational and half_ulp.is_Rational:
        return abs(diff) <= half_ulp
    d, h = diff.evalf(40), half_ulp.evalf(40)
    return bool(d.is_Float and h.is_Float and abs(d) <= h)


def _rounds_to(x: object, g: V.Approx) -> bool:
    if not (V.is_expr(x) and x.is_number) or x.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False
    if x == g.value:
        return True
    if x.is_Rational and g.exact is None and terminates(int(x.q)):
        return False  # a finite decimal is its own exact value: it must equal the gold
    if x.is_integer is True and g.value.is_integer is not True:
        return False  # an integer never matches a non-integer
    if not _within(x, g.value, g.half_ulp):
        return False
    return g.exact is None or not V.is_expr(g.exact) or _within(x, g.exact, g.half_ulp)


# -- integer-parameter families -------------------------------------------------
def _param_of(e: sympy.Expr, names: dict) -> sympy.Symbol | None:
    found = [s for s in e.free_symbols
             if s.name in names or (s.name in _PARAM_NAMES and e.has(sympy.pi))]
    return found[0] if len(found) == 1 else None


def _zero(e: sympy.Expr) -> bool:
    return e == 0 or sympy.simplify(e) == 0


def equal_families(a: sympy.Expr, g: sympy.Expr) -> bool:
    """``k\\pi`` vs ``n\\pi``: the same set of values over the integer parameter."""
    names = _declared.get()
    pa, pg = _param_of(a, names), _param_of(g, names)
    if pa is None or pg is None or a.free_symbols - {pa} != g.free_symbols - {pg}:
        return False
    if pa != pg and _zero(a.subs(pa, pg) - g):
        return True  # a renamed parameter
    if not (names.get(pa.name) == "integers" or names.get(pg.name) == "integers"):
        return False  # shifts and mirror images need a declared integer parameter
    a1, g1 = sympy.diff(a, pa), sympy.diff(g, pg)
    if not (a1.is_number and g1.is_number) or a1 == 0 or g1 == 0:
        return False
    if not (_zero(a1 - g1) or _zero(a1 + g1)):
        return False
    shift = sympy.simplify((a.subs(pa, 0) - g.subs(pg, 0)) / g1)
    return shift.is_integer is True

"""Symbolic equivalence of parsed answers (runs inside worker processes).

Rationals are compared exactly; irrational constants and expressions go
through sympy simplification. No float tolerance is ever applied: an exact
gold needs an exact answer, and the only rounding accepted is that of a gold
shown as a rounded decimal (the rule in :mod:`approx`). Labels, ratios,
angles and parameter families are in :mod:`forms`, sets in :mod:`sets`.
"""

from __future__ import annotations

import functools
import random
import re

import sympy

from . import forms
from . import values as V
from .approx import decimal_spec
from .normalize import split_percent
from .parse import parse
from .sets import equal_sets, is_setlike
from .tokens import ParseError

# Relative precision for the last-resort numeric check of two *irrational*
# closed forms that simplify() could not reconcile.
_NUMERIC_DIGITS = 60
_NUMERIC_TOL = sympy.Rational(1, 10**45)
_BASE_N_RE = re.compile(r"^(\d+)_\{?(\d+)\}?$")
_FLIP = {">": "<", ">=": "<="}


@functools.lru_cache(maxsize=4096)
def parse_cached(text: str) -> tuple[object, bool]:
    """Parses a normalized answer, stripping a trailing percent sign.

    Returns:
        ``(value, is_percent)``.

    Raises:
        ParseError: unparsable (not cached: lru_cache skips exceptions).
    """
    body, is_percent = split_percent(text)
    return parse(body), is_percent


def compare(answer: str, gold: str) -> str:
    """Compares two normalized answers.

    Args:
        answer: normalized extracted answer.
        gold: normalized gold answer.

    Returns:
        ``"correct"``, ``"wrong"`` or ``"unparsable"``.
    """
    try:
        a_value, a_pct = parse_cached(answer)
    except ParseError:
        return "unparsable"
    try:
        g_value, g_pct = parse_cached(gold)
    except ParseError:
        return "wrong"
    a_value, a_params = forms.unwrap(a_value)
    g_value, g_params = forms.unwrap(g_value)
    g_value = _rounded_gold(g_value, gold)
    candidates = [a_value]
    if V.is_expr(a_value):
        # "50%" may be meant as 50 or as 1/2, on either side.
        if a_pct:
            candidates.append(V.divide(a_value, sympy.Integer(100)))
        if g_pct:
            candidates.append(V.multiply(a_value, sympy.Integer(100)))
    with forms.declared({**g_params, **a_params}):
        for c in candidates:
            if any(equal(x, y) for x, y in forms.degree_readings(c, g_value)):
                return "correct"
    return "wrong"


def _rounded_gold(value: object, gold: str) -> object:
    """A bare decimal gold shown to enough digits becomes an :class:`Approx`."""
    text = split_percent(gold)[0].strip()
    degrees = text.endswith("°")
    spec = decimal_spec(text.rstrip("° "))
    if spec is None or not spec.rounded or not V.is_expr(value):
        return value
    scale = V.DEG if degrees else sympy.Integer(1)
    return V.Approx(None, _rational(spec.value) * scale, _rational(spec.half_ulp) * scale)


def _rational(value: object) -> sympy.Rational:
    return sympy.Rational(value.numerator, value.denominator)


def equal(a: object, g: object) -> bool:
    """True when answer value ``a`` is equivalent to gold value ``g``."""
    if isinstance(a, V.Equation) or isinstance(g, V.Equation):
        return _equal_equations(a, g)
    if isinstance(a, V.Approx) or isinstance(g, V.Approx):
        return forms.equal_approx(a, g, equal)
    if isinstance(a, V.Ratio) or isinstance(g, V.Ratio):
        return forms.equal_ratio(a, g, equal)
    if is_setlike(a) or is_setlike(g):
        if V.is_expr(a) or V.is_expr(g):
            return False  # a number is never a set of numbers
        verdict = equal_sets(a, g)
        if verdict is not None:
            return verdict
    if isinstance(a, V.Relation):
        a = _relation_to_interval(a)
    if isinstance(g, V.Relation):
        g = _relation_to_interval(g)
    if isinstance(g, V.Union) and isinstance(a, V.Bag) and not a.is_set:
        a = V.Union(tuple(_relation_to_interval(x) if isinstance(x, V.Relation) else x
                          for x in a.items))  # "x<2 or x>3"
    if isinstance(a, V.Bag) or isinstance(g, V.Bag):
        return _equal_bags(a, g)
    if isinstance(a, V.Union) or isinstance(g, V.Union):
        a_items = a.items if isinstance(a, V.Union) else (a,)
        g_items = g.items if isinstance(g, V.Union) else (g,)
        return _match_unordered(a_items, g_items)
    if isinstance(a, V.Matrix) or isinstance(g, V.Matrix):
        return _equal_matrices(a, g)
    if isinstance(a, V.Seq) or isinstance(g, V.Seq):
        return _equal_seqs(a, g)
    if isinstance(a, V.Relation) or isinstance(g, V.Relation):
        return _equal_relations(a, g)
    if V.is_expr(a) and V.is_expr(g):
        return equal_exprs(a, g)
    return False


def _equal_seqs(a: object, g: object) -> bool:
    if not (isinstance(a, V.Seq) and isinstance(g, V.Seq)):
        return False
    return (a.open, a.close) == (g.open, g.close) and _match_ordered(a.items, g.items)


def _match_ordered(a_items: tuple, g_items: tuple) -> bool:
    return len(a_items) == len(g_items) and all(equal(x, y) for x, y in zip(a_items, g_items))


def _match_unordered(a_items: tuple, g_items: tuple) -> bool:
    """Multiset equality; greedy matching is exact since ``equal`` is transitive."""
    if len(a_items) != len(g_items):
        return False
    unused = list(g_items)
    for item in a_items:
        for k, candidate in enumerate(unused):
            if equal(item, candidate):
                del unused[k]
                break
        else:
            return False
    return True


def _equal_bags(a: object, g: object) -> bool:
    """Sets and bare lists are unordered; a bare list may also spell a tuple.

    A labelled list spells a tuple in the order of its labels when they have
    one (``y = 2, x = 1`` is ``(1, 2)``), else in the written order.
    """
    if isinstance(g, V.Seq) and isinstance(a, V.Bag) and not a.is_set:
        return g.open == "(" and _match_ordered(forms.ordered_items(a), g.items)
    if isinstance(a, V.Seq) and isinstance(g, V.Bag) and not g.is_set:
        return a.open == "(" and _match_ordered(a.items, forms.ordered_items(g))
    a_items = a.items if isinstance(a, V.Bag) else (a,)
    g_items = g.items if isinstance(g, V.Bag) else (g,)
    if isinstance(a, V.Bag) and isinstance(g, V.Bag) and a.is_set and g.is_set:
        return _match_unordered(_dedupe(a_items), _dedupe(g_items))
    return _match_unordered(a_items, g_items)


def _dedupe(items: tuple) -> tuple:
    out: list = []
    for item in items:
        if not any(equal(item, kept) for kept in out):
            out.append(item)
    return tuple(out)


def _equal_matrices(a: object, g: object) -> bool:
    def cells(m: object) -> tuple | None:
        if isinstance(m, V.Matrix):
            if len(m.rows) == 1 or all(len(r) == 1 for r in m.rows):
                return tuple(c for r in m.rows for c in r)
            return None
        if isinstance(m, V.Seq) and m.open == "(" and m.close == ")":
            return m.items
        return None

    if isinstance(a, V.Matrix) and isinstance(g, V.Matrix):
        if [len(r) for r in a.rows] != [len(r) for r in g.rows]:
            return False
        return _match_ordered(tuple(c for r in a.rows for c in r),
                              tuple(c for r in g.rows for c in r))
    a_cells, g_cells = cells(a), cells(g)  # a vector written as a tuple
    return a_cells is not None and g_cells is not None and _match_ordered(a_cells, g_cells)


def _equal_equations(a: object, g: object) -> bool:
    """Equations match as equations; a labelled one also matches its value."""
    if isinstance(a, V.Equation) and isinstance(g, V.Equation):
        renaming = forms.same_label(a.lhs, g.lhs)
        if renaming is not None:
            rhs = V.transform(a.rhs, lambda x: x.subs(renaming)) if renaming else a.rhs
            return equal(rhs, g.rhs)
        if equal(a.lhs, g.lhs) and equal(a.rhs, g.rhs):
            return True
        if not all(V.is_expr(x) for x in (a.lhs, a.rhs, g.lhs, g.rhs)):
            return False
        return _proportional(a.lhs - a.rhs, g.lhs - g.rhs)
    if isinstance(a, V.Equation):
        if isinstance(a.lhs, V.Seq) and forms.is_label(a.lhs):
            g = forms.align(a.lhs, g)
        return forms.is_label(a.lhs) and equal(forms.bind(a.lhs, a.rhs, g), g)
    if isinstance(g.lhs, V.Seq) and forms.is_label(g.lhs):
        a = forms.align(g.lhs, a)
    return forms.is_label(g.lhs) and equal(a, forms.bind(g.lhs, g.rhs, a))


def _proportional(p: sympy.Expr, q: sympy.Expr) -> bool:
    """Same solution set for linear-style equations ``p = 0`` and ``q = 0``."""
    if q == 0 or p == 0:
        return p == q
    ratio = sympy.simplify(p / q)
    return ratio.is_number and ratio != 0 and ratio.is_finite is True


def _relation_to_interval(rel: V.Relation) -> object:
    """``-2 < x <= 3`` -> ``(-2, 3]``; other relations are returned unchanged."""
    parts, ops = list(rel.parts), list(rel.ops)
    if any(op not in ("<", "<=", ">", ">=") for op in ops):
        return rel
    if all(op in (">", ">=") for op in ops):
        parts, ops = parts[::-1], [_FLIP[op] for op in ops[::-1]]
    elif not all(op in ("<", "<=") for op in ops):
        return rel
    inf = sympy.oo
    if len(parts) == 2 and isinstance(parts[0], sympy.Symbol):
        return V.Seq("(", ")" if ops[0] == "<" else "]", (-inf, parts[1]))
    if len(parts) == 2 and isinstance(parts[1], sympy.Symbol):
        return V.Seq("(" if ops[0] == "<" else "[", ")", (parts[0], inf))
    if len(parts) == 3 and isinstance(parts[1], sympy.Symbol):
        return V.Seq("(" if ops[0] == "<" else "[", ")" if ops[1] == "<" else "]",
                     (parts[0], parts[2]))
    return rel


def _equal_relations(a: object, g: object) -> bool:
    if not (isinstance(a, V.Relation) and isinstance(g, V.Relation)):
        return False
    return a.ops == g.ops and _match_ordered(a.parts, g.parts)


def _base_n(value: sympy.Expr) -> tuple[str, str] | None:
    if isinstance(value, sympy.Symbol):
        m = _BASE_N_RE.match(value.name)
        if m:
            return m.group(1), m.group(2)
    return None


def equal_exprs(a: sympy.Expr, g: sympy.Expr) -> bool:
    """Exact equivalence of two scalar expressions."""
    if a == g:
        return True
    g_base = _base_n(g)
    if g_base is not None:  # "52_8": the digits without the base also count
        return a.is_Integer and str(a) == g_base[0] and _base_n(a) is None
    if a.is_Rational and g.is_Rational:
        return False
    if a.has(sympy.oo, -sympy.oo, sympy.zoo) or g.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False
    if a.is_number and g.is_number:
        return _equal_numbers(a, g)
    return _equal_symbolic(a, g) or forms.equal_families(a, g)


def _equal_numbers(a: sympy.Expr, g: sympy.Expr) -> bool:
    # An exact decimal answer is never accepted for an irrational gold.
    if a.is_Rational != g.is_Rational and (a.is_rational is False or g.is_rational is False):
        return False
    diff = sympy.simplify(a - g)
    if diff == 0:
        return True
    if diff.is_Rational:
        return False
    if diff.is_zero is not None:
        return bool(diff.is_zero)
    return _numerically_zero(diff, a, g)


def _numerically_zero(diff: sympy.Expr, a: sympy.Expr, g: sympy.Expr) -> bool:
    """High-precision relative check for irrational closed forms."""
    d = diff.evalf(_NUMERIC_DIGITS)
    scale = max(abs(a.evalf(_NUMERIC_DIGITS)), abs(g.evalf(_NUMERIC_DIGITS)), 1)
    if not (d.is_number and d.is_finite):
        return False
    return bool(abs(d) <= _NUMERIC_TOL * scale)


def _equal_symbolic(a: sympy.Expr, g: sympy.Expr) -> bool:
    diff = sympy.expand(a - g)
    if diff == 0:
        return True
    diff = sympy.simplify(diff)
    if diff == 0:
        return True
    return _random_points_zero(diff)


def _random_points_zero(diff: sympy.Expr) -> bool:
    """Identity test at random rational points (Schwartz-Zippel style).

    For rational functions the values are exact; anything else is checked at
    high relative precision. Deterministic seed: same inputs, same verdict.
    """
    symbols = sorted(diff.free_symbols, key=lambda s: s.name)
    if not symbols or len(symbols) > 6:
        return False
    rng = random.Random(0x5EED)
    for _ in range(3):
        point = {s: sympy.Rational(rng.randint(1, 97), rng.randint(1, 89)) for s in symbols}
        value = diff.subs(point)
        if value.is_Rational:
            if value != 0:
                return False
            continue
        num = value.evalf(_NUMERIC_DIGITS)
        if not num.is_number or not num.is_finite or abs(num) > _NUMERIC_TOL:
            return False
    return True


def compare_safe(answer: str, gold: str) -> str:
    """:func:`compare` that turns any failure into a status."""
    try:
        return compare(answer, gold)
    except (ParseError, RecursionError):
        return "unparsable"
    except MemoryError:
        return "error"
    except Exception:  # noqa: BLE001 - sympy internals can raise almost anything
        return "error"

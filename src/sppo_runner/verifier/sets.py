"""Sets of real numbers: intervals, inequalities, set-builder notation.

``\\{x | -1 < x < 1\\}``, ``-1 < x < 1``, ``x \\ne 1``, ``a \\le -2 \\text{ or } a = 1``,
``\\mathbb{R} \\setminus \\{1\\}`` and unions of intervals are turned into sympy
sets and compared as sets (each minus the other is empty). Runs in worker
processes only.
"""

from __future__ import annotations

import sympy

from . import values as V

_NAMED = {
    "reals": sympy.Reals, "integers": sympy.Integers, "naturals": sympy.Naturals0,
    "rationals": sympy.Rationals, "complexes": sympy.Complexes,
}
_SETLIKE = (V.Union, V.SetBuilder, V.SetOp, V.NamedSet, V.Relation)
_LESS = ("<", "<=")
_MORE = (">", ">=")


def is_setlike(value: object) -> bool:
    """True for values that only make sense as sets of numbers."""
    if isinstance(value, _SETLIKE):
        return True
    return isinstance(value, V.Bag) and not value.is_set and any(
        isinstance(x, _SETLIKE) for x in value.items)


def equal_sets(a: object, g: object) -> bool | None:
    """Set equality of two values; ``None`` when either is not a set of reals."""
    variables: list = []
    a_set, g_set = to_set(a, variables), to_set(g, [])
    if a_set is None or g_set is None:
        return None
    try:
        return (sympy.Complement(a_set, g_set) == sympy.EmptySet
                and sympy.Complement(g_set, a_set) == sympy.EmptySet)
    except (TypeError, ValueError, NotImplementedError):
        return None


def _real(x: object) -> bool:
    if not (V.is_expr(x) and x.is_number):
        return False
    return x in (sympy.oo, -sympy.oo) or x.is_real is True


def _same_var(var: object, variables: list) -> bool:
    """One variable per answer: ``x > 1 or y < 0`` is not a set of numbers."""
    if not isinstance(var, sympy.Symbol):
        return False
    if not variables:
        variables.append(var)
    return variables[0] == var


def to_set(value: object, variables: list) -> sympy.Set | None:
    """The set a value denotes, or ``None``.

    Args:
        value: a parsed answer.
        variables: the variable seen so far (one at most); filled in.
    """
    if isinstance(value, V.NamedSet):
        return _NAMED.get(value.name)
    if isinstance(value, V.Union):
        parts = [to_set(x, variables) for x in value.items]
        return None if any(p is None for p in parts) else sympy.Union(*parts)
    if isinstance(value, V.SetOp):
        left, right = to_set(value.left, variables), to_set(value.right, variables)
        if left is None or right is None:
            return None
        op = sympy.Complement if value.op == "setminus" else sympy.Intersection
        return op(left, right)
    if isinstance(value, V.SetBuilder):
        return _builder_set(value, variables)
    if isinstance(value, V.Relation):
        return _relation_set(value, variables)
    if isinstance(value, V.Equation):
        return _equation_set(value, variables)
    if isinstance(value, V.Bag):
        return _bag_set(value, variables)
    if isinstance(value, V.Seq):
        return _interval(value)
    if _real(value) and value not in (sympy.oo, -sympy.oo):
        return sympy.FiniteSet(value)
    return None


def _builder_set(value: V.SetBuilder, variables: list) -> sympy.Set | None:
    if not _same_var(value.var, variables):
        return None
    cond = to_set(value.cond, variables)
    domain = sympy.Reals if value.domain is None else to_set(value.domain, [])
    if cond is None or domain is None:
        return None
    return sympy.Intersection(cond, domain)


def _bag_set(value: V.Bag, variables: list) -> sympy.Set | None:
    if value.is_set:  # \{1, 2\}: its elements are numbers, not intervals
        if not all(_real(x) and x not in (sympy.oo, -sympy.oo) for x in value.items):
            return None
        return sympy.FiniteSet(*value.items)
    parts = [to_set(x, variables) for x in value.items]
    if any(p is None for p in parts):
        return None
    return sympy.Intersection(*parts) if value.conj == "and" else sympy.Union(*parts)


def _equation_set(value: V.Equation, variables: list) -> sympy.Set | None:
    if not _same_var(value.lhs, variables):
        return None
    rhs = value.rhs.items if isinstance(value.rhs, V.Bag) else (value.rhs,)
    if not all(_real(x) and x not in (sympy.oo, -sympy.oo) for x in rhs):
        return None
    return sympy.FiniteSet(*rhs)


def _interval(value: V.Seq) -> sympy.Set | None:
    """``(a, b]`` as an interval: two real ends, the left one smaller."""
    if len(value.items) != 2 or not all(_real(x) for x in value.items):
        return None
    lo, hi = value.items
    if (hi - lo).is_extended_positive is not True:
        return None
    return sympy.Interval(lo, hi, value.open == "(", value.close == ")")


def _relation_set(rel: V.Relation, variables: list) -> sympy.Set | None:
    """``-2 < x <= 3``, ``x >= 1``, ``5 > x``, ``x \\ne 1`` as sets."""
    parts, ops = list(rel.parts), list(rel.ops)
    if ops == ["!="] and _same_var(parts[0], variables) and _real(parts[1]):
        return sympy.Complement(sympy.Reals, sympy.FiniteSet(parts[1]))
    if all(op in _MORE for op in ops):
        parts, ops = parts[::-1], [{">": "<", ">=": "<="}[op] for op in ops[::-1]]
    if not all(op in _LESS for op in ops):
        return None
    inf = sympy.oo
    if len(parts) == 2 and _same_var(parts[0], variables) and _real(parts[1]):
        return sympy.Interval(-inf, parts[1], True, ops[0] == "<")
    if len(parts) == 2 and _same_var(parts[1], variables) and _real(parts[0]):
        return sympy.Interval(parts[0], inf, ops[0] == "<", True)
    if len(parts) == 3 and _same_var(parts[1], variables) and _real(parts[0]) \
            and _real(parts[2]):
        return sympy.Interval(parts[0], parts[2], ops[0] == "<", ops[1] == "<")
    return None

"""Answer value types and size-guarded sympy constructors.

Every sympy object the parser builds goes through the helpers here, which
refuse work whose result would be astronomically large (exponent towers, huge
factorials) *before* sympy evaluates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy

from .tokens import ParseError

MAX_RESULT_BITS = 200_000  # ~60k decimal digits
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 10_000
MAX_BINOMIAL_N = 100_000


@dataclass(frozen=True)
class Seq:
    """A bracketed, ordered sequence: tuple, point or interval.

    Brackets are kept so that ``(1,2)`` and ``[1,2]`` differ.
    """

    open: str
    close: str
    items: tuple


@dataclass(frozen=True)
class Bag:
    """Unordered items: a ``\\{...\\}`` set or a bare comma list."""

    items: tuple
    is_set: bool


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs``."""

    lhs: object
    rhs: object


@dataclass(frozen=True)
class Relation:
    """An inequality chain ``parts[0] ops[0] parts[1] ...``."""

    parts: tuple
    ops: tuple


@dataclass(frozen=True)
class Union:
    """A ``\\cup`` of intervals or sets."""

    items: tuple


@dataclass(frozen=True)
class Matrix:
    """A matrix or vector from a ``pmatrix``-like environment."""

    rows: tuple


def is_expr(value: object) -> bool:
    """True for scalar sympy values (not tuples, sets, equations...)."""
    return isinstance(value, sympy.Basic)


def expr(value: object) -> sympy.Expr:
    """Returns ``value`` if it is scalar, else refuses arithmetic on it."""
    if not isinstance(value, sympy.Expr):
        raise ParseError("arithmetic on a non-scalar value")
    return value


def number(text: str) -> sympy.Rational:
    """An exact rational from a decimal / scientific literal."""
    if len(text) > 400:
        raise ParseError("number literal too long")
    frac = Fraction(text)
    return sympy.Rational(frac.numerator, frac.denominator)


def _bits(value: sympy.Rational) -> float:
    return max(abs(int(value.p)), abs(int(value.q)), 2).bit_length()


def power(base: object, exp: object) -> sympy.Expr:
    """``base ** exp`` with size guards against exponent towers.

    Raises:
        ParseError: the result would be too large to compute or the exponent
            is absurd.
    """
    base, exp = expr(base), expr(exp)
    if exp.is_Number:
        if exp.is_Rational:
            if abs(exp.p) > MAX_EXPONENT or exp.q > 1_000:
                raise ParseError("exponent too large")
            if base.is_Rational and abs(exp.p) * _bits(base) / exp.q > MAX_RESULT_BITS:
                raise ParseError("power too large")
        elif exp.is_Float:
            raise ParseError("float exponent")
    elif exp.is_number:
        # e.g. 2^{\sqrt{2}}: fine unless its magnitude is huge; estimate cheaply.
        approx = exp.evalf(15)
        if not approx.is_finite or abs(approx) > MAX_EXPONENT:
            raise ParseError("exponent too large")
    result = sympy.Pow(base, exp)
    _check_finite(result)
    return result


def _check_finite(value: sympy.Basic) -> None:
    if value.has(sympy.zoo, sympy.nan):
        raise ParseError("undefined value (division by zero)")


def factorial(value: object) -> sympy.Expr:
    """``n!`` for a non-negative integer ``n`` up to :data:`MAX_FACTORIAL`."""
    value = expr(value)
    if value.is_Integer:
        if value < 0 or value > MAX_FACTORIAL:
            raise ParseError("factorial out of range")
        return sympy.factorial(value)
    if value.is_number:
        raise ParseError("factorial of a non-integer")
    return sympy.factorial(value)


def binomial(n: object, k: object) -> sympy.Expr:
    """``C(n, k)`` with integer arguments bounded."""
    n, k = expr(n), expr(k)
    if n.is_Integer and abs(n) > MAX_BINOMIAL_N:
        raise ParseError("binomial too large")
    if k.is_Integer and abs(k) > MAX_BINOMIAL_N:
        raise ParseError("binomial too large")
    return sympy.binomial(n, k)


def divide(a: object, b: object) -> sympy.Expr:
    """``a / b``; division by zero is refused (an undefined answer)."""
    a, b = expr(a), expr(b)
    if b.is_zero:
        raise ParseError("division by zero")
    result = sympy.Mul(a, sympy.Pow(b, -1))
    _check_finite(result)
    return result


def multiply(a: object, b: object) -> sympy.Expr:
    """``a * b`` refusing infinities times zero and oversize products."""
    a, b = expr(a), expr(b)
    if a.is_Rational and b.is_Rational and _bits(a) + _bits(b) > 4 * MAX_RESULT_BITS:
        raise ParseError("product too large")
    result = sympy.Mul(a, b)
    _check_finite(result)
    return result


def add(a: object, b: object) -> sympy.Expr:
    """``a + b`` for scalars."""
    result = sympy.Add(expr(a), expr(b))
    _check_finite(result)
    return result


def root(value: object, index: object) -> sympy.Expr:
    """``value ** (1/index)`` for the ``\\sqrt[n]{}`` command."""
    index = expr(index)
    if index.is_zero:
        raise ParseError("zeroth root")
    if index.is_Integer and abs(index) > MAX_EXPONENT:
        raise ParseError("root index too large")
    return power(value, divide(sympy.Integer(1), index))


def flatten(items: list) -> tuple:
    """Merges ``\\pm`` alternatives (bare bags) into the enclosing list."""
    out: list = []
    for item in items:
        if isinstance(item, Bag) and not item.is_set:
            out.extend(item.items)
        else:
            out.append(item)
    return tuple(out)


def signed_sum(terms: list[tuple[str, object]], max_pm: int) -> object:
    """Sums signed terms; each ``\\pm`` doubles the alternatives."""
    n_pm = sum(sign in ("pm", "mp") for sign, _ in terms)
    if n_pm > max_pm:
        raise ParseError("too many \\pm")
    variants = []
    for choice in range(2 ** n_pm):
        total: object = sympy.Integer(0)
        k = 0
        for sign, term in terms:
            positive = sign == "+"
            if sign in ("pm", "mp"):
                plus_branch = (choice >> k) & 1 == 0
                positive = plus_branch == (sign == "pm")
                k += 1
            total = add(total, term if positive else multiply(sympy.Integer(-1), term))
        variants.append(total)
    return variants[0] if n_pm == 0 else Bag(tuple(variants), is_set=False)

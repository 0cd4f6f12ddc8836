"""Answer value types and size-guarded sympy constructors.

Every sympy object the parser builds goes through the helpers here, which
refuse work whose result would be astronomically large (exponent towers, huge
factorials) *before* sympy evaluates it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import sympy

from .tokens import ParseError

MAX_RESULT_BITS = 200_000  # ~60k decimal digits
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 10_000
MAX_BINOMIAL_N = 100_000
MAX_ALTERNATIVES = 4  # \\pm alternatives one value may stand for
# The degree sign as a factor: 30° is 30*DEG. A comparison reads DEG as 1
# (the sign is decoration) or as pi/180 (the angle in radians).
DEG = sympy.Symbol("°")


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
    """Unordered items: a ``\\{...\\}`` set or a bare comma list.

    ``conj`` is the connective of a bare list ("," "and" "or"): it decides
    whether inequalities in it intersect or unite. ``pm`` marks the
    alternatives of a ``\\pm`` rather than a written list.
    """

    items: tuple
    is_set: bool
    conj: str = ","
    pm: bool = False


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


@dataclass(frozen=True)
class Label:
    """A word naming a value: ``Maximum`` in ``Maximum = 2``, ``angle abc``."""

    key: str


@dataclass(frozen=True)
class Ratio:
    """``a : b (: c ...)``; ``clock`` when it reads like a time (``12:05``)."""

    parts: tuple
    clock: bool = False


@dataclass(frozen=True)
class Approx:
    """A value shown rounded: ``exact \\approx 1.36`` or a bare decimal gold.

    ``exact`` is ``None`` for a bare decimal; ``value`` is the shown decimal
    and ``half_ulp`` half a unit of its last shown digit.
    """

    exact: object
    value: sympy.Rational
    half_ulp: sympy.Rational


@dataclass(frozen=True)
class SetBuilder:
    """``\\{ var \\in domain | condition \\}`` (``domain`` may be ``None``)."""

    var: object
    domain: object
    cond: object


@dataclass(frozen=True)
class SetOp:
    """``left \\setminus right`` (``op`` "setminus") or ``left \\cap right`` ("cap")."""

    op: str
    left: object
    right: object


@dataclass(frozen=True)
class NamedSet:
    """``\\mathbb{R}`` and friends: reals, integers, naturals, rationals, complexes."""

    name: str


@dataclass(frozen=True)
class Param:
    """A declaration ``k \\in \\mathbb{Z}``: ``k`` is an integer parameter."""

    name: str
    domain: str  # "integers" or "naturals"


@dataclass(frozen=True)
class Family:
    """A value with declared integer parameters (``k\\pi, k \\in \\mathbb{Z}``)."""

    value: object
    params: frozenset  # of (name, number set) pairs


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


def lift(fn: Callable[..., object], *args: object) -> object:
    """Applies ``fn`` to each combination of ``\\pm`` alternatives in ``args``.

    ``\\frac{1 \\pm \\sqrt5}{2}`` stands for two numbers: the division is
    done for each, and the result is again a set of alternatives.
    """
    if not any(isinstance(a, Bag) and a.pm for a in args):
        return fn(*args)
    choices = [a.items if isinstance(a, Bag) and a.pm else (a,) for a in args]
    combos = list(itertools.islice(itertools.product(*choices), MAX_ALTERNATIVES + 1))
    if len(combos) > MAX_ALTERNATIVES:
        raise ParseError("too many \\pm alternatives")
    return Bag(tuple(fn(*c) for c in combos), is_set=False, pm=True)


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
    total: object = sympy.Integer(0)
    for sign, term in terms:
        negated = lift(lambda t: multiply(sympy.Integer(-1), t), term)
        if sign == "+":
            value = term
        elif sign == "-":
            value = negated
        else:
            pair = (term, negated) if sign == "pm" else (negated, term)
            value = Bag(flatten(list(pair)), is_set=False, pm=True)
        total = lift(add, total, value)
    return total


def transform(value: object, fn: Callable[[sympy.Basic], sympy.Basic]) -> object:
    """Applies ``fn`` to every sympy leaf of a (structured) value."""
    if isinstance(value, sympy.Basic):
        return fn(value)
    if isinstance(value, tuple):
        return tuple(transform(x, fn) for x in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: transform(getattr(value, f.name), fn)
                   for f in dataclasses.fields(value)
                   if isinstance(getattr(value, f.name), (sympy.Basic, tuple))
                   or dataclasses.is_dataclass(getattr(value, f.name))}
        return dataclasses.replace(value, **changes)
    return value


def leaves(value: object) -> Iterator[sympy.Basic]:
    """The sympy leaves of a (structured) value."""
    if isinstance(value, sympy.Basic):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from leaves(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from leaves(getattr(value, f.name))


def has_symbol(value: object, symbol: sympy.Symbol) -> bool:
    """True when any sympy leaf of ``value`` contains ``symbol``."""
    return any(leaf.has(symbol) for leaf in leaves(value))

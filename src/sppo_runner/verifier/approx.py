"""The rounding rule for decimal ground truths (pure Python, no sympy).

A ground truth such as ``30.52`` is often a rounded value: the exact answer
``\\frac{1587}{52}`` (30.519...) is as right as the decimal. The rule:

* A gold decimal counts as rounded when it shows a decimal point, at least
  :data:`MIN_SIG_DIGITS` significant digits (``30.52``, ``1.36``, ``0.333``,
  ``3.83e35``) and a non-integer mantissa. ``0.5``, ``1.2`` or ``0.49`` show too
  few digits to tell a rounding from a different answer (5/11 = 0.4545 would
  "round" to 0.5), and ``27.0`` or ``36.0`` are integers: those stay exact.
* An answer matches a rounded gold when its exact value has no finite
  decimal expansion (a fraction such as 1587/52 or 1/3, a radical, pi) and
  lies within half a unit of the gold's last shown digit (both ends included,
  so either rounding of a tie counts).
* A finite decimal must equal the gold: ``30.5`` and ``30.519`` never match
  ``30.52``, since either could be the exact value of a different answer
  (``326.49`` is not ``326.5``). So an integer never matches a non-integer.

A gold written ``exact \\approx 1.36`` is matched by the exact form, or by an
answer within the rounding interval of ``1.36`` that also lies that close to
the exact value; there the explicit ``\\approx`` lifts the digit minimum.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MIN_SIG_DIGITS = 3
_DECIMAL_RE = re.compile(r"^([-+]?)(\d*)\.(\d{1,60})(?:[eE]([-+]?\d{1,4}))?$")
_SCI_TIMES_RE = re.compile(
    r"^([-+]?\d*\.\d{1,60})\s*(?:\\times|\\cdot|\*)\s*10\^(?:\{([-+]?\d{1,4})\}|(\d))$"
)


@dataclass(frozen=True)
class DecimalSpec:
    """A decimal literal: its exact value and how precisely it is shown."""

    value: Fraction
    half_ulp: Fraction
    sig_digits: int
    whole: bool  # the mantissa is an integer ("27.0", "4.0e3")

    @property
    def rounded(self) -> bool:
        """True when a gold showing this literal is read as a rounding."""
        return self.sig_digits >= MIN_SIG_DIGITS and not self.whole


def decimal_spec(text: str) -> DecimalSpec | None:
    """Reads a decimal literal with a point (``30.52``, ``3.83e35``, ``1.5\\times10^{3}``).

    Returns:
        The spec, or ``None`` when ``text`` is not such a literal.
    """
    text = text.strip()
    m = _DECIMAL_RE.match(text)
    if m is not None:
        sign, whole, frac, exp = m.group(1), m.group(2), m.group(3), m.group(4)
    else:
        m = _SCI_TIMES_RE.match(text)
        if m is None:
            return None
        mantissa = m.group(1)
        sign = "-" if mantissa.startswith("-") else ""
        whole, frac = mantissa.lstrip("+-").split(".")
        exp = m.group(2) if m.group(2) is not None else m.group(3)
    scale = Fraction(10) ** int(exp or 0)
    value = Fraction(f"{whole or '0'}.{frac}") * scale
    return DecimalSpec(
        value=-value if sign == "-" else value,
        half_ulp=Fraction(1, 2) * scale / 10 ** len(frac),
        sig_digits=len((whole + frac).lstrip("0")),
        whole=int(frac) == 0,
    )


def rounded_gold(text: str, scale: Fraction = Fraction(1)) -> tuple[Fraction, Fraction] | None:
    """``(value, half_ulp)`` of a gold read as a rounding, scaled; else ``None``."""
    spec = decimal_spec(text)
    if spec is None or not spec.rounded:
        return None
    return spec.value * scale, spec.half_ulp * scale


def terminates(denominator: int) -> bool:
    """True when p/denominator has a finite decimal expansion (only 2s and 5s)."""
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def rounds_to(answer: Fraction, value: Fraction, half_ulp: Fraction) -> bool:
    """The rule above for an exact rational answer."""
    if terminates(answer.denominator):
        return False  # a finite decimal (or integer) is its own exact value
    return abs(answer - value) <= half_ulp

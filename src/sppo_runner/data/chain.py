"""The horizon task: one running value carried through ``horizon`` labelled steps.

``data.horizon=H`` (2..32) turns the synthetic task into chains of exactly ``H``
single-operation steps, applied left to right to a starting value::

    prompt:   "12 a+5 b*2 c-4 d/3 =?\\n"
    solution: "a:12+5=17. b:17*2=34. c:34-4=30. d:30/3=10. \\boxed{10}"

Only the length changes with ``H``: every step is one operation of the kinds and
sizes the default task uses at the same ``difficulty`` (at difficulty 2: add or
subtract up to 20, a times-table product or a doubling, a times-table quotient
or a halving, values below 100; the demo's "eats 4", "buys 3 bags of 9",
"doubles them", "gives half away"), and the labels ``a, b, c, ...`` (then ``A, B, ...``) let a model
find the next operation by looking its label up in the prompt rather than by
counting, so step 30 is no harder to locate than step 2. Every operation is
injective (``+n``, ``-n``, ``*k``, exact ``/k``, never by 0 or 1), so a wrong
intermediate result changes the final answer: the answer depends on every step.
The reference chain of thought is about ``11 * H + 10`` characters (= tokens of
the char-level tokenizer): ~32 at ``H=2``, ~360 at ``H=32``.

The split rule is the default task's: a hash of the step chain decides train or
held-out, so the splits are disjoint by construction.
"""

from __future__ import annotations

import random
import string

__all__ = ["MAX_HORIZON", "MIN_HORIZON", "LABELS", "CAPS", "gen_chain"]

MIN_HORIZON, MAX_HORIZON = 2, 32
#: Step labels, in order; ``MAX_HORIZON`` of them are used.
LABELS = string.ascii_lowercase + string.ascii_uppercase
#: Per difficulty: the largest value the running result may take (difficulty 2: two digits).
CAPS = {1: 50, 2: 99, 3: 200, 4: 500, 5: 1000}

# Relative weights of "+", "-", "*", "/" among the operations a value allows.
_WEIGHTS = (("+", 3), ("-", 3), ("*", 2), ("/", 2))


def _operand(rng: random.Random, x: int, cap: int, max_add: int, max_fac: int) -> tuple[str, int]:
    """Draws an operation allowed at value ``x`` and its operand.

    The default task's step sizes: a sum or difference with an addend up to ``max_add``, a
    product from the times table (both factors up to ``max_fac``) or a doubling ("doubles
    them"), a quotient from the times table or a halving ("gives half away"); results stay
    in [0, cap].
    """
    factors = list(range(2, min(max_fac, cap // x) + 1)) if 2 <= x <= max_fac else [2] if 0 < 2 * x <= cap else []
    divisors = [k for k in range(2, max_fac + 1) if x % k == 0 and (k == 2 or 2 <= x // k <= max_fac) and x >= 4]
    counts = {"+": min(max_add, cap - x), "-": min(max_add, x), "*": len(factors), "/": len(divisors)}
    total = sum(w for op, w in _WEIGHTS if counts[op] > 0)
    r = rng.random() * total
    for op, w in _WEIGHTS:
        if counts[op] > 0:
            r -= w
            if r < 0:
                break
    i = rng.randrange(counts[op])
    return op, (divisors[i] if op == "/" else factors[i] if op == "*" else i + 1)


def gen_chain(rng: random.Random, horizon: int, max_add: int, max_fac: int,
              cap: int) -> tuple[str, int, tuple[str, ...]]:
    """Draws one chain problem.

    Args:
        rng: The split's random stream.
        horizon: Number of steps (each one operation).
        max_add: Largest addend / subtrahend and starting value.
        max_fac: Largest factor / divisor.
        cap: Largest intermediate value.

    Returns:
        ``(prompt, answer, steps)`` with steps like ``"b:17*2=34"`` in order.
    """
    x = rng.randint(1, max_add)
    parts, steps = [str(x)], []
    for label in LABELS[:horizon]:
        op, b = _operand(rng, x, cap, max_add, max_fac)
        v = x + b if op == "+" else x - b if op == "-" else x * b if op == "*" else x // b
        parts.append(f"{label}{op}{b}")
        steps.append(f"{label}:{x}{op}{b}={v}")
        x = v
    return " ".join(parts) + " =?\n", x, tuple(steps)

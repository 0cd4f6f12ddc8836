"""Synthetic multi-step arithmetic: the embedded default task.

Three problem kinds, drawn in equal shares:

* ``expr``  -- a bare expression, ``"7+3*4-5=?\\n"``;
* ``story`` -- an inventory story, ``"Ann has 12 apples, buys 5 bags of 3, eats 4. How many?\\n"``;
* ``shop``  -- a shopping bill, ``"Sam buys 4 pens at $3 each and a map for $5. Total?\\n"``.

Every reference solution is a short chain of single-operation steps that ends
in ``\\boxed{answer}``, e.g. ``"3*4=12. 7+12=19. 19-5=14. \\boxed{14}"``.  All
intermediate values and answers are non-negative integers; division appears
only where it is exact.  The prompt is the complete model input (it ends with a
newline), so a tokenizer without a chat template can feed it directly.

``difficulty`` (1..5) sets the number of operations (= difficulty) and the
operand sizes.  ``horizon`` (2..32; 0 = off, the default) switches to the
horizon task of :mod:`sppo_runner.data.chain`: chains of exactly ``horizon``
labelled one-operation steps of the same sizes, so that only the length of the
chain of thought changes.  Train and held-out problems are disjoint by construction: a
problem belongs to the held-out split exactly when a hash of its canonical form
(the operation chain of its solution, which ignores names and objects) lands in
the held-out bucket, so no held-out computation ever appears in training.

Regenerate or inspect a split::

    python -m sppo_runner.data.synthetic --out heldout.jsonl --split heldout --n 256
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from sppo_runner.data.chain import CAPS, MAX_HORIZON, MIN_HORIZON, gen_chain
from sppo_runner.data.problem import Problem

__all__ = [
    "SyntheticTask",
    "HELDOUT_BUCKETS",
    "canonical_form",
    "canonical_hash",
    "is_heldout",
    "main",
]

#: One problem in ``HELDOUT_BUCKETS`` (by canonical hash) is held out.
HELDOUT_BUCKETS = 10

# Per difficulty: (max addend / starting amount, max factor, max price).
_SIZES = {
    1: (9, 9, 9),
    2: (20, 9, 9),
    3: (50, 12, 12),
    4: (99, 12, 20),
    5: (999, 20, 50),
}

_NAMES = ("Ann", "Bob", "Sam", "Mia", "Tom", "Eva", "Max", "Zoe", "Leo", "Ivy")
_OBJECTS = ("apples", "pens", "cards", "eggs", "coins", "shells", "stamps", "beads")
_ITEMS = ("pens", "cups", "books", "hats", "balls", "pies", "kites", "mugs")
_ONE_ITEMS = ("a map", "a bag", "a toy", "a lamp", "a vase", "a clock", "a bell", "a comb")
_LOSE_VERBS = ("eats", "loses", "gives away", "sells")


@dataclass(frozen=True)
class _Generated:
    prompt: str
    answer: int
    steps: tuple[str, ...]  # "a*b=c" strings, in solution order
    kind: str

    @property
    def solution(self) -> str:
        return " ".join(s + "." for s in self.steps) + f" \\boxed{{{self.answer}}}"

    @property
    def canonical(self) -> str:
        return canonical_form(self.solution)


def canonical_form(solution: str) -> str:
    """The computation of a reference solution: its steps without the boxed answer.

    Two problems with the same step chain are the same problem for the split,
    whatever names, objects or surface form their prompts use.
    """
    return solution.split(" \\boxed{")[0]


def canonical_hash(canonical: str) -> int:
    """Stable (process- and platform-independent) 64-bit hash of a canonical form."""
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "big")


def is_heldout(canonical: str) -> bool:
    """True when the problem with this canonical form belongs to the held-out split."""
    return canonical_hash(canonical) % HELDOUT_BUCKETS == 0


def _step(a: int, op: str, b: int) -> tuple[str, int]:
    if op == "+":
        v = a + b
    elif op == "-":
        v = a - b
    elif op == "*":
        v = a * b
    elif op == "/":
        assert a % b == 0
        v = a // b
    else:  # pragma: no cover - internal
        raise ValueError(op)
    return f"{a}{op}{b}={v}", v


# --------------------------------------------------------------------------- #
# expr: a flat expression with d operators, evaluated with usual precedence.
# --------------------------------------------------------------------------- #
def _gen_expr(rng: random.Random, d: int) -> _Generated | None:
    max_add, max_fac, _ = _SIZES[d]
    # Decide the operator sequence first; runs of "*" and "/" form a product
    # term, which binds tighter than "+" and "-".
    ops = [rng.choice("+-*+-*/") for _ in range(d)]
    operands: list[int] = []
    for i in range(d + 1):
        in_product = (i > 0 and ops[i - 1] in "*/") or (i < d and ops[i] in "*/")
        operands.append(rng.randint(2, max_fac) if in_product else rng.randint(1, max_add))
    # Evaluate product terms left to right.  A division a/b must be exact: a
    # bare dividend is re-drawn as a multiple of b, otherwise the draw is rejected.
    steps: list[str] = []
    terms: list[int] = []  # value of each additive term
    term_ops: list[str] = []  # "+"/"-" between terms
    cur = operands[0]
    for i, op in enumerate(ops):
        b = operands[i + 1]
        if op in "*/":
            if op == "/":
                if cur % b != 0:
                    # Only a bare first operand can be re-drawn; otherwise reject.
                    if i == 0 or ops[i - 1] not in "*/":
                        cur = b * rng.randint(2, max_fac)
                        operands[i] = cur
                    else:
                        return None
                if cur // b < 1:
                    return None
            s, cur = _step(cur, op, b)
            steps.append(s)
        else:
            terms.append(cur)
            term_ops.append(op)
            cur = b
    terms.append(cur)
    # Additive pass, left to right.
    acc = terms[0]
    for op, t in zip(term_ops, terms[1:]):
        s, acc = _step(acc, op, t)
        if acc < 0:
            return None
        steps.append(s)
    text = str(operands[0]) + "".join(f"{op}{b}" for op, b in zip(ops, operands[1:]))
    return _Generated(prompt=f"{text}=?\n", answer=acc, steps=tuple(steps), kind="expr")


# --------------------------------------------------------------------------- #
# story: "NAME has X OBJ, <action>, <action>. How many?"  (d operations)
# --------------------------------------------------------------------------- #
def _gen_story(rng: random.Random, d: int) -> _Generated | None:
    max_add, max_fac, _ = _SIZES[d]
    name, obj = rng.choice(_NAMES), rng.choice(_OBJECTS)
    x = start = rng.randint(2, max_add)
    clauses: list[str] = []
    steps: list[str] = []
    ops_left = d
    while ops_left > 0:
        choices = ["gain", "lose", "double"]
        if ops_left >= 2:
            choices += ["bags", "bags"]
        if ops_left == 1 and x % 2 == 0 and x >= 4:
            choices.append("half")
        act = rng.choice(choices)
        if act == "gain":
            n = rng.randint(1, max_add)
            s, x = _step(x, "+", n)
            clauses.append(f"gets {n}")
            ops_left -= 1
        elif act == "lose":
            if x < 2:
                return None
            n = rng.randint(1, min(max_add, x - 1))
            s, x = _step(x, "-", n)
            clauses.append(f"{rng.choice(_LOSE_VERBS)} {n}")
            ops_left -= 1
        elif act == "double":
            s, x = _step(x, "*", 2)
            clauses.append("doubles them")
            ops_left -= 1
        elif act == "half":
            s, x = _step(x, "/", 2)
            clauses.append("gives half away")
            ops_left -= 1
        else:  # bags: two operations, b*c then x+p
            b, c = rng.randint(2, max_fac), rng.randint(2, max_fac)
            s1, p = _step(b, "*", c)
            steps.append(s1)
            s, x = _step(x, "+", p)
            clauses.append(f"buys {b} bags of {c}")
            ops_left -= 2
        steps.append(s)
    body = ", ".join(clauses)
    return _Generated(
        prompt=f"{name} has {start} {obj}, {body}. How many?\n",
        answer=x,
        steps=tuple(steps),
        kind="story",
    )


# --------------------------------------------------------------------------- #
# shop: "NAME buys 4 pens at $3 each and a map for $5. Total?"  (d operations)
# --------------------------------------------------------------------------- #
def _gen_shop(rng: random.Random, d: int) -> _Generated | None:
    _, max_fac, max_price = _SIZES[d]
    name = rng.choice(_NAMES)
    items = list(_ITEMS)
    ones = list(_ONE_ITEMS)
    rng.shuffle(items)
    rng.shuffle(ones)
    parts: list[str] = []
    costs: list[int] = []
    steps: list[str] = []
    ops_left = d
    first = True
    while ops_left > 0 or first:
        need = 0 if first else 1  # the "+" joining this item to the total
        can_multi = ops_left - need >= 1
        multi = can_multi and (first or rng.random() < 0.6)
        if first and not multi:  # difficulty 0 would land here; keep the guard
            return None
        if multi:
            q, p = rng.randint(2, max_fac), rng.randint(2, max_price)
            s, c = _step(q, "*", p)
            steps.append(s)
            parts.append(f"{q} {items.pop()} at ${p} each")
            ops_left -= 1
        else:
            c = rng.randint(2, max_price)
            parts.append(f"{ones.pop()} for ${c}")
        costs.append(c)
        if not first:
            s, _ = _step(sum(costs[:-1]), "+", c)
            steps.append(s)
            ops_left -= need
        first = False
        if ops_left < 0:
            return None
    total = sum(costs)
    if len(parts) == 1:
        body = parts[0]
    else:
        body = ", ".join(parts[:-1]) + " and " + parts[-1]
    # Steps must be in evaluation order: products first, then the running sum.
    prods = [s for s in steps if "*" in s]
    sums = [s for s in steps if "+" in s]
    return _Generated(
        prompt=f"{name} buys {body}. Total?\n",
        answer=total,
        steps=tuple(prods + sums),
        kind="shop",
    )


_KINDS = (_gen_expr, _gen_story, _gen_shop)


def _gen_chain(rng: random.Random, d: int, horizon: int) -> _Generated:
    max_add, max_fac, _ = _SIZES[d]
    prompt, answer, steps = gen_chain(rng, horizon, max_add, max_fac, CAPS[d])
    return _Generated(prompt=prompt, answer=answer, steps=steps, kind="chain")


class SyntheticTask:
    """Deterministic generator of short multi-step arithmetic problems.

    Args:
        seed: Drives every random choice; the same seed gives the same problems.
        difficulty: 1..5, the number of operations and (growing) operand sizes.
        horizon: 0 (default): the three problem kinds above, ``difficulty``
            operations each. 2..32: the horizon task (:mod:`sppo_runner.data.chain`),
            exactly ``horizon`` steps whose operand sizes follow ``difficulty``.
    """

    def __init__(self, seed: int = 0, difficulty: int = 2, horizon: int = 0) -> None:
        if difficulty not in _SIZES:
            raise ValueError(f"difficulty must be an int in 1..5, got {difficulty!r}")
        if horizon != 0 and not MIN_HORIZON <= horizon <= MAX_HORIZON:
            raise ValueError(f"horizon must be 0 (off) or an int in {MIN_HORIZON}..{MAX_HORIZON}, got {horizon!r}")
        self.seed = int(seed)
        self.difficulty = int(difficulty)
        self.horizon = int(horizon)
        # The default task keeps its historical names (and streams) exactly.
        self._name = f"chain-h{self.horizon}-d{self.difficulty}" if self.horizon else f"arith-d{self.difficulty}"
        self.source = f"synthetic/{self._name}"

    def train(self, n: int) -> list[Problem]:
        """The first ``n`` training problems (a prefix of a fixed stream)."""
        return self._split("train", n)

    def heldout(self, n: int) -> list[Problem]:
        """The first ``n`` held-out problems (distinct prompts while the pool allows)."""
        return self._split("heldout", n)

    # ------------------------------------------------------------------ #
    def _split(self, split: str, n: int) -> list[Problem]:
        if n < 0:
            raise ValueError("n must be >= 0")
        want_heldout = split == "heldout"
        horizon = f"h{self.horizon}|" if self.horizon else ""
        rng = random.Random(f"sppo-synthetic|{self.seed}|{self.difficulty}|{horizon}{split}")
        out: list[Problem] = []
        seen: set[str] = set()
        attempts, patience = 0, 200
        while len(out) < n:
            if self.horizon:
                gen = _gen_chain(rng, self.difficulty, self.horizon)
            else:
                gen = _KINDS[rng.randrange(len(_KINDS))](rng, self.difficulty)
            if gen is None or is_heldout(gen.canonical) != want_heldout:
                continue
            attempts += 1
            # Held-out prompts are de-duplicated (an eval set should not count a
            # problem twice) until the pool looks exhausted, e.g. at difficulty 1.
            if want_heldout and gen.prompt in seen and attempts < patience * (len(out) + 1):
                continue
            seen.add(gen.prompt)
            out.append(
                Problem(
                    prompt=gen.prompt,
                    answer=str(gen.answer),
                    source=self.source,
                    uid=f"{self._name}-s{self.seed}-{split}-{len(out):06d}",
                    extra={"solution": gen.solution, "kind": gen.kind, "split": split},
                )
            )
        return out


def _write(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".jsonl":
        with out.open("w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    elif out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), out)
    else:
        raise SystemExit(f"--out must end in .jsonl or .parquet, got {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sppo_runner.data.synthetic",
        description="Write a split of the synthetic arithmetic task as verl-style rows.",
    )
    ap.add_argument("--out", required=True, type=Path, help="FILE.jsonl or FILE.parquet")
    ap.add_argument("--split", choices=("train", "heldout"), default="train")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--difficulty", type=int, default=2, choices=sorted(_SIZES))
    ap.add_argument("--horizon", type=int, default=0, choices=[0, *range(MIN_HORIZON, MAX_HORIZON + 1)],
                    metavar="H", help=f"0 = the default task; {MIN_HORIZON}..{MAX_HORIZON} = chains of H steps")
    a = ap.parse_args(argv)
    task = SyntheticTask(seed=a.seed, difficulty=a.difficulty, horizon=a.horizon)
    probs = task.train(a.n) if a.split == "train" else task.heldout(a.n)
    _write([p.to_row() for p in probs], a.out)
    print(f"wrote {len(probs)} {a.split} problems ({task.source}) to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Parser pieces for the answer forms around the core grammar.

Labels (``Maximum = 2``, ``f(x) = ...``, ``\\angle A = ...``), integer
parameter declarations (``k \\in \\mathbb{Z}``), set-builder notation,
ratios, ``\\approx``, degree marks with minutes, ceiling/floor, and the token
cursor the grammar in :mod:`parse` walks with. Everything still builds values
from whitelisted tokens only.
"""

from __future__ import annotations

from fractions import Fraction

import sympy

from . import values as V
from .approx import decimal_spec
from .tokens import ParseError, Token, split_word

MAX_DEPTH = 40
_ITEM_ENDS = frozenset({",", ";", "and", "or", ")", "]", "}", "\\}"})
_PARAM_SETS = frozenset({"integers", "naturals"})
_LABEL_OPS = frozenset({"=", ":"})
# Words that name the smaller / larger of two values, for ordering labels.
_MIN_WORDS = ("min", "smallest", "least", "lowest", "lower")
_MAX_WORDS = ("max", "largest", "greatest", "highest", "upper")


def _rational(value: Fraction) -> sympy.Rational:
    return sympy.Rational(value.numerator, value.denominator)


def label_key(words: list[str]) -> str:
    """A comparison key for a word label; min/max synonyms share one key."""
    lowered = [w.lower() for w in words]
    for canon, synonyms in (("min", _MIN_WORDS), ("max", _MAX_WORDS)):
        if any(w.startswith(synonyms) for w in lowered):
            return canon
    return "".join(lowered)


class Cursor:
    """Token-list state shared by the grammar and its extras."""

    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.pos = 0
        self.depth = 0
        self.params: dict[str, str] = {}  # declared parameter -> its number set

    def peek(self, ahead: int = 0) -> Token | None:
        i = self.pos + ahead
        return self.toks[i] if i < len(self.toks) else None

    def at_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "op" and tok.text in ops

    def op_at(self, i: int, *ops: str) -> bool:
        return i < len(self.toks) and self.toks[i].kind == "op" and self.toks[i].text in ops

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end of answer")
        self.pos += 1
        return tok

    def expect(self, op: str) -> None:
        tok = self.take()
        if tok.kind != "op" or tok.text != op:
            raise ParseError(f"expected {op!r}, got {tok.text!r}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nesting too deep")

    def leave(self) -> None:
        self.depth -= 1

    def refuse_text_group(self) -> None:
        """A ``{...}`` of words (what ``\\text{only }`` leaves) is prose, not a product."""
        i = self.pos
        while i < len(self.toks) and self.toks[i].kind in ("word", "name"):
            i += 1
        if self.op_at(i, "}") and any(
                t.kind == "word" and len(t.text) >= 3 for t in self.toks[self.pos:i]):
            raise ParseError("text where a value should be")

    def split_word_here(self) -> None:
        """Replaces the word token at the cursor by its one-letter tokens."""
        self.toks[self.pos:self.pos + 1] = split_word(self.toks[self.pos].text)


class Extras(Cursor):
    """Answer forms beyond plain expressions (mixed into the parser)."""

    # -- labels -------------------------------------------------------------
    def try_label(self) -> object | None:
        """Consumes ``label =`` at the start of an item and returns the label.

        A label is one or more words (``Maximum``, ``{max value}``, ``AB``),
        optionally after ``\\angle``, or a function of names and numbers
        (``f(x)``, ``T(10)``). A single letter stays a symbol (``x = 5``).
        """
        found = self._word_label() or self._function_label()
        if found is None:
            return None
        label, end = found
        self.pos = end + 1  # past the '=' / ':'
        return label

    def _word_label(self) -> tuple[object, int] | None:
        i, braces, words, named = self.pos, 0, [], False
        while self.op_at(i, "{"):
            i, braces = i + 1, braces + 1
        while i < len(self.toks):
            tok = self.toks[i]
            if tok.kind == "op" and tok.text == "angle":  # \angle A, m\angle ABC
                named = True
            elif tok.kind in ("word", "name"):
                # "Area", "AB", "\max"; a lowercase pair such as "xy" stays a product
                named |= (tok.kind == "word" and (len(tok.text) >= 3 or tok.text.isupper())
                          or tok.text in ("max", "min"))
            else:
                break
            words.append(tok.text)
            i += 1
        if named and self.op_at(i, "("):  # \max f(x) = 3
            i = self._simple_args_end(i + 1)
            if i < 0:
                return None
            i += 1
        for _ in range(braces):
            if not self.op_at(i, "}"):
                return None
            i += 1
        if not named or not self.op_at(i, *_LABEL_OPS):
            return None
        if self.toks[i].text == ":" and len("".join(words)) < 3:
            return None
        return V.Label(label_key(words)), i

    def _simple_args_end(self, i: int) -> int:
        """Index of the ``)`` closing names/numbers from ``i`` on, or -1."""
        while i < len(self.toks):
            tok = self.toks[i]
            if tok.kind == "op" and tok.text == ")":
                return i
            if tok.kind not in ("name", "num") and not (tok.kind == "op" and tok.text in ",-"):
                return -1
            i += 1
        return -1

    def _function_label(self) -> tuple[object, int] | None:
        tok = self.peek()
        if tok is None or tok.kind != "name" or not self.op_at(self.pos + 1, "("):
            return None
        args, i = [], self.pos + 2
        while True:
            negative = self.op_at(i, "-")
            i += negative
            if i >= len(self.toks) or self.toks[i].kind not in ("name", "num"):
                return None
            arg = self.toks[i]
            if arg.kind == "name" and negative:
                return None
            args.append(V.number(arg.text) * (-1 if negative else 1) if arg.kind == "num"
                        else sympy.Symbol(arg.text))
            i += 1
            if self.op_at(i, ")"):
                break
            if not self.op_at(i, ",") or len(args) >= 4:
                return None
            i += 1
        if not self.op_at(i + 1, "="):
            return None
        return sympy.Function(tok.text)(*args), i + 1

    # -- integer parameters ---------------------------------------------------
    def try_param_decl(self) -> V.Param | None:
        """Consumes ``k \\in \\mathbb{Z}`` (or ``\\mathbb{N}``, ``\\mathbb{Z}^+``)."""
        tok, nxt, dom = self.peek(), self.peek(1), self.peek(2)
        if tok is None or tok.kind != "name" or nxt is None or nxt.text != "in" \
                or dom is None or dom.kind != "const" or dom.text not in _PARAM_SETS:
            return None
        saved = self.pos
        self.pos += 3
        if self.at_op("^", "_"):  # \mathbb{Z}^+, \mathbb{Z}_{\ge 0}
            self.pos += 1
            self._skip_group()
        if self.peek() is not None and not self.at_op(*_ITEM_ENDS):
            self.pos = saved
            return None
        self.params[tok.text] = dom.text
        return V.Param(tok.text, dom.text)

    def _skip_group(self) -> None:
        if not self.at_op("{"):
            self.take()
            return
        depth = 0
        while True:
            tok = self.take()
            depth += (tok.text == "{") - (tok.text == "}")
            if depth == 0:
                return

    # -- sets -----------------------------------------------------------------
    def try_set_builder(self) -> V.SetBuilder | None:
        """Reads ``x | cond \\}`` or ``x \\in D : cond \\}`` after ``\\{``."""
        tok = self.peek()
        if tok is None or tok.kind != "name":
            return None
        saved = self.pos
        self.pos += 1
        domain = None
        try:
            if self.at_op("in"):
                self.pos += 1
                domain = self.parse_setop()
            if not self.at_op("|", ":"):
                raise ParseError("not a set-builder")
        except ParseError:
            self.pos = saved
            return None
        self.pos += 1
        items, conj = self.parse_items()
        self.expect("\\}")
        # in a condition a comma joins like "and": {x | 0 < x < 36, x != 9}
        conj = "and" if conj == "," else conj
        cond = items[0] if len(items) == 1 else V.Bag(tuple(items), is_set=False, conj=conj)
        return V.SetBuilder(sympy.Symbol(tok.text), domain, cond)

    # -- ratios, approximations, degrees ------------------------------------------
    def parse_ratio(self, first: object, start: int) -> V.Ratio:
        """Reads ``: b (: c ...)`` after ``first``; ``start`` is where it began."""
        parts = [V.expr(first)]
        while self.at_op(":"):
            self.pos += 1
            parts.append(V.expr(self.parse_sum()))
        texts = [t.text for t in self.toks[start:self.pos]]
        clock = (len(texts) == 3 and texts[0].isdigit() and len(texts[0]) <= 2
                 and texts[2].isdigit() and len(texts[2]) == 2)
        return V.Ratio(tuple(parts), clock)

    def parse_approx(self, exact: object) -> object:
        """Reads the decimal after ``\\approx``; other right sides are dropped."""
        start = self.pos
        value = self.parse_sum()
        toks = self.toks[start:self.pos]
        sign = -1 if toks and toks[0].text == "-" else 1
        if toks and toks[0].text in "+-":
            toks = toks[1:]
        spec = decimal_spec(toks[0].text) if len(toks) == 1 and toks[0].kind == "num" \
            else None
        if spec is None:
            return exact if exact is not None else value
        return V.Approx(exact, sign * _rational(spec.value), _rational(spec.half_ulp))

    def parse_degrees(self, value: object) -> object:
        """``value°`` with optional minutes and seconds: ``60° 42'`` = 60.7°."""
        self.pos += 1
        value = V.lift(V.multiply, value, V.DEG)
        for divisor, marks in ((60, 1), (3600, 2)):
            tok = self.peek()
            if tok is None or tok.kind != "num" or not all(
                    self.op_at(self.pos + 1 + k, "'") for k in range(marks)):
                break
            self.pos += 1 + marks
            value = V.lift(V.add, value, V.number(tok.text) / divisor * V.DEG)
        return value

    def parse_rounding(self, op: str) -> object:
        """``\\lceil x \\rceil`` and ``\\lfloor x \\rfloor``."""
        value = self.parse_sum()
        self.expect("rceil" if op == "lceil" else "rfloor")
        fn = sympy.ceiling if op == "lceil" else sympy.floor
        return V.lift(lambda v: fn(V.expr(v)), value)

    # -- numbers and matrices -------------------------------------------------
    def mixed_fraction(self) -> sympy.Rational | None:
        """Reads ``\\frac{1}{2}`` right after an integer: ``3\\frac12`` = 7/2."""
        t = self.toks[self.pos:self.pos + 7]
        texts = [x.text for x in t]
        if len(t) >= 7 and texts[0] == "frac" and texts[1] == "{" and texts[3] == "}" \
                and texts[4] == "{" and texts[6] == "}" and t[2].kind == "num" \
                and t[5].kind == "num" and texts[2].isdigit() and texts[5].isdigit():
            num, den = int(texts[2]), int(texts[5])
            self.pos += 7
        elif len(t) >= 2 and texts[0] == "frac" and t[1].kind == "num" \
                and len(texts[1]) == 2 and texts[1].isdigit():
            num, den = int(texts[1][0]), int(texts[1][1])
            self.pos += 2
        else:
            return None
        if den == 0:
            raise ParseError("division by zero")
        return sympy.Rational(num, den)

    def parse_matrix(self, env: str) -> V.Matrix:
        rows, row = [], [self.parse_sum()]
        while True:
            tok = self.take()
            if tok.kind == "end":
                break
            if tok.kind == "op" and tok.text == "&":
                row.append(self.parse_sum())
            elif tok.kind == "op" and tok.text == "rowsep":
                rows.append(tuple(row))
                if self.peek() is not None and self.peek().kind == "end":
                    row = []
                    continue
                row = [self.parse_sum()]
            else:
                raise ParseError(f"unexpected {tok.text!r} in {env}")
        if row:
            rows.append(tuple(row))
        if len({len(r) for r in rows}) != 1:
            raise ParseError("ragged matrix")
        return V.Matrix(tuple(rows))

"""Recursive-descent parser from whitelisted tokens to explicit sympy objects.

Grammar (lowest precedence first)::

    list     := item ((',' | ';') item)*
    item     := union (relop union)* | union '\\in' union
    union    := expr ('\\cup' expr)*
    expr     := [sign] term (sign term)*        sign: + - \\pm \\mp
    term     := unary (('*' | '/') unary | implicit power)*
    unary    := ('-' | '+') unary | power
    power    := postfix ['^' exponent]
    postfix  := primary ('!' | "'")*
    primary  := number | name | constant | function | group | \\frac | \\sqrt
              | \\binom | tuple/interval | set | |abs| | matrix

Sympy objects are built with constructors from :mod:`values`, never from text.
"""

from __future__ import annotations

import sympy

from . import values as V
from .tokens import ParseError, Token, tokenize

MAX_DEPTH = 40
MAX_PM = 2  # each \\pm doubles the alternatives
_RELOPS = frozenset({"=", "<", ">", "<=", ">=", "!="})
_FUNCS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot,
    "sec": sympy.sec, "csc": sympy.csc, "arcsin": sympy.asin, "asin": sympy.asin,
    "arccos": sympy.acos, "acos": sympy.acos, "arctan": sympy.atan, "atan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "ln": sympy.log,
    "log": sympy.log,
}
_INVERSE = {"sin": "arcsin", "cos": "arccos", "tan": "arctan"}
_CONSTS = {"pi": sympy.pi, "oo": sympy.oo, "E": sympy.E, "I": sympy.I}
_FACTOR_OPS = frozenset({"(", "{", "frac", "sqrt", "binom"})
_CONST_NAMES = {"E": "e", "I": "i", "pi": "pi", "oo": "infty"}


class _Parser:
    """Parser state over one token list."""

    def __init__(self, tokens: list[Token]) -> None:
        self.toks = tokens
        self.pos = 0
        self.depth = 0

    # -- token helpers ------------------------------------------------------
    def peek(self) -> Token | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def at_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "op" and tok.text in ops

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

    # -- grammar ------------------------------------------------------------
    def parse(self) -> object:
        if not self.toks:
            raise ParseError("empty answer")
        value = self.parse_list()
        if self.pos != len(self.toks):
            raise ParseError(f"unexpected {self.toks[self.pos].text!r}")
        return value

    def parse_items(self) -> list:
        items = [self.parse_item()]
        while self.at_op(",", ";"):
            self.pos += 1
            items.append(self.parse_item())
        return items

    def parse_list(self) -> object:
        items = self.parse_items()
        if len(items) == 1:
            return items[0]
        return V.Bag(V.flatten(items), is_set=False)

    def parse_item(self) -> object:
        left = self.parse_union()
        if self.at_op("in"):  # "x \in [0, 1]": the set is the answer
            self.pos += 1
            return self.parse_union()
        parts, ops = [left], []
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.text in _RELOPS:
            self.pos += 1
            ops.append(tok.text)
            parts.append(self.parse_union())
        if not ops:
            return left
        if all(op == "=" for op in ops):
            return V.Equation(parts[0], parts[-1])
        return V.Relation(tuple(parts), tuple(ops))

    def parse_union(self) -> object:
        value = self.parse_sum()
        if not self.at_op("cup"):
            return value
        items = [value]
        while self.at_op("cup"):
            self.pos += 1
            items.append(self.parse_sum())
        return V.Union(tuple(items))

    def parse_sum(self) -> object:
        sign = self.take().text if self.at_op("+", "-", "pm", "mp") else "+"
        terms = [(sign, self.parse_term())]
        while self.at_op("+", "-", "pm", "mp"):
            sign = self.take().text
            terms.append((sign, self.parse_term()))
        if len(terms) == 1 and sign == "+":
            return terms[0][1]
        return V.signed_sum(terms, MAX_PM)

    def parse_term(self) -> object:
        value = self.parse_unary()
        while True:
            if self.at_op("*"):
                self.pos += 1
                value = V.multiply(value, self.parse_unary())
            elif self.at_op("/"):
                self.pos += 1
                value = V.divide(value, self.parse_unary())
            elif self.starts_factor():
                if self.peek().kind == "num" and self.toks[self.pos - 1].kind == "num":
                    raise ParseError("two numbers side by side")  # "2 3" is not 6
                value = V.multiply(value, self.parse_power())
            else:
                return value

    def starts_factor(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        if tok.kind in ("num", "name", "const", "func"):
            return True
        return tok.kind == "op" and tok.text in _FACTOR_OPS

    def parse_unary(self) -> object:
        if self.at_op("-", "+"):
            negate = self.take().text == "-"
            self.enter()
            value = self.parse_unary()
            self.leave()
            return V.multiply(sympy.Integer(-1), value) if negate else value
        return self.parse_power()

    def parse_power(self) -> object:
        base = self.parse_postfix()
        if not self.at_op("^"):
            return base
        self.pos += 1
        self.enter()
        exponent = self.parse_braced() if self.at_op("{") else self.parse_unary()
        self.leave()
        return V.power(base, exponent)

    def parse_postfix(self) -> object:
        value = self.parse_primary()
        while True:
            if self.at_op("!"):
                self.pos += 1
                value = V.factorial(value)
            elif self.at_op("'") and isinstance(value, sympy.Symbol):
                self.pos += 1
                value = sympy.Symbol(value.name + "'")
            else:
                return value

    def parse_primary(self) -> object:
        tok = self.take()
        if tok.kind == "num":
            return self.parse_number(tok)
        if tok.kind == "name":
            return sympy.Symbol(tok.text + self.subscript())
        if tok.kind == "const":
            if tok.text == "emptyset":
                return V.Bag((), is_set=True)
            return _CONSTS[tok.text]
        if tok.kind == "func":
            return self.parse_function(tok.text)
        if tok.kind == "begin":
            return self.parse_matrix(tok.text)
        if tok.kind == "op":
            return self.parse_op_primary(tok.text)
        raise ParseError(f"unexpected {tok.text!r}")

    def parse_op_primary(self, op: str) -> object:
        self.enter()
        try:
            if op in ("(", "["):
                return self.parse_bracket(op)
            if op == "{":
                self.pos -= 1
                return self.parse_braced()
            if op == "\\{":
                items = [] if self.at_op("\\}") else self.parse_items()
                self.expect("\\}")
                return V.Bag(V.flatten(items), is_set=True)
            if op == "|":
                value = self.parse_sum()
                self.expect("|")
                return sympy.Abs(V.expr(value))
            if op == "frac":
                return V.divide(self.parse_arg(), self.parse_arg())
            if op == "sqrt":
                index = sympy.Integer(2)
                if self.at_op("["):
                    self.pos += 1
                    index = self.parse_sum()
                    self.expect("]")
                return V.root(self.parse_arg(), index)
            if op == "binom":
                return V.binomial(self.parse_arg(), self.parse_arg())
            raise ParseError(f"unexpected {op!r}")
        finally:
            self.leave()

    def parse_number(self, tok: Token) -> object:
        value = V.number(tok.text)
        if self.at_op("_"):  # base-n literal such as 52_8: kept as an atom
            return sympy.Symbol(f"{tok.text}_{self.subscript()[1:]}")
        if tok.text.isdigit():
            mixed = self.mixed_fraction()
            if mixed is not None:
                return value + mixed
        return value

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

    def subscript(self) -> str:
        """Reads an optional ``_x`` / ``_{...}`` and returns it as ``_...``."""
        if not self.at_op("_"):
            return ""
        self.pos += 1
        if not self.at_op("{"):
            tok = self.take()
            return "_" + _CONST_NAMES.get(tok.text, tok.text)
        self.pos += 1
        parts = []
        while not self.at_op("}"):
            tok = self.take()
            if tok.kind == "op" and tok.text in ("{", "(", "["):
                raise ParseError("structured subscript")
            parts.append(_CONST_NAMES.get(tok.text, tok.text))
            if len(parts) > 20:
                raise ParseError("subscript too long")
        self.pos += 1
        return "_" + "".join(parts)

    def parse_braced(self) -> object:
        self.expect("{")
        self.enter()
        items = self.parse_items()
        self.expect("}")
        self.leave()
        if len(items) == 1:
            return items[0]
        return V.Bag(V.flatten(items), is_set=True)

    def parse_arg(self) -> object:
        """Reads one LaTeX macro argument: ``{...}``, one digit, or one atom."""
        if self.at_op("{"):
            return self.parse_braced()
        tok = self.peek()
        if tok is not None and tok.kind == "num" and tok.text.isdigit() and len(tok.text) > 1:
            # `\frac12`: TeX takes a single digit as the argument.
            self.toks[self.pos] = Token("num", tok.text[1:])
            return sympy.Integer(int(tok.text[0]))
        return self.parse_primary()

    def parse_bracket(self, opener: str) -> object:
        if self.at_op(")", "]"):
            close = self.take().text
            return V.Seq(opener, close, ())
        items = self.parse_items()
        close = self.take()
        if close.kind != "op" or close.text not in (")", "]"):
            raise ParseError(f"unbalanced {opener!r}")
        if len(items) == 1:
            if (opener, close.text) not in (("(", ")"), ("[", "]")):
                raise ParseError("mismatched brackets")
            return items[0]
        return V.Seq(opener, close.text, tuple(items))

    def parse_function(self, name: str) -> object:
        base = None
        if name == "log" and self.at_op("_"):
            self.pos += 1
            base = self.parse_arg()
        exponent = None
        if self.at_op("^"):  # \sin^2 x, \sin^{-1} x
            self.pos += 1
            exponent = self.parse_arg()
            if exponent == -1 and name in _INVERSE:
                name, exponent = _INVERSE[name], None
        self.enter()
        arg = V.expr(self.parse_function_arg())
        self.leave()
        if name == "exp":
            value = V.power(sympy.E, arg)
        elif name == "lg":
            value = sympy.log(arg, 10)
        elif base is not None:
            value = V.divide(sympy.log(arg), sympy.log(V.expr(base)))
        else:
            value = _FUNCS[name](arg)
        return value if exponent is None else V.power(value, exponent)

    def parse_function_arg(self) -> object:
        if self.at_op("(", "{"):
            return self.parse_primary()
        value = self.parse_power()
        while self.starts_factor() and self.peek().kind != "func":
            value = V.multiply(value, self.parse_power())
        return value

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


def parse(text: str) -> object:
    """Parses a normalized answer into a value.

    Args:
        text: normalized answer text (see :func:`normalize.normalize`).

    Returns:
        A sympy expression or one of the structures in :mod:`values`.

    Raises:
        ParseError: the text is outside the supported language or refused by
            a size guard.
    """
    try:
        return _Parser(tokenize(text)).parse()
    except RecursionError as exc:
        raise ParseError("nesting too deep") from exc

"""Recursive-descent parser from whitelisted tokens to explicit sympy objects.

Grammar (lowest precedence first)::

    list     := item ((',' | ';' | and | or) item)*
    item     := decl | label '=' item | union (relop union)* ['\\approx' num]
              | union '\\in' union | union (':' expr)+
    union    := setop ('\\cup' setop)*
    setop    := expr (('\\setminus' | '\\cap') expr)*
    expr     := [sign] term (sign term)*        sign: + - \\pm \\mp
    term     := unary (('*' | '/') unary | implicit power)*
    unary    := ('-' | '+') unary | power
    power    := postfix ['^' exponent]
    postfix  := primary ('!' | "'" | '°' [num "'" [num "''"]])*
    primary  := number | name | constant | function | group | \\frac | \\sqrt
              | \\binom | tuple/interval | set | set-builder | |abs| | matrix
              | \\lceil expr \\rceil | \\lfloor expr \\rfloor

Labels, declarations, set-builders, ratios and degrees live in
:mod:`parse_extras`. A ``\\pm`` makes a value stand for alternatives, which
arithmetic carries along (:func:`values.lift`). Sympy objects are built with
constructors from :mod:`values`, never from text.
"""

from __future__ import annotations

import sympy

from . import values as V
from .parse_extras import Extras
from .tokens import ParseError, Token, tokenize

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
_SEPARATORS = (",", ";", "and", "or")
# Words that change what an answer says ("not 0"); never a product of letters.
_PROSE_WORDS = frozenset({"not", "no", "none", "never", "except", "but", "cannot",
                          "undefined", "impossible"})
_FACTOR_OPS = frozenset({"(", "{", "frac", "sqrt", "binom", "lceil", "lfloor"})
_CONST_NAMES = {"E": "e", "I": "i", "pi": "pi", "oo": "infty"}


class _Parser(Extras):
    """Parser state over one token list."""

    # -- grammar ------------------------------------------------------------
    def parse(self) -> object:
        if not self.toks:
            raise ParseError("empty answer")
        value = self.parse_list()
        if self.pos != len(self.toks):
            raise ParseError(f"unexpected {self.toks[self.pos].text!r}")
        return V.Family(value, frozenset(self.params.items())) if self.params else value

    def parse_items(self) -> tuple[list, str]:
        """Items and their connective: "or" if any, else "and" if any, else ","."""
        items, seps = [self.parse_item()], set()
        while self.at_op(*_SEPARATORS):
            seps.add(self.take().text)
            if self.at_op("and", "or"):  # "19, 46, and 82"
                seps.add(self.take().text)
            items.append(self.parse_item())
        kept = [x for x in items if not isinstance(x, V.Param)]  # declarations
        if kept:
            items = kept
        else:  # "n \in \mathbb{N}" alone answers with a set, declares nothing
            for x in items:
                self.params.pop(x.name, None)
            items = [V.NamedSet(x.domain) for x in items]
        return items, "or" if "or" in seps else "and" if "and" in seps else ","

    def parse_list(self) -> object:
        items, conj = self.parse_items()
        if len(items) == 1:
            return items[0]
        return V.Bag(V.flatten(items), is_set=False, conj=conj)

    def parse_item(self) -> object:
        decl = self.try_param_decl()
        if decl is not None:
            return decl
        label = self.try_label()
        if label is not None:
            value = self.parse_item()
            return V.Equation(label, value.rhs if isinstance(value, V.Equation) else value)
        start = self.pos
        left = self.parse_union()
        if self.at_op("in"):  # "x \in [0, 1]": the set is the answer
            self.pos += 1
            return self.parse_union()
        if self.at_op(":"):
            return self.parse_ratio(left, start)
        parts, ops = [left], []
        while (tok := self.peek()) is not None and tok.kind == "op" and tok.text in _RELOPS:
            self.pos += 1
            ops.append(tok.text)
            parts.append(self.parse_union())
        if self.at_op("approx"):
            self.pos += 1
            parts[-1] = self.parse_approx(parts[-1])
        if not ops:
            return parts[0]
        if all(op == "=" for op in ops):
            return V.Equation(parts[0], parts[-1])
        return V.Relation(tuple(parts), tuple(ops))

    def parse_union(self) -> object:
        value = self.parse_setop()
        if not self.at_op("cup"):
            return value
        items = [value]
        while self.at_op("cup"):
            self.pos += 1
            items.append(self.parse_setop())
        return V.Union(tuple(items))

    def parse_setop(self) -> object:
        value = self.parse_sum()
        while self.at_op("setminus", "cap"):
            op = self.take().text
            value = V.SetOp(op, value, self.parse_sum())
        return value

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
                value = V.lift(V.multiply, value, self.parse_unary())
            elif self.at_op("/"):
                self.pos += 1
                value = V.lift(V.divide, value, self.parse_unary())
            elif self.starts_factor():
                if self.peek().kind == "num" and self.toks[self.pos - 1].kind == "num":
                    raise ParseError("two numbers side by side")  # "2 3" is not 6
                factor = self.parse_power()
                if not isinstance(factor, V.Param):  # "k\pi (k \in \mathbb{Z})"
                    value = V.lift(V.multiply, value, factor)
            else:
                return value

    def starts_factor(self) -> bool:
        tok = self.peek()
        if tok is None:
            return False
        if tok.kind in ("num", "name", "word", "const", "func"):
            return True
        return tok.kind == "op" and tok.text in _FACTOR_OPS

    def parse_unary(self) -> object:
        if self.at_op("-", "+"):
            negate = self.take().text == "-"
            self.enter()
            value = self.parse_unary()
            self.leave()
            return V.lift(V.multiply, sympy.Integer(-1), value) if negate else value
        return self.parse_power()

    def parse_power(self) -> object:
        base = self.parse_postfix()
        if not self.at_op("^"):
            return base
        self.pos += 1
        self.enter()
        exponent = self.parse_braced() if self.at_op("{") else self.parse_unary()
        self.leave()
        return V.lift(V.power, base, exponent)

    def parse_postfix(self) -> object:
        value = self.parse_primary()
        while True:
            if self.at_op("!"):
                self.pos += 1
                value = V.lift(V.factorial, value)
            elif self.at_op("deg"):
                value = self.parse_degrees(value)
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
        if tok.kind == "word":  # not a label here: a product of letters
            if tok.text.lower() in _PROSE_WORDS:
                raise ParseError(f"prose in an answer: {tok.text!r}")
            self.pos -= 1
            self.split_word_here()
            return self.parse_primary()
        if tok.kind == "const":
            if tok.text == "emptyset":
                return V.Bag((), is_set=True)
            if tok.text not in _CONSTS:
                return V.NamedSet(tok.text)
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
                return self.parse_set()
            if op == "|":
                value = self.parse_sum()
                self.expect("|")
                return V.lift(lambda v: sympy.Abs(V.expr(v)), value)
            if op in ("lceil", "lfloor"):
                return self.parse_rounding(op)
            if op == "frac":
                return V.lift(V.divide, self.parse_arg(), self.parse_arg())
            if op == "sqrt":
                index = sympy.Integer(2)
                if self.at_op("["):
                    self.pos += 1
                    index = self.parse_sum()
                    self.expect("]")
                return V.lift(V.root, self.parse_arg(), index)
            if op == "binom":
                return V.lift(V.binomial, self.parse_arg(), self.parse_arg())
            raise ParseError(f"unexpected {op!r}")
        finally:
            self.leave()

    def parse_set(self) -> object:
        builder = self.try_set_builder()
        if builder is not None:
            return builder
        items = [] if self.at_op("\\}") else self.parse_items()[0]
        self.expect("\\}")
        return V.Bag(V.flatten(items), is_set=True)

    def parse_number(self, tok: Token) -> object:
        value = V.number(tok.text)
        if self.at_op("_"):  # base-n literal such as 52_8: kept as an atom
            return sympy.Symbol(f"{tok.text}_{self.subscript()[1:]}")
        if tok.text.isdigit():
            mixed = self.mixed_fraction()
            if mixed is not None:
                return value + mixed
        return value

    def subscript(self) -> str:
        """Reads an optional ``_x`` / ``_{...}`` and returns it as ``_...``."""
        if not self.at_op("_"):
            return ""
        self.pos += 1
        if not self.at_op("{"):
            if self.peek() is not None and self.peek().kind == "word":
                self.split_word_here()  # x_ab is x_a times b
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
        self.refuse_text_group()
        self.enter()
        items = self.parse_items()[0]
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
        items = self.parse_items()[0]
        close = self.take()
        if close.kind != "op" or close.text not in (")", "]"):
            raise ParseError(f"unbalanced {opener!r}")
        if len(items) == 1:
            if (opener, close.text) not in (("(", ")"), ("[", "]")):
                raise ParseError("mismatched brackets")
            return items[0]
        # (\pm 1, 0) is the two points (1, 0) and (-1, 0)
        return V.lift(lambda *xs: V.Seq(opener, close.text, xs), *items)

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
        arg = self.parse_function_arg()
        self.leave()
        value = V.lift(lambda a: _apply(name, V.expr(a), base), arg)
        return value if exponent is None else V.lift(V.power, value, exponent)

    def parse_function_arg(self) -> object:
        if self.at_op("(", "{"):
            return self.parse_primary()
        value = self.parse_power()
        while self.starts_factor() and self.peek().kind != "func":
            value = V.multiply(value, self.parse_power())
        return value

def _apply(name: str, arg: sympy.Expr, base: object) -> sympy.Expr:
    if name == "exp":
        return V.power(sympy.E, arg)
    if name == "lg":
        return sympy.log(arg, 10)
    if base is not None:
        return V.divide(sympy.log(arg), sympy.log(V.expr(base)))
    return _FUNCS[name](arg)


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
    return parse_tokens(tokenize(text))


def parse_tokens(tokens: list[Token]) -> object:
    """Parses tokens from :func:`tokens.tokenize` or another whitelisted lexer.

    Raises:
        ParseError: as :func:`parse`.
    """
    try:
        return _Parser(tokens).parse()
    except RecursionError as exc:
        raise ParseError("nesting too deep") from exc

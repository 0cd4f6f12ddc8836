"""The symbolic step of ``verifier.rule=reference``, without sympy's string parser.

The reference (``naive_dapo.are_equal_under_sympy``, sustech-nlp/SPPO @ 55e8a72,
lines 352-364) hands ``(truth)-(answer)``, both in its plain-text normal form
(``sqrt(3)/2``, ``2pi``, ``x^2+1``), to ``sympy.parse_expr`` with implicit
multiplication and application, and accepts when ``simplify`` gives 0. Here a
whitelisted lexer reads the same notation the way Python's tokenizer and those
sympy transformations do (``x2`` is ``x*2``, ``sqrt 3/2`` is ``sqrt(3)/2``,
``e`` and ``i`` are plain symbols), emits the tokens of :mod:`parse`, and the
project's parser builds the expression from explicit constructors; decimals then
become sympy Floats, as the reference's parser makes them. Anything
outside that small language is refused (status ``unparsable``, score 0), which is
how the reference scores text its parser rejects. Runs in the sandboxed workers.
"""

from __future__ import annotations

import builtins
import keyword
import re
import types
import unicodedata

import sympy

from . import values as V
from .parse import parse_tokens
from .tokens import ParseError, Token

_DIGITS = r"[0-9](?:_?[0-9])*"  # Python's digit groups: 1_000 is 1000
_NUMBER = rf"(?:{_DIGITS}\.(?:{_DIGITS})?|\.{_DIGITS}|{_DIGITS})(?:[eE][-+]?{_DIGITS})?"
_LEX_RE = re.compile(
    r"(?P<ws>\s+)"
    rf"|(?P<num>{_NUMBER})"
    r"|(?P<name>[a-zA-Z\u0370-\u03ff_][a-zA-Z0-9\u0370-\u03ff_]*)"
    r"|(?P<op>\*\*|//|!!|[-+*/^()!])"
)
# After a number, what makes Python read it otherwise (imaginary, a bad literal).
_ODD_NUMBER_TAIL_RE = re.compile(r"[jJ_]|[eE][-+]?[0-9]")
# Names the reference's parser resolves to sympy objects, and how this lexer reads them.
_KNOWN = {"pi": Token("const", "pi"), "sqrt": Token("op", "sqrt"), "ln": Token("func", "ln")}
# Every other name parse_expr would resolve (sympy's namespace, Python builtins, keywords):
# refused, since they are functions or constants (`nan`, `oo`, `li`, `re`, ...).
_NAMESPACE = frozenset(
    set(sympy.__all__) | {"max", "min"} | set(keyword.kwlist)
    | {n for n, o in vars(builtins).items() if isinstance(o, types.BuiltinFunctionType)}
)
_AFTER_IMPLICIT_ARG = frozenset({"+", "-", "/", ")"})
MAX_CHARS = 2_000


def _is_greek_name(name: str) -> bool:
    try:
        unicodedata.lookup("GREEK SMALL LETTER " + name)
    except KeyError:
        return False
    return True


def _name_tokens(name: str) -> list[Token]:
    """One NAME of Python, as sympy's ``auto_symbol`` and ``split_symbols`` read it."""
    if name in _KNOWN:
        return [_KNOWN[name]]
    if name in _NAMESPACE or name.startswith("_"):
        raise ParseError(f"{name!r} is a sympy or Python name")
    if "_" in name or len(name) == 1 or _is_greek_name(name):
        return [Token("name", name)]
    out: list[Token] = []
    for m in re.finditer(r"[0-9]+|.", name):  # x2y -> x*2*y
        piece = m.group()
        if piece in _NAMESPACE:
            raise ParseError(f"{piece!r} is a sympy name")
        out.append(Token("num" if piece[0].isdigit() else "name", piece))
    return out


def _raw_tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _LEX_RE.match(text, pos)
        if m is None:
            raise ParseError(f"unexpected character {text[pos]!r}")
        kind, value = m.lastgroup, m.group()
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "num":
            value = value.replace("_", "")
            plain_int = value.isdigit()
            if (plain_int and len(value) > 1 and value[0] == "0") or _ODD_NUMBER_TAIL_RE.match(text, pos) \
                    or (value == "0" and text[pos:pos + 1] in ("x", "X", "o", "O", "b", "B")):
                raise ParseError(f"number literal {value!r} reads differently in Python")
        if kind == "op" and value in ("//", "!!"):
            raise ParseError(f"operator {value!r}")
        out.append((kind, value))
    return out


def lex(text: str) -> tuple[list[Token], dict[str, str]]:
    """Tokens of :mod:`parse` for the reference's plain-text notation.

    Decimal literals come out as placeholder names (``_dec0``, ...) with their text:
    sympy reads them as binary floats, and :func:`compare` puts such floats in.

    Returns:
        ``(tokens, {placeholder: decimal literal})``.

    Raises:
        ParseError: anything the whitelist does not cover, or a construction whose
            reading by sympy's transformations this lexer does not reproduce.
    """
    if len(text) > MAX_CHARS:
        raise ParseError("too long")
    raw = _raw_tokens(text)
    out: list[Token] = []
    decimals: dict[str, str] = {}
    i = 0
    while i < len(raw):
        kind, value = raw[i]
        i += 1
        if kind == "num":
            out.append(_number(value, decimals))
        elif kind == "op":
            out.append(Token("op", "^" if value in ("^", "**") else value))
        else:
            tokens = _name_tokens(value)
            out.extend(tokens)
            if tokens[-1].kind in ("func", "op"):  # sqrt, ln: applied to what follows
                i = _application(raw, i, out, decimals)
    return out, decimals


def _number(value: str, decimals: dict[str, str]) -> Token:
    if value.isdigit():
        return Token("num", value)  # an Integer, as sympy's auto_number makes it
    name = f"_dec{len(decimals)}"  # the lexer refuses names starting with "_"
    decimals[name] = value
    return Token("name", name)


def _application(raw: list[tuple[str, str]], i: int, out: list[Token], decimals: dict[str, str]) -> int:
    """``sqrt(...)`` as is; ``sqrt 3`` (sympy's implicit application) as ``sqrt(3)``."""
    nxt = raw[i] if i < len(raw) else None
    if nxt is not None and nxt == ("op", "("):
        return i
    if nxt is None or nxt[0] == "op":
        raise ParseError("function without an argument")
    arg = [_number(nxt[1], decimals)] if nxt[0] == "num" else _name_tokens(nxt[1])
    after = raw[i + 1] if i + 1 < len(raw) else None
    if len(arg) != 1 or arg[0].kind not in ("num", "name") \
            or (after is not None and (after[0] != "op" or after[1] not in _AFTER_IMPLICIT_ARG)):
        raise ParseError("implicit application beyond one argument")
    out.extend([Token("op", "("), arg[0], Token("op", ")")])
    return i + 1


def compare(answer: str, truth: str) -> str:
    """``simplify((truth)-(answer)) == 0`` on the reference's normal forms.

    Returns:
        ``"correct"``, ``"wrong"`` or ``"unparsable"`` (refused by the lexer or parser).
    """
    try:
        tokens, decimals = lex(f"({truth})-({answer})")
        value = parse_tokens(tokens)
    except (ParseError, RecursionError, ZeroDivisionError):
        return "unparsable"
    if not V.is_expr(value):
        return "wrong"  # a tuple or set: the reference's subtraction raises
    if decimals:  # sympy.Float reads a checked numeric literal, nothing else
        value = value.subs({sympy.Symbol(k): sympy.Float(v) for k, v in decimals.items()})
    return "correct" if sympy.simplify(value) == 0 else "wrong"


def compare_safe(answer: str, truth: str) -> str:
    """:func:`compare` that turns any failure into a status (the reference: score 0)."""
    try:
        return compare(answer, truth)
    except MemoryError:
        return "error"
    except Exception:  # noqa: BLE001 - sympy internals can raise almost anything
        return "error"

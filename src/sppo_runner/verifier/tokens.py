"""Whitelisted tokenizer for normalized LaTeX / plain-text math answers.

Anything outside the whitelist is a :class:`ParseError`, so the parser only
ever sees a closed vocabulary; no text is ever handed to ``eval`` or sympy's
string parsers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TOKENS = 2_000


class ParseError(ValueError):
    """The answer is not in the supported math language (or is refused)."""


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is num/name/word/func/const/op/begin/end; ``text`` its value."""

    kind: str
    text: str


GREEK = frozenset(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa "
    "lambda mu nu xi rho varrho sigma varsigma tau upsilon phi varphi chi psi omega "
    "Gamma Delta Theta Lambda Xi Sigma Upsilon Phi Psi Omega ell hbar".split()
)
FUNCS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan asin acos atan sinh cosh tanh "
    "log ln exp lg".split()
)
# LaTeX commands that map to operators or constants.
_CMD_OPS = {
    "cdot": "*", "times": "*", "ast": "*", "div": "/", "pm": "pm", "mp": "mp",
    "le": "<=", "ge": ">=", "lt": "<", "gt": ">", "ne": "!=", "cup": "cup",
    "cap": "cap", "in": "in", "{": "\\{", "}": "\\}", "|": "|", "mid": "|",
    "land": "and", "wedge": "and", "lor": "or", "vee": "or", "quad": ",",
    "frac": "frac", "sqrt": "sqrt", "binom": "binom", "choose": "choose",
    "prime": "'", "approx": "approx", "lceil": "lceil", "rceil": "rceil",
    "lfloor": "lfloor", "rfloor": "rfloor", "setminus": "setminus",
    "backslash": "setminus", "angle": "angle", "colon": ":", "measuredangle": "angle",
}
# \max and \min only ever name things here (``m_{\max}``, ``\max = 5``).
_CMD_NAMES = frozenset({"max", "min"})
# Number sets (``\mathbb{R}``) and the constant they become.
_BLACKBOARD = {"R": "reals", "Z": "integers", "N": "naturals", "Q": "rationals",
               "C": "complexes"}
_CONSTS = {"pi": "pi", "infty": "oo", "emptyset": "emptyset", "e": "E", "i": "I"}
# Multi-letter names recognised without a backslash, longest first.
_WORD_NAMES = sorted(
    list(FUNCS) + ["sqrt", "pi", "infty", "inf", "oo", "and", "or"],
    key=len, reverse=True,
)
_ENVIRONMENTS = frozenset({"pmatrix", "bmatrix", "matrix", "Bmatrix", "smallmatrix",
                           "array"})

_TOKEN_RE = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3}(?![\d.]))?)"
    r"|(?P<rowsep>\\\\)"
    r"|(?P<env>\\(?:begin|end)\s*\{\s*[a-zA-Z*]+\s*\}(?:\s*\{[clr|\s]*\})?)"
    r"|(?P<bb>\\mathbb\s*(?:\{\s*[A-Z]\s*\}|[A-Z]))"
    r"|(?P<cmd>\\[a-zA-Z]+|\\[{}|])"
    r"|(?P<word>[a-zA-Z]+)"
    r"|(?P<op><=|>=|!=|==|\*\*|[-+*/^()\[\]{},;=!_|<>&':°])"
)


def _split_word(word: str) -> list[Token]:
    """Splits a bare letter run into known names and one-letter symbols."""
    out: list[Token] = []
    i = 0
    while i < len(word):
        for name in _WORD_NAMES:
            if word.startswith(name, i) and (len(name) > 1):
                out.append(_name_token(name))
                i += len(name)
                break
        else:
            out.append(_name_token(word[i]))
            i += 1
    return out


def _name_token(name: str) -> Token:
    if name in FUNCS:
        return Token("func", name)
    if name in ("pi",):
        return Token("const", "pi")
    if name in ("infty", "inf", "oo"):
        return Token("const", "oo")
    if name in ("and", "or"):
        return Token("op", name)
    if name == "sqrt":
        return Token("op", "sqrt")
    if name in ("e", "i"):
        return Token("const", _CONSTS[name])
    return Token("name", name)


def _command_token(cmd: str) -> Token:
    name = cmd[1:]
    if name in _CMD_OPS:
        return Token("op", _CMD_OPS[name])
    if name in FUNCS:
        return Token("func", name)
    if name in _CONSTS and name not in ("e", "i"):
        return Token("const", _CONSTS[name])
    if name in GREEK or name in _CMD_NAMES:
        return Token("name", name)
    raise ParseError(f"unsupported command {cmd}")


def _blackboard_token(text: str) -> Token:
    letter = text.rstrip("} \t\n")[-1]
    if letter not in _BLACKBOARD:
        raise ParseError(f"unsupported number set {letter}")
    return Token("const", _BLACKBOARD[letter])


def is_word(run: str) -> bool:
    """True for a letter run kept whole as a ``word`` token (a possible label).

    Runs that start with a known name (``sinx``, ``pix``) are split at once;
    any other run of two or more letters is a word, which the parser splits
    into one-letter symbols wherever it is not a label (``ab`` is ``a*b``).
    """
    return len(run) >= 2 and not any(run.startswith(n) for n in _WORD_NAMES)


def split_word(word: str) -> list[Token]:
    """The tokens a ``word`` token stands for in an expression."""
    return _split_word(word)


def _env_token(text: str) -> Token:
    kind = "begin" if text.startswith("\\begin") else "end"
    name = text[text.index("{") + 1:text.index("}")].strip().rstrip("*")
    if name not in _ENVIRONMENTS:
        raise ParseError(f"unsupported environment {name}")
    return Token(kind, name)


def tokenize(text: str) -> list[Token]:
    """Splits a normalized answer into whitelisted tokens.

    Args:
        text: the normalized answer.

    Returns:
        The tokens, whitespace dropped.

    Raises:
        ParseError: an unknown character or command, or too many tokens.
    """
    out: list[Token] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise ParseError(f"unexpected character {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        value = m.group()
        if kind == "ws":
            continue
        if kind == "num":
            out.append(Token("num", value))
        elif kind == "rowsep":
            out.append(Token("op", "rowsep"))
        elif kind == "env":
            out.append(_env_token(value))
        elif kind == "cmd":
            out.append(_command_token(value))
        elif kind == "bb":
            out.append(_blackboard_token(value))
        elif kind == "word":
            out.extend([Token("word", value)] if is_word(value) else _split_word(value))
        elif value == "°":
            out.append(Token("op", "deg"))
        else:
            out.append(Token("op", "^" if value == "**" else "=" if value == "==" else value))
        if len(out) > MAX_TOKENS:
            raise ParseError("answer too long")
    return out
